"""Threaded clients side by side: round trips per second of ``fastws.sync``'s
client and ``websockets.sync.client`` against the same echo server.

    python bench/bench_sync.py [--duration 1.5] [--rounds 5] [--server fastws_callback] [--cpu 0]

The server (bench/servers/, default fastws's callback echo server on uvloop,
compression off: the least server time per round trip, so the clients'
differences show most) runs in its own process; both clients run here, one at
a time, in alternating rounds so that drift on the machine hits both alike.
Each cell is the best round of each client; messages are binary, one in
flight (send, then recv). Beside round trips per second: the client's CPU
time per round trip (all its threads). Writes bench/results/sync.md.

Server and clients share one CPU (``--cpu``; ``--cpu -1``: no pinning). On a
virtual machine, a round trip across two cores waits for an idle vCPU to wake
(here ~60 µs of ~75 for 256 B, and it comes and goes with placement), which
hides what the clients cost; on one core a round trip is the client's and
the server's CPU time plus two context switches.

A third column is the floor set by the server and the kernel: a client that
does no WebSocket work at all (a frame masked in advance, sent with one
``sendall``, the echo read with ``recv_into`` into a buffer reused each time).
No client can beat it against this server; ``floor / websockets`` bounds the
ratio any client could show.
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
from typing import Optional

import _procs

HERE = Path(__file__).resolve().parent
SIZES = [256, 8192, 1 << 20]
CLIENT_OPTIONS = dict(compression=None, max_message_size=None, ping_interval=None)


def start_server(name: str, uvloop: bool, cpu: Optional[int]) -> tuple[subprocess.Popen, str]:
    port = _procs.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / f"{name}.py"), "--port", str(port)] + ["--uvloop"] * uvloop,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
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


class BytesOnly:
    """The floor: the handshake, then bytes. ``send`` writes the frame it
    prepared for the payload of the first call; ``recv`` reads exactly one
    unmasked binary frame of the same length, without parsing it."""

    def __init__(self, uri: str) -> None:
        from fastws.handshake import ClientHandshake

        host, port = uri.split("/")[2].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(ClientHandshake(f"{host}:{port}", "/").request_bytes())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101") and head.endswith(b"\r\n\r\n"), head[:200]
        self.frame = b""

    def send(self, payload: bytes) -> None:
        from fastws.codec import encode_message

        if not self.frame:
            self.frame = encode_message(2, payload, mask=True, max_frame_size=1 << 62)
            size = len(payload)
            self.length = size + (2 if size < 126 else 4 if size < 1 << 16 else 10)
            self.buffer = memoryview(bytearray(self.length))
        self.sock.sendall(self.frame)

    def recv(self) -> None:
        received, length, buffer, recv_into = 0, self.length, self.buffer, self.sock.recv_into
        while received < length:
            received += recv_into(buffer[received:], length - received)

    def __enter__(self) -> BytesOnly:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()


CLIENTS = {"fastws.sync": fastws_client, "websockets.sync": websockets_client, "floor": BytesOnly}


def round_trips(open_client, uri: str, size: int, duration: float) -> tuple[float, float]:
    """Round trips per second over ``duration`` seconds, after a short warm-up,
    and the client's CPU seconds per round trip."""
    payload = os.urandom(size)
    with open_client(uri) as ws:
        send, recv = ws.send, ws.recv
        warmup = time.perf_counter() + min(0.3, duration / 5)
        while time.perf_counter() < warmup:
            send(payload)
            recv()
        count = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        end = start + duration
        while True:
            send(payload)
            recv()
            count += 1
            if count % 8 == 0 and time.perf_counter() >= end:
                break
        return count / (time.perf_counter() - start), (time.process_time() - cpu_start) / count


def fmt_size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB" if size >= 1024 else f"{size} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per round and client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", default="fastws_callback", help="a script in bench/servers/")
    parser.add_argument("--asyncio", action="store_true", help="the server on the default asyncio loop, not uvloop")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU for server and clients (-1: no pinning)")
    parser.add_argument("--output", default=str(HERE / "results" / "sync.md"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _procs.on_signal)
    cpu = None if args.cpu < 0 else args.cpu
    server, uri = start_server(args.server, not args.asyncio, cpu)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    results: dict[tuple[str, int], tuple[float, float]] = {}
    try:
        for size in SIZES:
            for _ in range(args.rounds):
                for name, client in CLIENTS.items():
                    rate, cpu_time = round_trips(client, uri, size, args.duration)
                    if rate > results.get((name, size), (0.0, 0.0))[0]:
                        results[name, size] = rate, cpu_time
            (fast, fast_cpu), (ref, ref_cpu), (floor, _) = (results[name, size] for name in CLIENTS)
            line = (
                f"fastws.sync {fast:9,.0f}/s  websockets.sync {ref:9,.0f}/s  ratio {fast / ref:.2f}x"
                f"  (floor {floor:9,.0f}/s: at most {floor / ref:.2f}x)"
                f"  client CPU {fast_cpu * 1e6:.0f} vs {ref_cpu * 1e6:.0f} µs"
            )
            print(f"{fmt_size(size):>7}: {line}", flush=True)
    finally:
        _procs.kill(server)
    write_report(args, results)
    return 0


def write_report(args: argparse.Namespace, results: dict[tuple[str, int], tuple[float, float]]) -> None:
    import fastws.codec

    options = [f"--duration {args.duration}", f"--rounds {args.rounds}", f"--server {args.server}", f"--cpu {args.cpu}"]
    command = " ".join(["python bench/bench_sync.py", *options] + ["--asyncio"] * args.asyncio)
    loop = "asyncio" if args.asyncio else "uvloop"
    placement = "server and clients on one CPU" if args.cpu >= 0 else "no CPU pinning"
    lines = [
        "# Threaded clients: fastws.sync vs websockets.sync",
        "",
        f"- command: `{command}` (server: `bench/servers/{args.server}.py` on {loop}, its own process; {placement})",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {_procs.cpu_model()}, {os.cpu_count()} cores; {platform.platform()}",
        f"- Python {platform.python_version()}; fastws {fastws.__version__} ({fastws.codec.BACKEND} codec),"
        f" websockets {metadata.version('websockets')}",
        f"- each cell: the best of {args.rounds} rounds of {args.duration} s, clients alternating; one connection,"
        " one binary message in flight (send, then recv); no compression, no keepalive",
        "- client CPU: the client process's CPU time (all threads) per round trip, in the best round",
        "- floor: a client doing no WebSocket work (a frame masked in advance, one `sendall`, the echo read"
        " into a reused buffer): what this server and kernel allow any client; `floor / websockets` bounds the ratio",
        "",
        "| size | fastws.sync (round trips/s) | websockets.sync (round trips/s) | ratio"
        " | client CPU per round trip (fastws / websockets) | floor (round trips/s) | floor / websockets |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        (fast, fast_cpu), (ref, ref_cpu), (floor, _) = (results[name, size] for name in CLIENTS)
        lines.append(
            f"| {fmt_size(size)} | {fast:,.0f} | {ref:,.0f} | {fast / ref:.2f}x"
            f" | {fast_cpu * 1e6:.0f} / {ref_cpu * 1e6:.0f} µs | {floor:,.0f} | {floor / ref:.2f}x |"
        )
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
