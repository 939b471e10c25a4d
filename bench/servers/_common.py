"""Shared plumbing for the echo servers of bench/bench_echo.py.

Every server script takes ``--port`` (and ``--host``, ``--uvloop``), serves
binary and text echo with compression off, no message-size limit and no
keepalive pings, until SIGTERM or SIGINT. It runs on the default asyncio loop
unless ``--uvloop`` is given. ``bench_echo.py`` waits for the port to accept.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import Callable


def parse_args(name: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{name} echo server for bench/bench_echo.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")
    return parser.parse_args()


def run(name: str, start: Callable[[argparse.Namespace], Awaitable[Callable[[], Awaitable[None]]]]) -> None:
    """Parse the arguments, ``stop = await start(args)`` on the chosen loop,
    then wait for SIGTERM/SIGINT and ``await stop()``."""
    args = parse_args(name)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        stop = await start(args)
        kind = type(loop).__module__.split(".")[0]
        print(f"{name} echo server on {args.host}:{args.port} ({kind} loop)", file=sys.stderr, flush=True)
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
