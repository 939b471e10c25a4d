"""Command line: ``fastws serve`` (the echo server), ``fastws client URI``, ``fastws bench URI``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any, Optional

from . import loadgen
from .asyncio import ServerConnection, connect, serve
from .exceptions import ConnectionClosed
from .handshake import Headers, Request, Response

logger = logging.getLogger("fastws")


async def echo(ws: ServerConnection) -> None:
    """Send every message back: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


def plain_http(ws: ServerConnection, request: Request) -> Optional[Response]:
    """Answer a request without ``Upgrade: websocket`` with the tutorial's text."""
    if "websocket" in request.headers.tokens("Upgrade"):
        return None
    return Response(200, Headers([("Content-Type", "text/plain; charset=utf-8")]), b"websocket test")


async def run_server(host: str, port: int) -> None:
    async with serve(echo, host, port, process_request=plain_http) as server:
        logger.info("fastws echo server on http://%s:%d (ws://%s:%d)", host, server.port, host, server.port)
        print(f"listening on http://{host}:{server.port}", flush=True)
        await server.serve_forever()


async def run_client(uri: str) -> None:
    loop = asyncio.get_running_loop()
    async with connect(uri) as ws:
        print(f"connected to {uri}; type lines to send, Ctrl-D to quit", file=sys.stderr)

        async def print_incoming() -> None:
            try:
                async for message in ws:
                    print(f"< {message!r}" if isinstance(message, bytes) else f"< {message}", flush=True)
            except ConnectionClosed as exc:
                print(f"connection closed: {exc.code} {exc.reason}", file=sys.stderr)

        printer = asyncio.create_task(print_incoming())
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or printer.done():
                break
            await ws.send(line.rstrip("\n"))
        await ws.close()
        await printer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastws", description="fastws: a fast WebSocket library")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="run the echo server (plain HTTP answers 'websocket test')")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=3000)
    server.add_argument("--no-uvloop", action="store_true", help="stay on the default asyncio loop")
    client = commands.add_parser("client", help="interactive client: stdin lines out, messages printed")
    client.add_argument("uri")
    load = commands.add_parser("bench", help="load generator against any WebSocket echo server")
    loadgen.add_arguments(load)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(main: Coroutine[Any, Any, None], use_uvloop: bool = True) -> None:
    """Run on uvloop when it is installed (the optional extra), else on asyncio's loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            logger.debug("using uvloop")
            uvloop.run(main)
            return
    asyncio.run(main)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    if args.command == "bench":
        return loadgen.run(args)
    try:
        if args.command == "serve":
            run(run_server(args.host, args.port), use_uvloop=not args.no_uvloop)
        else:
            asyncio.run(run_client(args.uri))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
