"""The asyncio WebSocket server: ``async with serve(handler, host, port): ...``
or ``async with unix_serve(handler, path): ...``."""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union

from .. import __version__
from .._socketfile import SocketFile
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..extensions.permessage_deflate import SERVER_DEFAULT, PerMessageDeflate
from ..frames import CloseCode, build_close
from ..handshake import ExtensionHook, Request, Response, ServerHandshake
from ..upgrade import ServerUpgrade
from .protocol import LimitOptions, Limits, Listener, WebSocket
from .tls import tls_factory

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["serve", "unix_serve", "Server", "ServerConnection"]

SERVER_HEADER = f"fastws/{__version__}"
"""The default ``Server`` header of every answer (``serve(server_header=None)`` omits it)."""

DEFAULT_LOGGER = logging.getLogger("fastws.server")

Handler = Callable[["ServerConnection"], Awaitable[Any]]
ProcessRequest = Callable[["ServerConnection", Request], Union[Optional[Response], Awaitable[Optional[Response]]]]
ProcessResponse = Callable[
    ["ServerConnection", Request, Response], Union[Optional[Response], Awaitable[Optional[Response]]]
]
LoggerLike = Union[str, logging.Logger, None]


class ServerConnection(WebSocket):
    """A connection accepted by a ``Server``; ``request`` holds the HTTP request."""

    username: Optional[str] = None
    """The user that ``fastws.auth.basic_auth`` authenticated (set per connection only then)."""

    __slots__ = ("server", "request", "_upgrade", "_handler_task")

    def __init__(self, server: Server) -> None:
        super().__init__(server.limits, is_client=False, listener=server.listener_factory())
        self.server = server
        self.request: Optional[Request] = None
        self._upgrade = ServerUpgrade(server.handshake, server.limits.max_header_size)
        # The task of an async process_request/process_response, then of the handler.
        self._handler_task: Optional[asyncio.Task] = None

    @property
    def logger(self) -> logging.Logger:  # type: ignore[override]  # the server's: no per-connection attribute
        return self.server.logger

    @property
    def path(self) -> str:
        return self.request.path if self.request is not None else ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._handshaking.add(self)
        if self.server._closing:  # accepted just before Server.close() stopped listening
            self._refuse_for_shutdown()

    # -- the opening handshake ------------------------------------------------
    #
    # request -> process_request -> (None: accept, the 101 or a rejection) ->
    # Server header -> process_response -> written. Either hook may be async:
    # reading pauses while it runs, and the rest continues in a task.

    def handshake_data_received(self, data: bytes) -> None:
        try:
            request = self._upgrade.receive_data(data)
        except InvalidHandshake as exc:  # no request to show the hooks: answered as is
            self._send(self._rejection(exc))
            return
        if request is None:
            return  # the head is not complete, or an answer is being prepared (the bytes wait in the upgrade)
        self.request = request
        hook = self.server.process_request
        if hook is None:
            self._respond(None)
            return
        try:
            response = hook(self, request)
        except Exception:
            response = self._hook_failed("process_request")
        if inspect.isawaitable(response):
            self._await_hook(self._async_process_request(response))
            return
        self._respond(response)

    def _respond(self, response: Optional[Response]) -> None:
        """process_request's answer (None: accept) becomes the response; then process_response."""
        if response is None:
            try:
                response = self._upgrade.accept()
            except InvalidHandshake as exc:
                response = self._rejection(exc)
        else:
            response = self._checked("process_request", response)
        hook = self.server.process_response
        if hook is None:
            self._send(response)
            return
        assert self.request is not None
        try:
            replacement = hook(self, self.request, response)
        except Exception:
            replacement = self._hook_failed("process_response")
        if inspect.isawaitable(replacement):
            self._await_hook(self._async_process_response(replacement, response))
            return
        self._send(response if replacement is None else self._checked("process_response", replacement))

    def _await_hook(self, coroutine: Any) -> None:
        self.transport.pause_reading()
        self._handler_task = self.loop.create_task(coroutine)

    async def _hook_result(self, pending: Awaitable[Optional[Response]], name: str) -> tuple[bool, Optional[Response]]:
        """Await an async hook: ``(still connected, its answer)``."""
        try:
            response = await pending
        except asyncio.CancelledError:  # Server.close(): it answers 503 itself
            if self.transport is not None and not self.transport.is_closing():
                self.transport.abort()
            raise
        except Exception:
            response = self._hook_failed(name)
        self._handler_task = None
        if self.transport is None or self.transport.is_closing():
            return False, None
        self.transport.resume_reading()
        return True, response

    async def _async_process_request(self, pending: Awaitable[Optional[Response]]) -> None:
        connected, response = await self._hook_result(pending, "process_request")
        if connected:
            self._respond(response)

    async def _async_process_response(self, pending: Awaitable[Optional[Response]], response: Response) -> None:
        connected, replacement = await self._hook_result(pending, "process_response")
        if connected:
            self._send(response if replacement is None else self._checked("process_response", replacement))

    def _hook_failed(self, name: str) -> Response:
        self.logger.exception("%s %s failed; answering 500", self.peer, name)
        return self._error(500, "Internal Server Error")

    def _checked(self, name: str, response: Any) -> Response:
        return self._upgrade.hook_answer(name, response, self.logger, self.peer)

    def _error(self, status: int, text: str, headers: Any = ()) -> Response:
        return self._upgrade.error(status, text, headers)

    def _rejection(self, exc: InvalidHandshake) -> Response:
        return self._upgrade.rejection(exc, self.logger, self.peer)

    def _send(self, response: Response) -> None:
        """Write the answer: a 101 that accept() made opens the connection, anything else closes it."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if response.status == 101 and self.server._closing:  # defensive: close() refuses handshakes itself
            response = self._error(503, "server shutting down")
        response, head = self._upgrade.final_head(response, self.logger, self.peer)
        opening = response.status == 101
        transport.write(head)
        path = self.request.path if self.request is not None else "-"
        if not opening:
            transport.close()
            self.logger.debug("%s %s -> %d", self.peer, path, response.status)
            return
        self.logger.info("%s connected %s", self.peer, path)
        self.server._handshaking.discard(self)
        self.server.connections.add(self)
        self.open_connection(self._upgrade)
        del self._upgrade  # the handshake's state (~0.6 KiB) is not needed once open
        if self.listener is None and self.server.handler is not None:
            self._handler_task = self.loop.create_task(self._run_handler())

    def _refuse_for_shutdown(self) -> None:
        """Server.close() during this handshake: answer 503 and close."""
        task = self._handler_task
        if task is not None:
            task.cancel()  # an async hook still running
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(self._error(503, "server shutting down").serialize())
            transport.close()

    async def _run_handler(self) -> None:
        assert self.server.handler is not None
        try:
            await self.server.handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            self.logger.exception("%s connection handler failed", self.peer)
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        except asyncio.CancelledError:
            self.abort()
            raise
        await self.close()

    def connection_closed(self, error: ConnectionClosed) -> None:
        self.server._handshaking.discard(self)
        self.server.connections.discard(self)
        if self.connection is not None:
            self.logger.info("%s closed %d %s", self.peer, error.code, error.reason)
        super().connection_closed(error)


class Server:
    """A listening WebSocket server; ``close()`` shuts it down gracefully.

    ``connections`` holds the connections whose handshake completed (open or
    closing); those still in their handshake are tracked apart, and
    ``close()`` refuses them with 503.
    """

    def __init__(
        self,
        handler: Optional[Handler],
        listener: Optional[Callable[[], Listener]],
        *,
        limits: Limits,
        handshake: ServerHandshake,
        process_request: Optional[ProcessRequest],
        process_response: Optional[ProcessResponse] = None,
        logger: LoggerLike = None,
    ) -> None:
        if (handler is None) == (listener is None):
            raise TypeError("pass either an async handler or listener=, not both")
        self.handler = handler
        self.listener_factory: Callable[[], Optional[Listener]] = listener or (lambda: None)
        self.limits = limits
        self.handshake = handshake
        self.process_request = process_request
        self.process_response = process_response
        self.logger: logging.Logger = (
            DEFAULT_LOGGER if logger is None else logging.getLogger(logger) if isinstance(logger, str) else logger
        )
        self.connections: set[ServerConnection] = set()
        self._handshaking: set[ServerConnection] = set()
        self._closing = False
        self._unix_socket: Optional[SocketFile] = None  # removed on close
        self.server: Optional[asyncio.Server] = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (TCP or Unix)."""
        return tuple(self.server.sockets) if self.server is not None else ()

    @property
    def port(self) -> int:
        """The first listening port (handy with ``port=0``); a Unix socket has none."""
        sockets = self.sockets
        if not sockets:
            raise RuntimeError("the server is not listening")
        if sockets[0].family == getattr(socket, "AF_UNIX", None):
            raise RuntimeError("a Unix socket server has no port; its path is server.sockets[0].getsockname()")
        return sockets[0].getsockname()[1]

    async def close(self, close_connections: bool = True, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Stop listening (and remove our Unix socket file); refuse handshakes
        in progress with 503; with ``close_connections``, close every open
        connection with ``code`` and ``reason`` (1001 going away, RFC 6455
        §7.4.1); then wait for the handlers, at most ``close_timeout``.
        Calling it again is harmless."""
        build_close(code, reason)  # an invalid code or a reason over 123 bytes raises here, before anything closes
        if not self._closing:
            self.logger.info("server closing")
        self._closing = True
        if self.server is not None:
            self.server.close()
        self._remove_unix_socket()
        handshaking = list(self._handshaking)
        for ws in handshaking:
            ws._refuse_for_shutdown()
        for ws in list(self.connections):
            if ws.lingering:
                ws.abort()  # already closed as a protocol: do not wait for the peer
        if close_connections and self.connections:
            await asyncio.gather(*(ws.close(code, reason) for ws in list(self.connections)), return_exceptions=True)
        pending = [ws._closed for ws in handshaking if not ws.closed]
        if pending:
            await asyncio.wait(pending, timeout=self.limits.close_timeout)
            for ws in handshaking:
                if not ws.closed:
                    ws.abort()
        tasks = [ws._handler_task for ws in list(self.connections) + handshaking if ws._handler_task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.limits.close_timeout)
        if self.server is not None:
            await self.server.wait_closed()

    def _remove_unix_socket(self) -> None:
        """Unlink the socket file we bound, unless another file replaced it since."""
        if self._unix_socket is not None:
            self._unix_socket.remove()
            self._unix_socket = None

    def is_serving(self) -> bool:
        """True while the server accepts connections."""
        return self.server is not None and self.server.is_serving()

    async def wait_closed(self) -> None:
        """Wait until ``close()`` has finished (listening stopped, connections closed)."""
        if self.server is not None:
            await self.server.wait_closed()

    async def serve_forever(self) -> None:
        assert self.server is not None
        await self.server.serve_forever()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


class serve:
    """Start a WebSocket server: ``async with serve(handler, "127.0.0.1", 3000) as server``.

    ``handler(ws)`` is a coroutine run for each connection; or pass
    ``listener=`` a ``Listener`` subclass (or factory) for the callback API.
    Keywords: ``subprotocols``, ``select_subprotocol``, ``origins`` (allow-list;
    ``None`` in it admits requests without Origin), ``extensions`` (negotiation
    hook, replacing ``compression``), ``compression`` (a ``PerMessageDeflate``, on by
    default; ``None`` turns permessage-deflate off), ``process_request(ws,
    request)`` (return a Response to answer plain HTTP), ``process_response(ws,
    request, response)`` (sees every answer to a request, 101 or not: edit it
    in place or return a replacement), ``server_header`` (None omits it),
    ``logger`` (a name or Logger, for the server and its connections), ``ssl``,
    ``sock``, ``reuse_port``, ``backlog`` and every ``Limits`` keyword. Hooks
    may be sync or async; one that raises answers a bare 500 (and is logged).
    Also awaitable: ``server = await serve(...)``.
    """

    _caller = "serve"

    def __init__(
        self,
        handler: Optional[Handler] = None,
        host: Optional[str] = "127.0.0.1",
        port: int = 0,
        *,
        listener: Optional[Callable[[], Listener]] = None,
        subprotocols: Optional[list[str]] = None,
        select_subprotocol: Optional[Callable[[Request, list[str]], Optional[str]]] = None,
        origins: Optional[list[Optional[str]]] = None,
        extensions: Optional[ExtensionHook] = None,
        process_request: Optional[ProcessRequest] = None,
        process_response: Optional[ProcessResponse] = None,
        server_header: Optional[str] = SERVER_HEADER,
        logger: LoggerLike = None,
        compression: Union[PerMessageDeflate, Literal["deflate"], None] = SERVER_DEFAULT,
        ssl: Optional[ssl_module.SSLContext] = None,
        sock: Optional[socket.socket] = None,
        reuse_port: Optional[bool] = None,
        backlog: int = 100,
        **limits_: Unpack[LimitOptions],
    ) -> None:
        limits = Limits.from_options(limits_, caller=self._caller)
        if compression == "deflate":  # websockets' spelling of the default
            compression = SERVER_DEFAULT
        if extensions is None and compression is not None:
            extensions = compression.accept_offer
        self.sock, self.reuse_port, self.backlog = sock, reuse_port, backlog
        self.host, self.port, self.ssl = host, port, ssl
        self.server = Server(
            handler,
            listener,
            limits=limits,
            handshake=ServerHandshake(
                subprotocols=subprotocols,
                select_subprotocol=select_subprotocol,
                origins=origins,
                extensions=extensions,
                server_header=server_header,
            ),
            process_request=process_request,
            process_response=process_response,
            logger=logger,
        )

    async def _listen(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol]) -> Any:
        if self.sock is not None:  # already bound (a socket handed over)
            return await loop.create_server(factory, sock=self.sock, backlog=self.backlog)
        return await loop.create_server(factory, self.host, self.port, reuse_port=self.reuse_port, backlog=self.backlog)

    async def _start(self) -> Server:
        server = self.server

        def factory() -> ServerConnection:
            return ServerConnection(server)

        # TLS in fastws's own layer, not asyncio's (see fastws.asyncio.tls).
        listening = factory if self.ssl is None else tls_factory(self.ssl, factory)
        server.server = await self._listen(asyncio.get_running_loop(), listening)
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.server.close()


class ServeOptions(LimitOptions, total=False):
    """The keywords ``unix_serve()`` shares with ``serve()`` (all but host, port and reuse_port)."""

    listener: Optional[Callable[[], Listener]]
    subprotocols: Optional[list[str]]
    select_subprotocol: Optional[Callable[[Request, list[str]], Optional[str]]]
    origins: Optional[list[Optional[str]]]
    extensions: Optional[ExtensionHook]
    process_request: Optional[ProcessRequest]
    process_response: Optional[ProcessResponse]
    server_header: Optional[str]
    logger: LoggerLike
    compression: Union[PerMessageDeflate, Literal["deflate"], None]
    ssl: Optional[ssl_module.SSLContext]
    sock: Optional[socket.socket]
    backlog: int


class unix_serve(serve):
    """``serve()`` on a Unix socket: ``async with unix_serve(handler, "/run/app.sock")``.

    ``path`` is the socket file (asyncio replaces an existing socket file
    there, live or stale); ``sock=`` an already bound AF_UNIX socket instead.
    Every ``serve()`` keyword but host, port and reuse_port applies.
    ``Server.close()`` removes the file bound from ``path`` (unless another
    file replaced it since) on every Python version, as asyncio does by
    default from 3.13 on; with ``sock=`` the file is left to its owner. Unix only.
    """

    _caller = "unix_serve"

    def __init__(
        self,
        handler: Optional[Handler] = None,
        path: Union[str, os.PathLike[str], None] = None,
        **options: Unpack[ServeOptions],
    ) -> None:
        for name in ("host", "port", "reuse_port"):
            if name in options:
                raise TypeError(f"unix_serve() got an unexpected keyword argument {name!r}; it listens on path")
        if (path is None) == (options.get("sock") is None):
            raise TypeError("unix_serve() takes a path or sock= (a bound AF_UNIX socket), not both")
        super().__init__(handler, None, 0, **options)
        self.path = None if path is None else os.fspath(path)

    async def _listen(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol]) -> Any:
        if self.path is None:
            return await loop.create_unix_server(factory, sock=self.sock, backlog=self.backlog)
        path = self.path
        try:
            listening = await loop.create_unix_server(factory, path, backlog=self.backlog)
        except FileNotFoundError as exc:
            directory = os.path.dirname(os.path.abspath(path))
            raise FileNotFoundError(
                errno.ENOENT, f"cannot listen on Unix socket {path!r}: directory {directory!r} does not exist", path
            ) from exc
        self.server._unix_socket = SocketFile.bound(path)
        return listening
