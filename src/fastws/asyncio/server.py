"""The asyncio WebSocket server: ``async with serve(handler, host, port): ...``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from ..exceptions import ConnectionClosed, InvalidHandshake
from ..extensions.permessage_deflate import SERVER_DEFAULT, PerMessageDeflate
from ..frames import CloseCode
from ..handshake import ExtensionHook, Request, Response, ServerHandshake, error_response
from ..upgrade import ServerUpgrade
from .protocol import LimitOptions, Limits, Listener, WebSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["serve", "Server", "ServerConnection"]

logger = logging.getLogger("fastws.server")

INTERNAL_ERROR = error_response(500, "Internal Server Error")
"""What a client gets when a hook of ours fails: no traceback or reason on the wire."""

Handler = Callable[["ServerConnection"], Awaitable[Any]]
ProcessRequest = Callable[["ServerConnection", Request], Union[Optional[Response], Awaitable[Optional[Response]]]]


class ServerConnection(WebSocket):
    """A connection accepted by a ``Server``; ``request`` holds the HTTP request."""

    def __init__(self, server: Server) -> None:
        super().__init__(server.limits, is_client=False, listener=server.listener_factory())
        self.server = server
        self.request: Optional[Request] = None
        self._upgrade = ServerUpgrade(server.handshake, server.limits.max_header_size)
        self._handler_task: Optional[asyncio.Task] = None

    @property
    def path(self) -> str:
        return self.request.path if self.request is not None else ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)

    def handshake_data_received(self, data: bytes) -> None:
        try:
            request = self._upgrade.receive_data(data)
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        if request is None:
            return  # the head is not complete, or an answer is being prepared (the bytes wait in the upgrade)
        self.request = request
        hook = self.server.process_request
        try:
            response = hook(self, request) if hook is not None else None
        except Exception:
            logger.exception("%s process_request failed; answering 500", self.peer)
            response = INTERNAL_ERROR
        if inspect.isawaitable(response):
            self.transport.pause_reading()  # type: ignore[union-attr]
            self._handler_task = self.loop.create_task(self._finish_async_handshake(response))
            return
        self._finish_handshake(response)

    async def _finish_async_handshake(self, pending: Awaitable[Optional[Response]]) -> None:
        try:
            response = await pending
        except Exception:
            logger.exception("%s process_request failed; answering 500", self.peer)
            response = INTERNAL_ERROR
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.resume_reading()
        self._handler_task = None
        self._finish_handshake(response)

    def _finish_handshake(self, response: Optional[Response]) -> None:
        assert self.request is not None and self.transport is not None
        if response is not None:  # process_request answered plain HTTP
            try:
                head = response.serialize()
            except ValueError:  # InvalidHeader: a field changed after construction
                logger.exception("%s process_request returned an unwritable response; answering 500", self.peer)
                response, head = INTERNAL_ERROR, INTERNAL_ERROR.serialize()
            self.transport.write(head)
            self.transport.close()
            logger.debug("%s %s %s -> %d", self.peer, self.request.method, self.request.path, response.status)
            return
        try:
            accepted = self._upgrade.accept()
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        self.transport.write(accepted.serialize())
        logger.info("%s connected %s", self.peer, self.request.path)
        self.open_connection(self._upgrade)
        if self.listener is None and self.server.handler is not None:
            self._handler_task = self.loop.create_task(self._run_handler())

    def _reject(self, exc: InvalidHandshake) -> None:
        if exc.status >= 500:  # our fault (a hook's answer), not the client's: no details on the wire
            logger.error("%s handshake failed: %d %s", self.peer, exc.status, exc.reason, exc_info=exc.__cause__)
            response = INTERNAL_ERROR
        else:
            logger.info("%s rejected handshake: %d %s", self.peer, exc.status, exc.reason)
            response = error_response(exc.status, exc.reason, exc.headers)
        if self.transport is not None:
            self.transport.write(response.serialize())
            self.transport.close()

    async def _run_handler(self) -> None:
        assert self.server.handler is not None
        try:
            await self.server.handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection handler failed")
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        except asyncio.CancelledError:
            self.abort()
            raise
        await self.close()

    def connection_closed(self, error: ConnectionClosed) -> None:
        self.server.connections.discard(self)
        if self.connection is not None:
            logger.info("%s closed %d %s", self.peer, error.code, error.reason)
        super().connection_closed(error)


class Server:
    """A listening WebSocket server; ``close()`` shuts it down gracefully."""

    def __init__(
        self,
        handler: Optional[Handler],
        listener: Optional[Callable[[], Listener]],
        *,
        limits: Limits,
        handshake: ServerHandshake,
        process_request: Optional[ProcessRequest],
    ) -> None:
        if (handler is None) == (listener is None):
            raise TypeError("pass either an async handler or listener=, not both")
        self.handler = handler
        self.listener_factory: Callable[[], Optional[Listener]] = listener or (lambda: None)
        self.limits = limits
        self.handshake = handshake
        self.process_request = process_request
        self.connections: set[ServerConnection] = set()
        self.server: Optional[asyncio.AbstractServer] = None

    @property
    def sockets(self):
        return self.server.sockets if self.server is not None else ()

    @property
    def port(self) -> int:
        """The first listening port (handy with ``port=0``)."""
        return self.sockets[0].getsockname()[1]

    async def close(self, close_connections: bool = True) -> None:
        """Stop accepting, close every connection with 1001 (going away), and wait."""
        if self.server is not None:
            self.server.close()
        for ws in list(self.connections):
            if ws.lingering:
                ws.abort()  # already closed as a protocol: do not wait for the peer
        if close_connections and self.connections:
            await asyncio.gather(
                *(ws.close(CloseCode.GOING_AWAY, "server shutdown") for ws in list(self.connections)),
                return_exceptions=True,
            )
        tasks = [ws._handler_task for ws in list(self.connections) if ws._handler_task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.limits.close_timeout)
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
    request)`` (return a Response to answer plain HTTP), ``ssl``, and every
    ``Limits`` keyword. Also awaitable: ``server = await serve(...)``.
    """

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
        compression: Optional[PerMessageDeflate] = SERVER_DEFAULT,
        ssl: Optional[ssl_module.SSLContext] = None,
        sock: Optional[socket.socket] = None,
        reuse_port: Optional[bool] = None,
        backlog: int = 100,
        **limits_: Unpack[LimitOptions],
    ) -> None:
        limits = Limits.from_options(limits_, caller="serve")
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
            ),
            process_request=process_request,
        )

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        server = self.server
        if self.sock is not None:  # already bound (a socket handed over, or a Unix socket)
            server.server = await loop.create_server(
                lambda: ServerConnection(server), sock=self.sock, ssl=self.ssl, backlog=self.backlog
            )
        else:
            server.server = await loop.create_server(
                lambda: ServerConnection(server),
                self.host,
                self.port,
                ssl=self.ssl,
                reuse_port=self.reuse_port,
                backlog=self.backlog,
            )
        return server

    def __await__(self):
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.server.close()
