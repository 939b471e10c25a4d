"""The asyncio WebSocket client.

``async with connect(uri) as ws`` opens one connection; ``async for ws in
connect(uri)`` reconnects after every disconnect, with backoff. Redirects,
proxies, credentials in the URI and Unix sockets are handled on the way in.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any, Literal, Optional, Union, cast

from ..exceptions import InvalidHandshake, InvalidStatus
from ..extensions.permessage_deflate import CLIENT_DEFAULT, PerMessageDeflate
from ..handshake import SERVER_NAME, ClientHandshake, Response
from ..policy import Backoff, describe_ending, retry_after, retryable
from ..proxy import Proxy, proxy_for
from ..upgrade import ClientRequest, ClientUpgrade, HeadersLike
from ..uri import MAX_REDIRECTS, Redirects, WebSocketURI, parse_uri
from .protocol import LimitOptions, Limits, Listener, WebSocket
from .proxy import create_proxied_connection

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["connect", "unix_connect", "ClientConnection", "ConnectOptions", "HeadersLike"]

USER_AGENT = SERVER_NAME

client_logger = logging.getLogger("fastws.client")


class ClientConnection(WebSocket):
    """A connection opened by ``connect``; ``response`` holds the server's answer."""

    __slots__ = ("_upgrade", "_opened")

    def __init__(self, upgrade: ClientUpgrade, limits: Limits, listener: Optional[Listener]) -> None:
        super().__init__(limits, is_client=True, listener=listener)
        self._upgrade = upgrade
        self._opened: asyncio.Future[None] = self.loop.create_future()

    @property
    def handshake(self) -> ClientHandshake:
        """The upgrade request this connection sent (``handshake.request``)."""
        return self._upgrade.handshake

    @property
    def response(self) -> Optional[Response]:
        """The server's answer to the upgrade request, once received."""
        return self._upgrade.response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self._upgrade.request_bytes())

    def handshake_data_received(self, data: bytes) -> None:
        try:
            if self._upgrade.receive_data(data) is None:
                return
        except InvalidHandshake as exc:
            if not self._opened.done():
                self._opened.set_exception(exc)
            self.transport.close()
            return
        self.open_connection(self._upgrade)
        if not self._opened.done():
            self._opened.set_result(None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        super().connection_lost(exc)
        if not self._opened.done():
            self._opened.set_exception(self._close_exception())


class connect:
    """Open a client connection.

    - ``ws = await connect(uri)`` or ``async with connect(uri) as ws``: one connection.
    - ``async for ws in connect(uri)``: a new connection after each disconnect,
      waiting ``backoff`` (a ``Backoff``) between failed attempts. Network
      errors, timeouts and 5xx/429 answers are retried; other refusals raise.
      ``last_error`` says why the last connection ended or attempt failed.

    Keywords: ``subprotocols``, ``extra_headers`` (a dict, pairs or Headers),
    ``origin``, ``user_agent_header`` (None: no User-Agent), ``listener``
    (callback API), ``compression`` (a ``PerMessageDeflate`` offer, on by
    default; None offers none), ``ssl`` (default context for wss://),
    ``server_hostname``, ``sock`` (an already connected socket), ``proxy``
    (True: from HTTP(S)_PROXY/ALL_PROXY/NO_PROXY; a URL; None: direct),
    ``proxy_ssl``, ``max_redirects`` (0 refuses redirects), ``backoff``,
    ``logger`` (a name or Logger), and every ``Limits`` keyword. Credentials
    in the URI (``ws://user:pass@host/``) are sent as Basic auth.
    """

    def __init__(
        self,
        uri: str,
        *,
        subprotocols: Optional[list[str]] = None,
        extra_headers: Optional[HeadersLike] = None,
        origin: Optional[str] = None,
        user_agent_header: Optional[str] = USER_AGENT,
        listener: Optional[Listener] = None,
        compression: Union[PerMessageDeflate, Literal["deflate"], None] = CLIENT_DEFAULT,
        ssl: Optional[ssl_module.SSLContext] = None,
        server_hostname: Optional[str] = None,
        sock: Optional[socket.socket] = None,
        proxy: Union[str, bool, None] = True,
        proxy_ssl: Optional[ssl_module.SSLContext] = None,
        max_redirects: int = MAX_REDIRECTS,
        backoff: Optional[Backoff] = None,
        logger: Union[str, logging.Logger, None] = None,
        **limits: Unpack[LimitOptions],
    ) -> None:
        self.limits = Limits.from_options(limits, caller="connect")
        self.uri = parse_uri(uri)
        if not self.uri.secure and ssl is not None:
            raise ValueError("ssl= needs a wss:// URI")
        self.compression = CLIENT_DEFAULT if compression == "deflate" else compression  # websockets' spelling
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.sock = sock
        if isinstance(proxy, str):
            Proxy.from_url(proxy)  # an unusable proxy URL raises InvalidURI here, not at the first attempt
        self.proxy = proxy
        self.proxy_ssl = proxy_ssl
        self.max_redirects = max_redirects
        self.request = ClientRequest(
            subprotocols=subprotocols,
            extra_headers=extra_headers,
            origin=origin,
            user_agent=user_agent_header,
            compression=self.compression,
            max_header_size=self.limits.max_header_size,
        )
        self.backoff = backoff if backoff is not None else Backoff()
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.listener = listener
        self.unix_path: Optional[str] = None
        self.user_agent_header = user_agent_header
        self.connection: Optional[ClientConnection] = None
        self.last_error: Optional[BaseException] = None

    # -- one connection ---------------------------------------------------------

    async def _open(self) -> ClientConnection:
        """Open a connection, following redirects, within ``open_timeout``."""
        try:
            self.connection = await asyncio.wait_for(self._follow_redirects(), self.limits.open_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"opening handshake timed out after {self.limits.open_timeout}s") from None
        return self.connection

    async def _follow_redirects(self) -> ClientConnection:
        redirects = Redirects(self.uri, self.max_redirects, pinned=self.sock is not None or self.unix_path is not None)
        while True:
            try:
                return await self._attempt(redirects.target)
            except InvalidStatus as exc:
                target = redirects.follow(exc)
                (self.logger or client_logger).info("redirected (%d) to %s", exc.status, target.uri)

    async def _attempt(self, target: WebSocketURI) -> ClientConnection:
        loop = asyncio.get_running_loop()
        upgrade = self.request.upgrade(target)

        def factory() -> ClientConnection:
            connection = ClientConnection(upgrade, self.limits, self.listener)
            if self.logger is not None:
                connection.logger = self.logger
            return connection

        ssl = self.ssl if self.ssl is not None or not target.secure else ssl_module.create_default_context()
        server_hostname = self.server_hostname if self.server_hostname is not None else target.host
        tls: dict[str, Any] = {"ssl": ssl, "server_hostname": server_hostname} if target.secure else {}
        if self.unix_path is not None:
            try:
                _, protocol = await loop.create_unix_connection(factory, self.unix_path, **tls)
            except FileNotFoundError as exc:
                message = f"no Unix socket at {self.unix_path!r}: the file does not exist"
                raise FileNotFoundError(errno.ENOENT, message, self.unix_path) from exc
        elif self.sock is not None:
            _, protocol = await loop.create_connection(factory, sock=self.sock, **tls)
        elif (proxy := proxy_for(target.uri, self.proxy)) is not None:
            _, opened = await create_proxied_connection(
                loop,
                factory,
                proxy,
                target.host,
                target.port,
                ssl=ssl if target.secure else None,
                server_hostname=server_hostname if target.secure else None,
                proxy_ssl=self.proxy_ssl,
                user_agent=self.user_agent_header,
            )
            protocol = cast(ClientConnection, opened)
        else:
            _, protocol = await loop.create_connection(factory, target.host, target.port, **tls)
        try:
            await protocol._opened
        except BaseException:
            protocol.abort()
            raise
        return protocol

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._open()

    async def __aexit__(self, *exc_info: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    # -- reconnection -------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        """Yield a connection; when the caller comes back for the next one, close
        it and reconnect. Failed attempts that are worth retrying (``retryable``)
        wait ``backoff``; a connection that closed after ``backoff.stable_after``
        seconds is followed by an immediate attempt."""
        if self.sock is not None:
            raise TypeError("connect(sock=...) cannot reconnect: a socket is used once")
        log = self.logger or client_logger
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection = await self._open()
            except Exception as exc:
                if not retryable(exc):
                    raise
                self.last_error = exc
                delay = self.backoff.next_delay(retry_after(exc))
                log.info("connecting to %s failed (%s); retrying in %.2fs", self.uri.uri, describe_ending(exc), delay)
                await asyncio.sleep(delay)
                continue
            opened_at = loop.time()
            try:
                yield connection
            finally:
                await connection.close()
            self.last_error = connection._close_exception()
            lasted = loop.time() - opened_at
            delay = self.backoff.after_disconnect(lasted)
            log.info(
                "connection to %s ended (%s) after %.2fs; reconnecting in %.2fs",
                *(self.uri.uri, describe_ending(self.last_error), lasted, delay),
            )
            if delay:
                await asyncio.sleep(delay)


class ConnectOptions(LimitOptions, total=False):
    """The keywords ``unix_connect()`` shares with ``connect()`` (all but sock and the proxy ones)."""

    subprotocols: Optional[list[str]]
    extra_headers: Optional[HeadersLike]
    origin: Optional[str]
    user_agent_header: Optional[str]
    listener: Optional[Listener]
    compression: Union[PerMessageDeflate, Literal["deflate"], None]
    ssl: Optional[ssl_module.SSLContext]
    server_hostname: Optional[str]
    max_redirects: int
    backoff: Optional[Backoff]
    logger: Union[str, logging.Logger, None]


class unix_connect(connect):
    """``connect`` over the Unix socket at ``path``: ``async with unix_connect(path) as ws``.

    ``uri`` gives the Host header and resource (and TLS, for wss://); every
    other keyword is ``connect``'s, except ``sock`` and the proxy ones. Redirects are refused.
    """

    def __init__(
        self, path: Union[str, os.PathLike[str]], uri: str = "ws://localhost/", **options: Unpack[ConnectOptions]
    ) -> None:
        for name in ("proxy", "proxy_ssl", "sock"):
            if name in options:
                raise TypeError(f"unix_connect() got an unexpected keyword argument {name!r}; it connects to path")
        super().__init__(uri, proxy=None, **options)
        self.unix_path = os.fspath(path)
