"""The asyncio layer's CPU per echo in process: no sockets, no loop, no peer.

A server ``WebSocket`` (and a client one) past its handshake, on a transport
that drops what it is given, is fed one frame per read through the loop's own
read callbacks (``get_buffer`` and ``buffer_updated``); a Listener echoes each
message with ``send_nowait``. What is timed is fastws's work from the read to
the write: parsing, the hand-over to the Listener, encoding the reply, the
write batching. It leaves out the kernel and the event loop, which take most of
a real round trip, so it shows changes to that work that a round trip's noise
hides (``bench_trees.py`` shows what they are worth end to end).

    python bench/bench_dispatch.py                        # this checkout, both sides, 256 B and 8 KiB
    python bench/bench_dispatch.py before=/tmp/old after=.   # several checkouts, in turns

Each checkout's ``src`` goes first on the ``PYTHONPATH`` (build its extensions
first); ``FASTWS_CODEC`` picks the backend as usual. Figures are ns per echo,
best and median of ``--runs`` runs of ``--echoes`` echoes; the loop that feeds
the frames costs about 0.2 µs of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDES = ("server", "client")


class DroppingTransport:
    """Takes every write and drops it."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data) -> None:
        self.writes += 1

    def writelines(self, buffers) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False


async def echo_ns(side: str, size: int, echoes: int) -> float:
    """ns of CPU per echo of one side's WebSocket, fed ``echoes`` frames of ``size`` bytes."""
    sys.path.insert(0, ROOT)
    from tests.support.frames import client_frame, server_frame
    from tests.support.transport import open_client_websocket, open_server_websocket

    from fastws.asyncio import Listener
    from fastws.frames import OP_BINARY

    class Echo(Listener):
        __slots__ = ()

        def on_message(self, ws, message) -> None:
            ws.send_nowait(message)

    opened, peer_frame = (
        (open_server_websocket, client_frame) if side == "server" else (open_client_websocket, server_frame)
    )
    ws, _ = opened(listener=Echo())
    transport = ws.transport = DroppingTransport()
    data = peer_frame(OP_BINARY, bytes(range(256)) * (size // 256) + bytes(size % 256))
    n = len(data)
    get_buffer, buffer_updated = ws.get_buffer, ws.buffer_updated
    start = time.process_time()
    for _ in range(echoes):
        get_buffer(-1)[:n] = data
        buffer_updated(n)
    elapsed = time.process_time() - start
    assert transport.writes == echoes, "every message echoed, one write each"
    return elapsed / echoes * 1e9


def measure(sizes: list[int], echoes: int) -> dict[str, float]:
    """One run of every (side, size) in this process: {"side size": ns per echo}."""
    return {f"{side} {size}": asyncio.run(echo_ns(side, size, echoes)) for side in SIDES for size in sizes}


def run_tree(path: str, sizes: list[int], echoes: int) -> dict[str, float]:
    """One run in a fresh process with ``path``'s ``src`` first on the path."""
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(path), "src"))
    cmd = [sys.executable, os.path.abspath(__file__), "--one-run", "--sizes", ",".join(map(str, sizes))]
    out = subprocess.run(cmd + ["--echoes", str(echoes)], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(f"the run for {path} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="*", help="NAME=PATH of fastws checkouts (default: this one)")
    ap.add_argument("--sizes", default="256,8192", help="message sizes in bytes (256,8192)")
    ap.add_argument("--echoes", type=int, default=100_000, help="echoes per run (100000)")
    ap.add_argument("--runs", type=int, default=5, help="runs per tree, in turns (5)")
    ap.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.one_run:
        print(json.dumps(measure(sizes, args.echoes)))
        return
    trees = dict(tree.split("=", 1) for tree in args.trees) or {"this checkout": ROOT}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, path in trees.items():
            runs[name].append(run_tree(path, sizes, args.echoes))
    cells = list(runs[next(iter(trees))][0])
    print(f"- FASTWS_CODEC={os.environ.get('FASTWS_CODEC', '(default)')}; {args.echoes:,} echoes per run")
    print(f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {args.runs} runs per tree, in turns")
    print()
    print("| tree | " + " | ".join(f"{cell} B: best, median ns/echo" for cell in cells) + " |")
    print("|---|" + "---:|" * len(cells))
    for name, results in runs.items():
        row = [f"{min(r[c] for r in results):,.0f}, {statistics.median(r[c] for r in results):,.0f}" for c in cells]
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
