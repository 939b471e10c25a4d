"""Threaded clients side by side: round trips per second of ``fastws.sync``'s
client and ``websockets.sync.client`` against the same echo server.

    python bench/bench_sync.py [--duration 1.5] [--rounds 3] [--server fastws_async]

The server (bench/servers/, default the fastws asyncio echo server, compressed
off) runs in its own process; both clients run here, one at a time, in
alternating rounds so that drift on the machine hits both alike. Each cell is
the best round of each client; messages are binary, one in flight (send, then
recv). Writes bench/results/sync.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import _procs

HERE = Path(__file__).resolve().parent
SIZES = [256, 8192, 1 << 20]
CLIENT_OPTIONS = dict(compression=None, max_message_size=None, ping_interval=None)


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def start_server(name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / f"{name}.py"), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _procs.LIVE[proc.pid] = proc
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "... server on HOST:PORT ..."
    if "server on" not in line:
        _procs.kill(proc)
        raise RuntimeError(f"server {name} did not start: {line}")
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return proc, f"ws://127.0.0.1:{port}/"


def fastws_client(uri: str):
    from fastws.sync import connect

    return connect(uri, **CLIENT_OPTIONS)


def websockets_client(uri: str):
    from websockets.sync.client import connect

    return connect(uri, compression=None, max_size=None, ping_interval=None)


CLIENTS = {"fastws.sync": fastws_client, "websockets.sync": websockets_client}


def round_trips(open_client, uri: str, size: int, duration: float) -> float:
    """Round trips per second over ``duration`` seconds, after a short warm-up."""
    payload = os.urandom(size)
    with open_client(uri) as ws:
        send, recv = ws.send, ws.recv
        warmup = time.perf_counter() + min(0.3, duration / 5)
        while time.perf_counter() < warmup:
            send(payload)
            recv()
        count = 0
        start = time.perf_counter()
        end = start + duration
        while True:
            send(payload)
            recv()
            count += 1
            if count % 8 == 0 and time.perf_counter() >= end:
                break
        return count / (time.perf_counter() - start)


def fmt_size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB" if size >= 1024 else f"{size} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per round and client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default="fastws_async", help="a script in bench/servers/")
    parser.add_argument("--output", default=str(HERE / "results" / "sync.md"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _procs.on_signal)
    server, uri = start_server(args.server)
    results: dict[tuple[str, int], float] = {}
    try:
        for size in SIZES:
            for _ in range(args.rounds):
                for name, client in CLIENTS.items():
                    rate = round_trips(client, uri, size, args.duration)
                    results[name, size] = max(results.get((name, size), 0.0), rate)
            fast, ref = results["fastws.sync", size], results["websockets.sync", size]
            line = f"fastws.sync {fast:9,.0f}/s  websockets.sync {ref:9,.0f}/s  ratio {fast / ref:.2f}x"
            print(f"{fmt_size(size):>7}: {line}", flush=True)
    finally:
        _procs.kill(server)
    write_report(args, results)
    return 0


def write_report(args: argparse.Namespace, results: dict[tuple[str, int], float]) -> None:
    import fastws.codec

    command = "python bench/bench_sync.py" + "".join(
        f" --{name} {value}" for name, value in (("duration", args.duration), ("rounds", args.rounds)) if value
    )
    lines = [
        "# Threaded clients: fastws.sync vs websockets.sync",
        "",
        f"- command: `{command}` (server: `bench/servers/{args.server}.py`, its own process)",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {platform.platform()}",
        f"- Python {platform.python_version()}; fastws {metadata.version('fastws')} ({fastws.codec.BACKEND} codec),"
        f" websockets {metadata.version('websockets')}",
        f"- each cell: the best of {args.rounds} rounds of {args.duration} s, clients alternating; one connection,"
        " one binary message in flight (send, then recv); no compression, no keepalive",
        "",
        "| size | fastws.sync (round trips/s) | websockets.sync (round trips/s) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for size in SIZES:
        fast, ref = results["fastws.sync", size], results["websockets.sync", size]
        lines.append(f"| {fmt_size(size)} | {fast:,.0f} | {ref:,.0f} | {fast / ref:.2f}x |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
