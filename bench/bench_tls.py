"""wss:// echo: fastws's own TLS layer against asyncio's, same server otherwise.

    python bench/bench_tls.py [--duration 2] [--rounds 3]

The fastws echo server runs in its own process three ways: with its own TLS
layer (``fastws.asyncio.tls``, what ``serve(ssl=...)`` uses), with asyncio's
``SSLProtocol`` (the same server code given to ``loop.create_server(ssl=...)``,
as fastws did before), and over plain TCP for reference. The client is the
fastws asyncio client in this process (asyncio's TLS on its side, the same for
every server). Per size: round trips per second with one message in flight,
and messages per second with 32 in flight on one connection; beside each, the
server's CPU time per message (its utime + stime from /proc), so a client-bound
cell cannot hide a difference. Each cell is the best of ``--rounds`` rounds,
servers alternating. Writes bench/results/tls.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _procs
from bench_memory import make_certificates, tls_context

HERE = Path(__file__).resolve().parent
SERVERS = ["own TLS", "asyncio TLS", "plain TCP"]
SIZES = [256, 65536, 1 << 20]
IN_FLIGHT = 32


# -- the server (a subprocess) ------------------------------------------------------


async def serve_main(kind: str, port: int) -> None:
    from fastws import serve
    from fastws.asyncio.server import ServerConnection

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    options = dict(compression=None, max_message_size=None, ping_interval=None)
    ssl = tls_context(True) if kind != "plain TCP" else None
    starting = serve(echo, "127.0.0.1", port, ssl=ssl if kind == "own TLS" else None, **options)
    server = await starting
    if kind == "asyncio TLS":
        # The same server with asyncio's TLS layer: a second listener made as
        # fastws made it before it had its own (create_server(ssl=...)).
        server.server.close()
        server.server = await asyncio.get_running_loop().create_server(
            lambda: ServerConnection(server), "127.0.0.1", port, ssl=ssl
        )
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def start_server(kind: str) -> tuple[subprocess.Popen, int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _procs.LIVE[proc.pid] = proc
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        _procs.kill(proc)
        raise RuntimeError(f"the {kind} server did not start")
    return proc, port


# -- the client (this process) ------------------------------------------------------


async def measure(kind: str, port: int, pid: int, size: int, duration: float) -> tuple[float, float, float, float]:
    """(round trips/s, server CPU µs per round trip, pipelined msg/s, server CPU µs per message)."""
    from fastws import connect

    scheme, ssl = ("ws", None) if kind == "plain TCP" else ("wss", tls_context(False))
    payload = os.urandom(size)
    results = []
    async with connect(
        f"{scheme}://127.0.0.1:{port}/", ssl=ssl, compression=None, max_message_size=None, ping_interval=None
    ) as ws:
        for in_flight in (1, IN_FLIGHT):
            for _ in range(in_flight):  # warm up
                await ws.send(payload)
            for _ in range(in_flight):
                await ws.recv()
            count = 0
            cpu = _procs.proc_cpu_s(pid)
            start = time.perf_counter()
            for _ in range(in_flight):
                await ws.send(payload)
            while time.perf_counter() - start < duration:
                await ws.recv()
                await ws.send(payload)
                count += 1
            for _ in range(in_flight):
                await ws.recv()
                count += 1
            elapsed = time.perf_counter() - start
            results += [count / elapsed, (_procs.proc_cpu_s(pid) - cpu) / count * 1e6]
    return results[0], results[1], results[2], results[3]


def fmt_size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB" if size >= 1024 else f"{size} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=str(HERE / "results" / "tls.md"))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_main(args.serve, args.port))
        return 0
    signal.signal(signal.SIGTERM, _procs.on_signal)
    if "FASTWS_BENCH_CERTS" not in os.environ:
        os.environ["FASTWS_BENCH_CERTS"] = tempfile.mkdtemp(prefix="fastws-bench-certs-")
        make_certificates(os.environ["FASTWS_BENCH_CERTS"])
    best: dict[tuple[str, int], list[float]] = {}
    servers = {}
    try:
        for kind in SERVERS:
            servers[kind] = start_server(kind)
        for size in SIZES:
            for _ in range(args.rounds):
                for kind in SERVERS:
                    proc, port = servers[kind]
                    cell = asyncio.run(measure(kind, port, proc.pid, size, args.duration))
                    old = best.get((kind, size))
                    best[kind, size] = [
                        max(cell[0], old[0]) if old else cell[0],
                        min(cell[1], old[1]) if old else cell[1],
                        max(cell[2], old[2]) if old else cell[2],
                        min(cell[3], old[3]) if old else cell[3],
                    ]
            own, theirs = best["own TLS", size], best["asyncio TLS", size]
            print(
                f"{fmt_size(size):>7}: round trips {own[0]:8,.0f}/s vs {theirs[0]:8,.0f}/s ({own[0] / theirs[0]:.2f}x);"
                f" {IN_FLIGHT} in flight {own[2]:8,.0f}/s vs {theirs[2]:8,.0f}/s ({own[2] / theirs[2]:.2f}x)",
                flush=True,
            )
    finally:
        for proc, _ in servers.values():
            _procs.kill(proc)
    write_report(args, best)
    return 0


def write_report(args: argparse.Namespace, best: dict[tuple[str, int], list[float]]) -> None:
    import fastws

    lines = [
        "# wss:// echo: fastws's own TLS layer vs asyncio's",
        "",
        f"- command: `python bench/bench_tls.py --duration {args.duration} --rounds {args.rounds}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {_procs.cpu_model()}, {os.cpu_count()} cores; {platform.platform()}",
        f"- Python {platform.python_version()}; fastws {fastws.__version__}; the fastws echo server in its own"
        " process, the fastws client here (asyncio's TLS on the client side for every server)",
        f"- each cell: the best of {args.rounds} rounds of {args.duration} s, servers alternating; CPU = the server"
        " process's CPU time per message (lower is better); × = own TLS ÷ asyncio TLS",
        "",
        f"| size | server | round trips/s | server CPU µs | {IN_FLIGHT} in flight msg/s | server CPU µs |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for size in SIZES:
        for kind in SERVERS:
            rt, rt_cpu, pipe, pipe_cpu = best[kind, size]
            lines.append(f"| {fmt_size(size)} | {kind} | {rt:,.0f} | {rt_cpu:,.1f} | {pipe:,.0f} | {pipe_cpu:,.1f} |")
        own, theirs = best["own TLS", size], best["asyncio TLS", size]
        lines.append(
            f"| {fmt_size(size)} | × | {own[0] / theirs[0]:.2f}× | {own[1] / theirs[1]:.2f}× |"
            f" {own[2] / theirs[2]:.2f}× | {own[3] / theirs[3]:.2f}× |"
        )
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
