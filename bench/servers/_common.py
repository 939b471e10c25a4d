"""Shared plumbing for the servers of bench/bench_echo.py (echo) and
bench/bench_fanout.py (pub/sub relay).

Every server script takes ``--port`` (and ``--host``, ``--uvloop``), serves
with compression off, no message-size limit (at least 1 MiB) and no keepalive
pings, until SIGTERM or SIGINT. It runs on the default asyncio loop unless
``--uvloop`` is given. The benchmark waits for the port to accept.

- echo servers echo every binary and text message back;
- relay servers subscribe a client connected to ``/<topic>`` to that topic and
  deliver every message it sends to every *other* subscriber of the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import Callable


def parse_args(name: str, kind: str = "echo") -> argparse.Namespace:
    bench = "bench/bench_fanout.py" if kind == "relay" else "bench/bench_echo.py"
    parser = argparse.ArgumentParser(description=f"{name} {kind} server for {bench}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")
    return parser.parse_args()


def run(
    name: str, start: Callable[[argparse.Namespace], Awaitable[Callable[[], Awaitable[None]]]], kind: str = "echo"
) -> None:
    """Parse the arguments, ``stop = await start(args)`` on the chosen loop,
    then wait for SIGTERM/SIGINT and ``await stop()``. ``kind`` ("echo" or
    "relay") only changes the wording of ``--help`` and the start-up line."""
    args = parse_args(name, kind)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        stop = await start(args)
        flavour = type(loop).__module__.split(".")[0]
        print(f"{name} {kind} server on {args.host}:{args.port} ({flavour} loop)", file=sys.stderr, flush=True)
        await done.wait()
        try:
            await asyncio.wait_for(stop(), 2)
        except Exception:  # shutting down: a slow close must not keep the process around
            pass

    if args.uvloop:
        import uvloop

        if hasattr(uvloop, "run"):
            uvloop.run(main())
        else:  # uvloop < 0.18
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            asyncio.run(main())
    else:
        asyncio.run(main())
