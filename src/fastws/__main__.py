"""Command line: ``fastws serve`` (the echo server), ``fastws relay`` (pub/sub),
``fastws client URI``, ``fastws bench URI``.

A user error (a refused connection, an unknown host, a bad URI, a port in use,
a missing optional package, an invalid option) is one line on stderr,
``fastws <command>: ...``, and a non-zero exit status: 2 for a usage error,
1 at run time; ``-v``/``--debug`` (before or after the command) adds the
traceback and debug logging. SIGTERM and SIGINT make ``serve`` and ``relay``
close every connection with 1001 (going away) and exit 0; a second signal
drops the connections still closing. Ctrl-C or Ctrl-D ends ``client`` with a
clean close (1000). ``serve --unix PATH`` and ``client --unix PATH [URI]``
use a Unix socket instead of TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any, Callable, NoReturn, Optional, TypeVar, Union

from . import loadgen
from ._allocator import retain_freed_memory
from .asyncio import Listener, ServerConnection, WebSocket, connect, serve
from .asyncio.client import unix_connect
from .asyncio.server import Server, unix_serve
from .exceptions import ConnectionClosed, WebSocketError
from .frames import CloseCode
from .handshake import Headers, Request, Response

logger = logging.getLogger("fastws")

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


# -- the echo server ------------------------------------------------------------


async def echo(ws: ServerConnection) -> None:
    """Send every message back: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


class EchoListener(Listener):
    """The echo on the callback API (``serve --listener``): each message is sent
    back from inside ``data_received``, without a task per connection."""

    __slots__ = ()

    def on_message(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        ws.send_nowait(message)


PLAIN_TEXT = "text/plain; charset=utf-8"
TEST_BODY = b"websocket test"


def plain_http(ws: ServerConnection, request: Request) -> Optional[Response]:
    """Answer a request without ``Upgrade: websocket``: GET and HEAD get the
    tutorial's text (HEAD without the body), other methods 405."""
    if "websocket" in request.headers.tokens("Upgrade"):
        return None
    if request.method == "GET":
        return Response(200, Headers([("Content-Type", PLAIN_TEXT)]), TEST_BODY)
    if request.method == "HEAD":
        headers = Headers([("Content-Type", PLAIN_TEXT), ("Content-Length", str(len(TEST_BODY)))])
        return Response(200, headers)
    headers = Headers([("Allow", "GET, HEAD"), ("Content-Type", PLAIN_TEXT)])
    return Response(405, headers, b"method not allowed: use GET (or a WebSocket upgrade)\n")


def loop_name() -> str:
    """Which event loop runs (uvloop or asyncio's), for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return "on uvloop" if module.startswith("uvloop") else "on the asyncio loop"


def announce(line: str) -> None:
    """One whole line on stdout in one write (workers share the pipe; print() writes the newline apart)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def http_address(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class CommandError(Exception):
    """A failure the command line reports as one line on stderr and exit status 1
    (its ``__cause__``, shown with ``--debug``, is the original exception)."""


ASYNCIO_WORDS = ("Connect call failed", "error while attempting to bind")


def reason_of(exc: BaseException) -> str:
    """An exception as the end of a one-line message: the system's words for an OSError."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, WebSocketError):
        if exc.errno and exc.strerror.startswith(ASYNCIO_WORDS):  # the system's words are clearer
            return os.strerror(exc.errno)
        return exc.strerror
    return str(exc) or type(exc).__name__


def listen_error(where: str, exc: OSError) -> CommandError:
    reason = reason_of(exc)
    error = CommandError(reason if where in reason else f"cannot listen on {where}: {reason}")
    error.__cause__ = exc
    return error


class Stop:
    """SIGINT and SIGTERM, on the event loop: the first sets ``event``; a second calls ``again`` (if set)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signals = 0
        self.again: Optional[Callable[[], None]] = None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows: Ctrl-C raises KeyboardInterrupt
                pass

    def __call__(self) -> None:
        self.signals += 1
        if self.signals > 1 and self.again is not None:
            self.again()
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()

    async def unless_stopped(self, awaitable: Awaitable[T]) -> Optional[T]:
        """``awaitable``'s result, or None (after cancelling it) if a signal comes first."""
        task = asyncio.ensure_future(awaitable)
        waiter = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        return None


def tls_context(cert: str, key: Optional[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is one: not PEM, the key does not match
        files = cert if key is None else f"{cert} and {key}"
        raise CommandError(f"cannot load the TLS certificate from {files}: {reason_of(exc)}") from exc
    return context


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``serve()``/``unix_serve()`` that the options of ``fastws serve`` set."""
    options: dict[str, Any] = {
        "process_request": plain_http,
        "max_message_size": args.max_size,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
    }
    if args.subprotocol:
        options["subprotocols"] = args.subprotocol
    if args.origin:
        options["origins"] = args.origin
    if args.compression == "off":
        options["compression"] = None
    if args.listener:
        options["listener"] = EchoListener
    if args.tls_cert:
        options["ssl"] = tls_context(args.tls_cert, args.tls_key)
    return options


async def run_server(args: argparse.Namespace) -> None:
    """The echo server on host:port, or on the Unix socket ``args.unix`` (a stale
    socket file there is replaced; the server removes its own when it stops),
    until SIGINT or SIGTERM: then every connection is closed with 1001."""
    options = server_options(args)
    handler = None if args.listener else echo
    where = http_address(args.host, args.port) if args.unix is None else args.unix
    stop = Stop()
    try:
        if args.unix is not None:
            server = await unix_serve(handler, args.unix, **options)
        else:
            reuse_port = True if args.reuse_port else None
            server = await serve(handler, args.host, args.port, reuse_port=reuse_port, **options)
    except OSError as exc:
        raise listen_error(where.split("://")[-1], exc) from exc
    except NotImplementedError as exc:  # asyncio has no Unix sockets on Windows
        raise CommandError("Unix sockets are not available on this platform") from exc
    secure = args.tls_cert is not None
    api = "callback API" if args.listener else "async handler"
    if args.unix is not None:
        scheme = "wss" if secure else "ws"
        logger.info(
            "fastws echo server on unix socket %s (%s://localhost/), %s, %s", args.unix, scheme, api, loop_name()
        )
        announce(f"listening on unix:{args.unix}")
    else:
        web = http_address(args.host, server.port, "https" if secure else "http")
        ws = http_address(args.host, server.port, "wss" if secure else "ws")
        logger.info("fastws echo server on %s (%s), %s, %s, pid %d", web, ws, api, loop_name(), os.getpid())
        announce(f"listening on {web}")
    await shut_down_on_signal(server, stop)


async def shut_down_on_signal(server: Server, stop: Stop) -> None:
    """Serve until SIGINT/SIGTERM, then close every connection with 1001; a second signal drops them."""
    stop.again = lambda: drop_connections(server)
    try:
        await stop.wait()
    finally:
        await server.close(code=CloseCode.GOING_AWAY)


def drop_connections(server: Server) -> None:
    """A second signal: drop the connections still in their close handshake."""
    for ws in list(server.connections):
        ws.abort("second signal")


# -- the relay ------------------------------------------------------------------


async def run_relay(args: argparse.Namespace) -> None:
    from .relay import RedisBackplane, Relay, serve_relay

    stop = Stop()
    backplane = None
    if args.redis:
        try:
            backplane = RedisBackplane(args.redis, max_outbox=args.max_outbox)
        except ImportError as exc:
            raise CommandError("--redis needs the redis package (pip install redis)") from exc
        except ValueError as exc:
            raise CommandError(f"--redis {args.redis}: {exc}") from exc
    relay = Relay(
        max_backlog=args.max_backlog,
        policy=args.policy,
        close_code=args.close_code,
        backplane=backplane,
        history=args.history,
        history_ttl=args.history_ttl or None,
    )
    options: dict[str, Any] = {"reuse_port": True} if args.reuse_port else {}
    if args.origin:
        options["origins"] = args.origin
    if args.compression == "off":
        options["compression"] = None  # on: the relay's default, one compressed frame shared by subscribers
    authorize = relay_authorization(args)
    if authorize is not None:
        options["authorize"] = authorize
    relay_server = serve_relay(
        args.host, args.port, relay=relay, echo=args.echo, log_interval=args.stats_interval, **options
    )
    try:
        server = await relay_server.__aenter__()
    except OSError as exc:
        if backplane is not None:
            await backplane.close()
        raise listen_error(f"{args.host}:{args.port}", exc) from exc
    try:
        logger.info(
            "fastws relay on %s/<topic> (stats: %s/stats), %s, pid %d",
            http_address(args.host, server.port, "ws"),
            http_address(args.host, server.port),
            loop_name(),
            os.getpid(),
        )
        announce(f"listening on {http_address(args.host, server.port)}")
        stop.again = lambda: drop_connections(server)
        await stop.wait()
    finally:
        await relay_server.__aexit__(None, None, None)  # every connection closed with 1001, the backplane stopped


def relay_authorization(args: argparse.Namespace) -> Any:
    """``--token`` (shared secrets) or ``--jwt-secret`` (signed tokens listing topics), or None.

    Both also come from the environment (FASTWS_RELAY_TOKEN, FASTWS_JWT_SECRET),
    which other users of the machine cannot read from the process list."""
    from .relay.auth import JWTAuth, TokenAuth

    tokens = args.token or ([os.environ["FASTWS_RELAY_TOKEN"]] if os.environ.get("FASTWS_RELAY_TOKEN") else [])
    secret = args.jwt_secret or os.environ.get("FASTWS_JWT_SECRET")
    if tokens and secret:
        raise CommandError("--token and --jwt-secret exclude each other: choose one policy")
    if tokens:
        return TokenAuth(tokens)
    if secret:
        try:
            return JWTAuth(secret, audience=args.jwt_audience, issuer=args.jwt_issuer, leeway=args.jwt_leeway)
        except ImportError as exc:
            raise CommandError('--jwt-secret needs PyJWT: pip install "pyfastws[jwt]"') from exc
    return None


# -- worker processes -------------------------------------------------------------


def probe_port(host: str, port: int) -> None:
    """Bind host:port with SO_REUSEPORT, as each worker will, and let it go: a port in use is a CommandError."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                probe.bind(address)
    except OSError as exc:
        raise listen_error(f"{host}:{port}", exc) from exc


def run_workers(args: argparse.Namespace, argv: list[str]) -> int:
    """``--workers N``: N processes of this command on one port (SO_REUSEPORT;
    the kernel spreads the connections). SIGINT and SIGTERM are passed on; if
    one worker fails, the others are stopped. The status is the first failure's, or 0."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise CommandError("--workers needs SO_REUSEPORT, which this platform lacks")
    probe_port(args.host, args.port)  # one error line here, rather than one per worker
    # The last --workers wins: each worker is the same command, alone on the shared port.
    command = [sys.executable, "-m", "fastws", *argv, "--workers", "1", "--reuse-port"]
    # Their own sessions: a terminal's Ctrl-C reaches them once, from here.
    workers = {}
    for _ in range(args.workers):
        worker = subprocess.Popen(command, start_new_session=True)
        workers[worker.pid] = worker
    stopping = False

    def forward(signum: int, frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers.values():
            if worker.returncode is None:
                try:
                    os.kill(worker.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        while any(worker.returncode is None for worker in workers.values()):
            pid, wait_status = os.waitpid(-1, 0)
            if pid not in workers:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            workers[pid].returncode = code
            if code != 0 and status == 0:
                status = code if code > 0 else 128 - code
                if not stopping:
                    forward(signal.SIGTERM)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


# -- the client -------------------------------------------------------------------


def _decode(line: bytes) -> str:
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("utf-8", errors="replace")


async def stdin_lines() -> AsyncIterator[str]:
    """stdin's lines, read when the event loop sees them arrive (``add_reader``),
    so a signal need not wait for Enter. A regular file or /dev/null (which no
    selector watches) and platforms without ``add_reader`` are read in a thread
    instead, where a read never waits for a person."""
    loop = asyncio.get_running_loop()
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # no stdin at all
        return
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    paused = False

    def readable() -> None:
        nonlocal paused
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        chunks.put_nowait(data)
        if not data or chunks.qsize() >= 16:  # EOF, or the connection is not keeping up
            loop.remove_reader(fd)
            paused = bool(data)

    try:
        loop.add_reader(fd, readable)
    except (NotImplementedError, OSError, ValueError):
        while True:
            raw = await loop.run_in_executor(None, sys.stdin.buffer.readline)
            if not raw:
                return
            yield _decode(raw.rstrip(b"\n"))
    try:
        buffer = b""
        while True:
            data = await chunks.get()
            if paused and chunks.qsize() < 4:
                paused = False
                loop.add_reader(fd, readable)
            if not data:
                break
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield _decode(line)
        if buffer:
            yield _decode(buffer)
    finally:
        loop.remove_reader(fd)


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``connect()``/``unix_connect()`` that the options of ``fastws client`` set."""
    options: dict[str, Any] = {}
    if args.header:
        options["extra_headers"] = args.header
    if args.subprotocol:
        options["subprotocols"] = args.subprotocol
    if args.origin:
        options["origin"] = args.origin
    if args.compression == "off":
        options["compression"] = None
    if args.insecure and args.uri.startswith(("wss:", "WSS:")):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    return options


def opener(args: argparse.Namespace) -> connect:
    """The connection ``fastws client`` will open (made before the loop runs:
    a bad URI or header is a usage error, raised as ValueError)."""
    options = client_options(args)
    if args.unix is not None:
        return unix_connect(args.unix, args.uri, **options)
    return connect(args.uri, **options)


async def run_client(args: argparse.Namespace, opening: connect) -> None:
    """Send stdin's lines and print every message received, until Ctrl-D,
    Ctrl-C (SIGINT) or SIGTERM (then close with 1000) or the server closes."""
    where = args.uri if args.unix is None else f"{args.uri} through {args.unix}"
    stop = Stop()

    async def open_connection() -> WebSocket:
        return await opening

    try:
        ws = await stop.unless_stopped(open_connection())
    except (OSError, ValueError, WebSocketError) as exc:  # refused, unknown host, no socket file, rejected, timed out
        raise CommandError(f"cannot connect to {where}: {reason_of(exc)}") from exc
    except NotImplementedError as exc:
        raise CommandError("Unix sockets are not available on this platform") from exc
    if ws is None:  # interrupted while connecting
        return
    connection = ws
    stop.again = lambda: connection.abort("second signal")
    try:
        negotiated = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
        print(f"connected to {where}{negotiated}; type lines to send, Ctrl-D to quit", file=sys.stderr, flush=True)

        async def print_incoming() -> None:
            try:
                async for message in ws:
                    print(f"< {message!r}" if isinstance(message, bytes) else f"< {message}", flush=True)
            except ConnectionClosed:  # not cleanly: 1006, 1011, ...
                pass
            print(f"connection closed: {ws.close_code} {ws.close_reason}".rstrip(), file=sys.stderr, flush=True)

        async def send_lines() -> None:
            async for line in stdin_lines():
                await ws.send(line)

        printer = asyncio.ensure_future(print_incoming())
        sender = asyncio.ensure_future(send_lines())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({printer, sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sender, stopper):
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, ConnectionClosed):
                pass
        await ws.close()
        await printer
    finally:
        await ws.close()


# -- arguments ----------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``fastws serve: argument --port: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range (0-65535)")
    return port


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not at least {minimum}")
        return value

    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
SIZE_UNITS.update({"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30})


def size_or_none(text: str) -> Optional[int]:
    """Bytes (``1048576``, ``64k``, ``4MiB``: binary units), or ``none`` for no limit."""
    value = text.strip().lower()
    if value == "none":
        return None
    number = value.rstrip("bgikm")
    unit = SIZE_UNITS.get(value[len(number) :])
    try:
        size = int(float(number) * unit) if unit is not None else None
    except ValueError:
        size = None
    if size is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, as 1048576, 64k or 4m, or none)")
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1 byte")
    return size


def seconds_or_none(text: str) -> Optional[float]:
    """Seconds (``20``, ``0.5``), or ``none`` to turn the setting off."""
    if text.strip().lower() == "none":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r} (or none)") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds (none turns it off)")
    return seconds


def header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"not NAME:VALUE: {text!r}")
    return name.strip(), value.strip()


def add_global_options(parser: argparse.ArgumentParser, *, in_command: bool) -> None:
    """-v/--debug, accepted before and after the command (after it, the default
    is left out so that the command's parser does not reset a flag given before it)."""
    default: Any = argparse.SUPPRESS if in_command else False
    parser.add_argument(
        "-v",
        "--verbose",
        "--debug",
        dest="debug",
        action="store_true",
        default=default,
        help="debug logging, and the traceback behind an error",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fastws", description="fastws: a fast WebSocket library")
    add_global_options(parser, in_command=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,relay,client,bench}")

    server = commands.add_parser("serve", help="run the echo server (plain HTTP GET answers 'websocket test')")
    server.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    server.add_argument("--port", type=port_number, help=f"port to listen on (default {DEFAULT_PORT}; 0: any free one)")
    server.add_argument("--unix", metavar="PATH", help="listen on this Unix socket instead of --host/--port")
    server.add_argument(
        "--max-size",
        type=size_or_none,
        default=1 << 20,
        metavar="BYTES",
        help=("largest message accepted (default 1m = 1 MiB; units k, m, g; none: no limit)"),
    )
    server.add_argument(
        "--subprotocol",
        action="append",
        metavar="NAME",
        help=("a subprotocol to select when the client offers it (repeatable, in order of preference)"),
    )
    server.add_argument("--compression", choices=["on", "off"], default="on", help="permessage-deflate (default on)")
    server.add_argument(
        "--origin",
        action="append",
        metavar="ORIGIN",
        help=("accept only handshakes with this Origin, as https://example.com (repeatable; others get 403)"),
    )
    server.add_argument(
        "--ping-interval",
        type=seconds_or_none,
        default=20.0,
        metavar="SECONDS",
        help=("keepalive ping every SECONDS (default 20; none: no pings)"),
    )
    server.add_argument(
        "--ping-timeout",
        type=seconds_or_none,
        default=20.0,
        metavar="SECONDS",
        help=("drop a connection whose pong takes longer (default 20; none: wait forever)"),
    )
    server.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this PEM certificate chain")
    server.add_argument("--tls-key", metavar="FILE", help="the PEM private key, if not in --tls-cert")
    server.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help=("N processes on one port (SO_REUSEPORT; needs a fixed --port)"),
    )
    server.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT")
    server.add_argument("--listener", action="store_true", help="echo with the callback API (fastws.Listener)")
    server.add_argument("--no-uvloop", action="store_true", help="stay on the default asyncio loop")
    add_global_options(server, in_command=True)

    relay = commands.add_parser("relay", help="pub/sub relay: ws://host:port/<topic>, statistics at /stats")
    relay.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    relay.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")
    relay.add_argument("--echo", action="store_true", help="publishers receive their own messages too")
    relay.add_argument(
        "--max-backlog",
        type=positive_int,
        default=1024,
        metavar="N",
        help=("messages waiting per slow subscriber (default 1024)"),
    )
    relay.add_argument("--policy", default="close", choices=["close", "drop-oldest", "drop-newest"])
    relay.add_argument(
        "--close-code",
        type=int,
        default=1013,
        choices=[1013, 1008],
        help=("with --policy close: 1013 (try again later, the default) or 1008 (policy violation)"),
    )
    relay.add_argument("--redis", metavar="URL", help="share topics with other relays via Redis (redis://host:port)")
    relay.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help=("processes on one port (SO_REUSEPORT; needs --redis and a fixed --port)"),
    )
    relay.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT")
    relay.add_argument(
        "--origin",
        action="append",
        metavar="ORIGIN",
        help=("accept only handshakes with this Origin, as https://example.com (repeatable; others get 403)"),
    )
    relay.add_argument(
        "--compression",
        choices=["on", "off"],
        default="on",
        help="permessage-deflate without context takeover: each message compressed once for all (default on)",
    )
    relay.add_argument(
        "--token",
        action="append",
        metavar="TOKEN",
        help=("clients must send it (Authorization: Bearer TOKEN or ?token=TOKEN); repeatable; or FASTWS_RELAY_TOKEN"),
    )
    relay.add_argument(
        "--jwt-secret",
        metavar="KEY",
        help=(
            "clients must send an HS256 JWT signed with KEY whose claims list the topics they may "
            "subscribe to and publish on (needs PyJWT); or FASTWS_JWT_SECRET"
        ),
    )
    relay.add_argument("--jwt-audience", metavar="AUD", help="with --jwt-secret: the required aud claim")
    relay.add_argument("--jwt-issuer", metavar="ISS", help="with --jwt-secret: the required iss claim")
    relay.add_argument(
        "--jwt-leeway", type=non_negative_float, default=0.0, metavar="SECONDS", help="clock skew tolerated (0)"
    )
    relay.add_argument(
        "--history",
        type=non_negative_int,
        default=0,
        metavar="N",
        help=(
            "keep the last N messages of each topic for subscribers that reconnect with ?since=OFFSET "
            "(default 0: none; with --redis, in Redis Streams)"
        ),
    )
    relay.add_argument(
        "--history-ttl",
        type=non_negative_float,
        default=3600.0,
        metavar="SECONDS",
        help="how long history is kept (default 3600; 0: for ever)",
    )
    relay.add_argument(
        "--max-outbox",
        type=positive_int,
        default=10000,
        metavar="N",
        help="with --redis: messages kept while Redis is down, sent when it returns (default 10000)",
    )
    relay.add_argument(
        "--stats-interval",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help=("seconds between statistics log lines (default 10; 0: none)"),
    )
    relay.add_argument("--no-uvloop", action="store_true", help="stay on the default asyncio loop")
    add_global_options(relay, in_command=True)

    client = commands.add_parser("client", help="interactive client: stdin lines out, messages printed")
    client.add_argument("--unix", metavar="PATH", help="connect through this Unix socket (URI: ws://localhost/)")
    client.add_argument(
        "--header", action="append", type=header, metavar="NAME:VALUE", help=("an extra request header (repeatable)")
    )
    client.add_argument("--subprotocol", action="append", metavar="NAME", help="offer this subprotocol (repeatable)")
    client.add_argument("--origin", help="send this Origin header")
    client.add_argument("--insecure", action="store_true", help="wss://: do not check the server's certificate")
    client.add_argument("--compression", choices=["on", "off"], default="on", help="offer permessage-deflate (on)")
    client.add_argument("uri", nargs="?", help="ws:// or wss:// URI (optional with --unix)")
    add_global_options(client, in_command=True)

    load = commands.add_parser("bench", help="load generator against any WebSocket echo server")
    loadgen.add_arguments(load)
    add_global_options(load, in_command=True)
    return parser


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def parse_args(argv: list[str], parser: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """Parse and check the command line (a usage error exits with status 2)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        command = parser_for(parser, "serve")
        if args.unix is not None:
            if args.host is not None or args.port is not None:
                command.error("--unix listens on a Unix socket: --host and --port do not apply")
            if args.workers > 1:
                command.error("--workers listens on a shared TCP port, not with --unix")
        args.host = DEFAULT_HOST if args.host is None else args.host
        args.port = DEFAULT_PORT if args.port is None else args.port
        if args.tls_key is not None and args.tls_cert is None:
            command.error("--tls-key needs --tls-cert")
        if args.workers > 1 and args.port == 0:
            command.error("--workers needs a fixed --port (each worker would pick its own with 0)")
    elif args.command == "relay":
        command = parser_for(parser, "relay")
        if args.redis is not None and not args.redis.startswith(REDIS_SCHEMES):
            command.error(f"--redis {args.redis}: not a Redis URL (redis://host:port, rediss://, unix://)")
        if args.workers > 1 and not args.redis:
            command.error("--workers needs --redis (workers share topics through it)")
        if args.workers > 1 and args.port == 0:
            command.error("--workers needs a fixed --port (each worker would pick its own with 0)")
    elif args.command == "client" and args.uri is None:
        if args.unix is None:
            parser_for(parser, "client").error("a URI is needed (or --unix PATH)")
        args.uri = "ws://localhost/"
    return args


def parser_for(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of one command (for its usage errors)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]  # type: ignore[no-any-return]
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


def fail(command: str, exc: BaseException, debug: bool) -> int:
    """Report ``exc`` as one line (after its traceback with --debug); exit status 1."""
    if debug:
        shown = exc.__cause__ if isinstance(exc, CommandError) and exc.__cause__ is not None else exc
        traceback.print_exception(type(shown), shown, shown.__traceback__)
    message = str(exc) if isinstance(exc, CommandError) else f"unexpected {type(exc).__name__}: {reason_of(exc)}"
    hint = "" if debug or isinstance(exc, CommandError) else " (--debug shows the traceback)"
    print(f"fastws {command}: {message}{hint}", file=sys.stderr, flush=True)
    return 1


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    retain_freed_memory()  # a program's choice, never made on import (see fastws._allocator)
    parser = build_parser()
    args = parse_args(argv, parser)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "bench":
        return loadgen.run(args)
    try:
        if args.command == "client":
            try:
                opening = opener(args)
            except ValueError as exc:  # InvalidURI, InvalidHeader
                parser_for(parser, "client").error(reason_of(exc))
            asyncio.run(run_client(args, opening))
        elif args.workers > 1:
            return run_workers(args, argv)
        elif args.command == "serve":
            run(run_server(args), use_uvloop=not args.no_uvloop)
        else:
            run(run_relay(args), use_uvloop=not args.no_uvloop)
    except CommandError as exc:
        return fail(args.command, exc, args.debug)
    except KeyboardInterrupt:  # a signal before the handlers were installed (or on Windows)
        return 130
    except Exception as exc:
        return fail(args.command, exc, args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
