"""Command line: ``fastws serve`` (the echo server), ``fastws relay`` (pub/sub),
``fastws client URI``, ``fastws bench URI``. ``serve --unix PATH`` and
``client --unix PATH [URI]`` use a Unix socket instead of TCP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any, Optional

from . import loadgen
from .asyncio import ServerConnection, connect, serve
from .asyncio.client import unix_connect
from .asyncio.server import unix_serve
from .exceptions import ConnectionClosed, WebSocketError
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


def loop_name() -> str:
    """Which event loop runs (uvloop or asyncio's), for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return "on uvloop" if module.startswith("uvloop") else "on the asyncio loop"


def announce(line: str) -> None:
    """One whole line on stdout in one write (workers share the pipe; print() writes the newline apart)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class CommandError(Exception):
    """A failure the command line reports as one line on stderr (no traceback) and exit status 1."""


def listen_error(where: str, exc: OSError) -> CommandError:
    reason = exc.strerror or str(exc)
    return CommandError(reason if where in reason else f"cannot listen on {where}: {reason}")


async def run_server(host: str, port: int, unix: Optional[str] = None) -> None:
    """The echo server on host:port, or on the Unix socket ``unix`` (a stale
    socket file there is replaced; the server removes its own when it stops)."""
    where = f"{host}:{port}" if unix is None else unix
    try:
        if unix is not None:
            server = await unix_serve(echo, unix, process_request=plain_http)
        else:
            server = await serve(echo, host, port, process_request=plain_http)
    except OSError as exc:
        raise listen_error(where, exc) from None
    except NotImplementedError:  # asyncio has no Unix sockets on Windows
        raise CommandError("Unix sockets are not available on this platform") from None
    async with server:
        if unix is not None:
            logger.info("fastws echo server on unix socket %s (ws://localhost/), %s", unix, loop_name())
            announce(f"listening on unix:{unix}")
        else:
            logger.info("fastws echo server on http://%s:%d (ws://%s:%d), %s", *(host, server.port) * 2, loop_name())
            announce(f"listening on http://{host}:{server.port}")
        await server.serve_forever()


async def run_relay(args: argparse.Namespace) -> None:
    from .relay import RedisBackplane, Relay, serve_relay

    backplane = RedisBackplane(args.redis) if args.redis else None
    relay = Relay(max_backlog=args.max_backlog, policy=args.policy, close_code=args.close_code, backplane=backplane)
    options: dict[str, Any] = {"reuse_port": True} if args.reuse_port else {}
    async with serve_relay(
        args.host, args.port, relay=relay, echo=args.echo, log_interval=args.stats_interval, **options
    ) as server:
        logger.info(
            "fastws relay on ws://%s:%d/<topic> (stats: http://%s:%d/stats), %s",
            *(args.host, server.port) * 2,
            loop_name(),
        )
        announce(f"listening on http://{args.host}:{server.port}")
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()  # then close every connection with 1001 and stop the backplane


def run_relay_workers(args: argparse.Namespace, argv: list[str]) -> int:
    """``--workers N``: N relay processes on one port (SO_REUSEPORT), sharing topics through Redis."""
    if not args.redis:
        raise SystemExit("fastws relay: --workers needs --redis (workers share topics through it)")
    if args.port == 0:
        raise SystemExit("fastws relay: --workers needs a fixed --port")
    worker_argv: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--workers":
            next(arguments, None)  # and its value
        elif not argument.startswith("--workers="):
            worker_argv.append(argument)
    command = [sys.executable, "-m", "fastws", *worker_argv, "--reuse-port"]
    workers = [subprocess.Popen(command) for _ in range(args.workers)]

    def forward(signum: int, frame: Any) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(worker.wait() for worker in workers)


async def run_client(uri: str, unix: Optional[str] = None) -> None:
    """Send stdin's lines to ``uri`` (through the Unix socket ``unix`` if
    given) and print every message received."""
    loop = asyncio.get_running_loop()
    where = uri if unix is None else f"{uri} through {unix}"
    try:
        if unix is not None:
            ws = await unix_connect(unix, uri)
        else:
            ws = await connect(uri)
    except (OSError, ValueError, WebSocketError) as exc:  # refused, no socket file, bad URI, rejected, timed out
        raise CommandError(f"cannot connect to {where}: {getattr(exc, 'strerror', None) or exc}") from None
    except NotImplementedError:
        raise CommandError("Unix sockets are not available on this platform") from None
    try:
        print(f"connected to {where}; type lines to send, Ctrl-D to quit", file=sys.stderr)

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
    finally:
        await ws.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastws", description="fastws: a fast WebSocket library")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="run the echo server (plain HTTP answers 'websocket test')")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=3000)
    server.add_argument("--unix", metavar="PATH", help="listen on this Unix socket instead of --host/--port")
    server.add_argument("--no-uvloop", action="store_true", help="stay on the default asyncio loop")
    relay = commands.add_parser("relay", help="pub/sub relay: ws://host:port/<topic>, statistics at /stats")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=int, default=3000)
    relay.add_argument("--echo", action="store_true", help="publishers receive their own messages too")
    relay.add_argument("--max-backlog", type=int, default=1024, help="messages waiting per slow subscriber")
    relay.add_argument("--policy", default="close", choices=["close", "drop-oldest", "drop-newest"])
    relay.add_argument("--close-code", type=int, default=1013, help="with --policy close: 1013 or 1008")
    relay.add_argument("--redis", metavar="URL", help="share topics with other relays via Redis (redis://host:port)")
    relay.add_argument("--workers", type=int, default=1, help="processes on one port (needs --redis)")
    relay.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT")
    relay.add_argument("--stats-interval", type=float, default=10.0, help="seconds between statistics log lines")
    relay.add_argument("--no-uvloop", action="store_true", help="stay on the default asyncio loop")
    client = commands.add_parser("client", help="interactive client: stdin lines out, messages printed")
    client.add_argument("--unix", metavar="PATH", help="connect through this Unix socket (URI: ws://localhost/)")
    client.add_argument("uri", nargs="?", help="ws:// or wss:// URI (optional with --unix)")
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
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    if args.command == "bench":
        return loadgen.run(args)
    if args.command == "client" and args.uri is None:
        if args.unix is None:
            parser.error("client: a URI is needed (or --unix PATH)")
        args.uri = "ws://localhost/"
    try:
        if args.command == "serve":
            run(run_server(args.host, args.port, args.unix), use_uvloop=not args.no_uvloop)
        elif args.command == "relay":
            if args.workers > 1:
                return run_relay_workers(args, argv)
            run(run_relay(args), use_uvloop=not args.no_uvloop)
        else:
            asyncio.run(run_client(args.uri, args.unix))
    except CommandError as exc:
        print(f"fastws {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
