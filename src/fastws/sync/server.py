"""The threaded WebSocket server: ``with serve(handler, host, port) as server: server.serve_forever()``.

One thread per connection runs its handshake and then ``handler(ws)``; each
open connection also has its reader thread. ``max_connections`` bounds both:
above it, a connection is answered 503 at once by the accepting thread.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import select
import socket
import ssl as ssl_module
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .. import __version__
from .._socketfile import SocketFile
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..extensions.permessage_deflate import SERVER_DEFAULT, PerMessageDeflate
from ..frames import CloseCode, build_close
from ..handshake import ExtensionHook, Request, Response, ServerHandshake, error_response
from ..limits import LimitOptions, Limits, unknown_keyword
from ..upgrade import ServerUpgrade
from .connection import WebSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["serve", "unix_serve", "Server", "ServerConnection"]

SERVER_HEADER = f"fastws/{__version__}"
DEFAULT_LOGGER = logging.getLogger("fastws.server")
MAX_CONNECTIONS = 1000
"""Default bound on connections (handshaking and open): 1000, two threads each."""

Handler = Callable[["ServerConnection"], Any]
ProcessRequest = Callable[["ServerConnection", Request], Optional[Response]]
ProcessResponse = Callable[["ServerConnection", Request, Response], Optional[Response]]
LoggerLike = Union[str, logging.Logger, None]


class ServerConnection(WebSocket):
    """A connection accepted by a ``Server``; ``request`` holds the HTTP request."""

    username: Optional[str] = None
    """The user that ``fastws.auth.basic_auth`` authenticated."""

    def __init__(self, sock: socket.socket, server: Server) -> None:
        super().__init__(sock, server.limits, is_client=False, log=server.logger)
        self.server = server
        self.request: Optional[Request] = None
        self._upgrade = ServerUpgrade(server.handshake, server.limits.max_header_size)

    @property
    def response(self) -> Optional[Response]:
        """The 101 answer, once sent."""
        return self._upgrade.response

    @property
    def path(self) -> str:
        return self.request.path if self.request is not None else ""

    # -- the opening handshake: request -> process_request -> answer -> process_response

    def _handshake(self) -> bool:
        """Read the request and answer it within ``open_timeout``; True if the connection opened."""
        timeout = self.limits.open_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self.socket
        try:
            if isinstance(sock, ssl_module.SSLSocket):
                sock.settimeout(timeout)
                sock.do_handshake()
            request = None
            while request is None:
                if deadline is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = sock.recv(4096)
                if not data:
                    return False
                try:
                    request = self._upgrade.receive_data(data)
                except InvalidHandshake as exc:
                    self._answer(self._rejection(exc))
                    return False
        except (socket.timeout, TimeoutError):
            self.logger.info("%s handshake timed out after %ss", self.peer, timeout)
            return False
        except OSError as exc:
            self.logger.debug("%s handshake failed: %s", self.peer, exc)
            return False
        self.request = request
        response = self._call("process_request", self.server.process_request, request)
        if response is None:
            try:
                response = self._upgrade.accept()
            except InvalidHandshake as exc:
                response = self._rejection(exc)
        if self.server.process_response is not None:
            replacement = self._call("process_response", self.server.process_response, request, response)
            response = response if replacement is None else replacement
        return self._answer(response)

    def _call(self, name: str, hook: Optional[Callable[..., Any]], *args: Any) -> Optional[Response]:
        """Run a hook: its Response (with our Server header), None, or 500 if it failed."""
        if hook is None:
            return None
        try:
            answer = hook(self, *args)
        except Exception:
            self.logger.exception("%s %s failed; answering 500", self.peer, name)
            return self._error(500, "Internal Server Error")
        if inspect.isawaitable(answer):
            if hasattr(answer, "close"):
                answer.close()  # never awaited: no "coroutine was never awaited" warning
            self.logger.error("%s %s returned an awaitable: the threaded server needs a function", self.peer, name)
            return self._error(500, "Internal Server Error")
        if answer is None:
            return None
        return self._upgrade.hook_answer(name, answer, self.logger, self.peer)

    def _error(self, status: int, text: str, headers: Any = ()) -> Response:
        return self._upgrade.error(status, text, headers)

    def _rejection(self, exc: InvalidHandshake) -> Response:
        return self._upgrade.rejection(exc, self.logger, self.peer)

    def _answer(self, response: Response) -> bool:
        """Write the answer; a 101 that accept() made opens the connection."""
        response, head = self._upgrade.final_head(response, self.logger, self.peer)
        opening = response.status == 101
        with self._write_lock:  # shutdown() may be refusing this connection meanwhile
            if self.server._closing and opening:
                response, opening = self._error(503, "server shutting down"), False
                head = response.serialize()
            try:
                self.socket.sendall(head)
            except OSError:
                return False
            if opening:
                self.server._opened(self)
                self._start(self._upgrade)
        if not opening:
            self.logger.debug("%s %s -> %d", self.peer, self.path or "-", response.status)
            _close_after_answer(self.socket)
            return False
        self.logger.info("%s connected %s", self.peer, self.path)
        if self._outbox:  # the reader answered a ping while we held the write lock
            try:
                self._flush()
            except ConnectionClosed:
                pass
        return True

    def _refuse_for_shutdown(self) -> None:
        """Server.shutdown() during this handshake: answer 503 and close."""
        if not self._write_lock.acquire(timeout=1.0):
            return
        try:
            if self.connection is None:
                try:
                    self.socket.sendall(self._error(503, "server shutting down").serialize())
                    self.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            self._write_lock.release()

    def connection_closed(self, error: ConnectionClosed) -> None:
        self.logger.info("%s closed %d %s", self.peer, error.code, error.reason)


def _close_after_answer(sock: socket.socket) -> None:
    """Close after an HTTP answer: FIN first, then drop what the client sent
    (closing with unread bytes would send a reset, which can destroy the answer)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


class Server:
    """A listening threaded WebSocket server.

    ``serve_forever()`` accepts connections until ``shutdown()`` (from another
    thread, or a signal handler) stops listening, refuses handshakes in
    progress with 503, closes every open connection with 1001 (RFC 6455
    §7.4.1) and joins their threads. A context manager: leaving it shuts down.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        limits: Limits,
        handshake: ServerHandshake,
        process_request: Optional[ProcessRequest],
        process_response: Optional[ProcessResponse],
        logger: LoggerLike,
        ssl: Optional[ssl_module.SSLContext],
        max_connections: int,
    ) -> None:
        self.socket = sock
        self.handler = handler
        self.limits = limits
        self.handshake = handshake
        self.process_request = process_request
        self.process_response = process_response
        self.logger: logging.Logger = (
            DEFAULT_LOGGER if logger is None else logging.getLogger(logger) if isinstance(logger, str) else logger
        )
        self.ssl = ssl
        self.max_connections = max_connections
        self.connections: set[ServerConnection] = set()
        self._handshaking: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._shut_down = False
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()  # not serving yet
        self._wake_r, self._wake_w = socket.socketpair()
        self._unix_socket: Optional[SocketFile] = None

    @property
    def port(self) -> int:
        """The listening port (handy with ``port=0``)."""
        if self.socket.family == getattr(socket, "AF_UNIX", None):
            raise RuntimeError("a Unix socket server has no port; its path is server.socket.getsockname()")
        return int(self.socket.getsockname()[1])

    def fileno(self) -> int:
        return self.socket.fileno()

    def serve_forever(self) -> None:
        """Accept connections until ``shutdown()``."""
        if self._closing:
            raise RuntimeError("the server is shut down")
        self._stopped.clear()
        self._serving.set()
        try:
            poller = select.poll()
            poller.register(self.socket, select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            while not self._closing:
                ready = poller.poll()
                if self._closing:
                    break
                if not any(fd == self.socket.fileno() for fd, _ in ready):
                    continue
                try:
                    sock, address = self.socket.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        self.logger.error("accept failed: %s; pausing accepts for 100 ms", exc)
                        self._wake_r.settimeout(0.1)  # a bounded wait, interrupted by shutdown()
                        try:
                            self._wake_r.recv(1)
                        except OSError:
                            pass
                        continue
                    raise
                self._accepted(sock, address)
        finally:
            self._serving.clear()
            self._stopped.set()

    def _accepted(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            full = len(self.connections) + len(self._handshaking) >= self.max_connections
        if full:
            self.logger.warning("%s refused: %d connections (max_connections)", address, self.max_connections)
            try:
                sock.sendall(error_response(503, "Too many connections", [("Retry-After", "1")]).serialize())
            except OSError:
                pass
            _close_after_answer(sock)
            return
        if sock.family != getattr(socket, "AF_UNIX", None):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl is not None:
            sock = self.ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        ws = ServerConnection(sock, self)
        with self._lock:
            self._handshaking.add(ws)
        thread = threading.Thread(target=self._run, args=(ws,), name=f"fastws-handler-{ws.peer}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _opened(self, ws: ServerConnection) -> None:
        with self._lock:
            self._handshaking.discard(ws)
            self.connections.add(ws)

    def _run(self, ws: ServerConnection) -> None:
        """A connection's thread: the handshake, then the handler, then close."""
        try:
            if ws._handshake():
                try:
                    self.handler(ws)
                except ConnectionClosed:
                    pass
                except Exception:
                    self.logger.exception("%s connection handler failed", ws.peer)
                    ws.close(CloseCode.INTERNAL_ERROR, "internal error")
                    return
                ws.close()
        except Exception:
            self.logger.exception("%s connection thread failed", ws.peer)
            ws.abort("internal error")
        finally:
            if ws._reader is None:
                ws.socket.close()
            else:
                ws.wait_closed()
            with self._lock:
                self._handshaking.discard(ws)
                self.connections.discard(ws)
                self._threads.discard(threading.current_thread())

    def shutdown(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Stop listening, refuse handshakes in progress with 503, close every
        connection with ``code`` (1001 going away) and wait for the connection
        threads, at most ``close_timeout`` (then the sockets are dropped)."""
        build_close(code, reason)  # an invalid code or reason raises before anything closes
        if self._shut_down:
            return
        if not self._closing:
            self.logger.info("server shutting down")
        self._closing = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait()
        self.socket.close()
        self._remove_unix_socket()
        with self._lock:
            handshaking = list(self._handshaking)
        for ws in handshaking:
            ws._refuse_for_shutdown()
        with self._lock:  # after the refusals: a handshake that was finishing is open by now
            connections = list(self.connections)
        for ws in connections:
            ws._start_close(code, reason, wait=False)
        timeout = self.limits.close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        for ws in connections:
            if not ws.wait_closed(None if deadline is None else max(deadline - time.monotonic(), 0)):
                ws.abort("server shut down")
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.1))
            if thread.is_alive():
                self.logger.warning("%s still running after shutdown (a handler that ignores closing?)", thread.name)
        self._wake_r.close()
        self._wake_w.close()
        self._shut_down = True

    def _remove_unix_socket(self) -> None:
        """Unlink the socket file we bound, unless another file replaced it since."""
        if self._unix_socket is not None:
            self._unix_socket.remove()
            self._unix_socket = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


_SERVE_KEYWORDS = frozenset(
    [
        "subprotocols",
        "select_subprotocol",
        "origins",
        "extensions",
        "process_request",
        "process_response",
        "server_header",
        "logger",
        "compression",
        "ssl",
        "sock",
        "backlog",
        "max_connections",
    ]
)


def _make_server(caller: str, handler: Handler, listening: socket.socket, options: dict[str, Any]) -> Server:
    limits_ = {name: value for name, value in options.items() if name not in _SERVE_KEYWORDS}
    limits = Limits.from_options(limits_, caller=caller)  # type: ignore[arg-type]
    extensions = options.get("extensions")
    compression = options.get("compression", SERVER_DEFAULT)
    if extensions is None and compression is not None:
        extensions = compression.accept_offer
    return Server(
        listening,
        handler,
        limits=limits,
        handshake=ServerHandshake(
            subprotocols=options.get("subprotocols"),
            select_subprotocol=options.get("select_subprotocol"),
            origins=options.get("origins"),
            extensions=extensions,
            server_header=options.get("server_header", SERVER_HEADER),
        ),
        process_request=options.get("process_request"),
        process_response=options.get("process_response"),
        logger=options.get("logger"),
        ssl=options.get("ssl"),
        max_connections=options.get("max_connections", MAX_CONNECTIONS),
    )


def serve(
    handler: Handler,
    host: Optional[str] = "127.0.0.1",
    port: int = 0,
    *,
    subprotocols: Optional[list[str]] = None,
    select_subprotocol: Optional[Callable[[Request, list[str]], Optional[str]]] = None,
    origins: Optional[list[Optional[str]]] = None,
    extensions: Optional[ExtensionHook] = None,
    process_request: Optional[ProcessRequest] = None,
    process_response: Optional[ProcessResponse] = None,
    server_header: Optional[str] = SERVER_HEADER,
    logger: LoggerLike = None,
    compression: Optional[PerMessageDeflate] = SERVER_DEFAULT,
    ssl: Optional[ssl_module.SSLContext] = None,
    sock: Optional[socket.socket] = None,
    reuse_port: bool = False,
    backlog: int = 100,
    max_connections: int = MAX_CONNECTIONS,
    **limits: Unpack[LimitOptions],
) -> Server:
    """Listen on ``host:port`` and return the ``Server``; ``serve_forever()`` runs it.

    ``handler(ws)`` is a plain function run in a thread per connection; the
    connection is closed when it returns. Keywords are the asyncio
    ``serve()``'s (hooks are plain functions) plus ``max_connections``
    (handshaking and open; 503 above it)."""
    if sock is None:
        sock = socket.create_server((host or "", port), backlog=backlog, reuse_port=reuse_port, dualstack_ipv6=False)
    return _make_server("serve", handler, sock, _options(locals(), limits))


def _options(arguments: dict[str, Any], limits: LimitOptions) -> dict[str, Any]:
    options = {name: arguments[name] for name in _SERVE_KEYWORDS if name in arguments}
    options.update(limits)
    return options


def unix_serve(
    handler: Handler,
    path: Union[str, os.PathLike[str], None] = None,
    **options: Any,
) -> Server:
    """``serve()`` on a Unix socket at ``path`` (a stale socket file is replaced;
    ``shutdown()`` removes the file it bound), or on ``sock=`` a bound AF_UNIX socket."""
    for name in ("host", "port", "reuse_port"):
        if name in options:
            raise TypeError(f"unix_serve() got an unexpected keyword argument {name!r}; it listens on path")
    for name in options:
        if name not in _SERVE_KEYWORDS and name not in Limits.__slots__:
            raise unknown_keyword("unix_serve", name)
    sock = options.pop("sock", None)
    if (path is None) == (sock is None):
        raise TypeError("unix_serve() takes a path or sock= (a bound AF_UNIX socket), not both")
    unix_file = None
    if sock is None:
        assert path is not None
        path = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if not path.startswith("\0"):
                try:
                    if os.path.exists(path) and os.stat(path).st_mode & 0o170000 == 0o140000:
                        os.unlink(path)  # a stale socket file
                except OSError:
                    pass
            try:
                sock.bind(path)
            except FileNotFoundError as exc:
                directory = os.path.dirname(os.path.abspath(path))
                raise FileNotFoundError(
                    errno.ENOENT, f"cannot listen on Unix socket {path!r}: directory {directory!r} does not exist", path
                ) from exc
            sock.listen(options.pop("backlog", 100))
        except BaseException:
            sock.close()
            raise
        unix_file = SocketFile.bound(path)
    server = _make_server("unix_serve", handler, sock, options)
    server._unix_socket = unix_file
    return server
