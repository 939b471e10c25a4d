"""The asyncio WebSocket client: ``async with connect("ws://host:port/path") as ws: ...``."""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

from ..exceptions import InvalidHandshake
from ..extensions.permessage_deflate import CLIENT_DEFAULT, PerMessageDeflate
from ..handshake import ClientHandshake, Response
from ..upgrade import ClientUpgrade
from .protocol import LimitOptions, Limits, Listener, WebSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["connect", "ClientConnection"]


class ClientConnection(WebSocket):
    """A connection opened by ``connect``; ``response`` holds the server's answer."""

    def __init__(
        self,
        handshake: ClientHandshake,
        limits: Limits,
        listener: Optional[Listener],
        compression: Optional[PerMessageDeflate] = None,
    ) -> None:
        super().__init__(limits, is_client=True, listener=listener)
        self.handshake = handshake
        self.compression = compression
        self._upgrade = ClientUpgrade(handshake, compression, limits.max_header_size)
        self._opened: asyncio.Future = self.loop.create_future()

    @property
    def response(self) -> Optional[Response]:
        """The server's answer to the upgrade request, once received."""
        return self._upgrade.response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self._upgrade.request_bytes())  # type: ignore[union-attr]

    def handshake_data_received(self, data: bytes) -> None:
        try:
            if self._upgrade.receive_data(data) is None:
                return
        except InvalidHandshake as exc:
            if not self._opened.done():
                self._opened.set_exception(exc)
            self.transport.close()  # type: ignore[union-attr]
            return
        self.open_connection(self._upgrade)
        if not self._opened.done():
            self._opened.set_result(None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        super().connection_lost(exc)
        if not self._opened.done():
            self._opened.set_exception(self._close_exception())


def parse_uri(uri: str) -> tuple[bool, str, int, str, str]:
    """Split a ws:// or wss:// URI into (secure, host, port, resource, Host header)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{uri!r} is not a ws:// or wss:// URI")
    if not parts.hostname:
        raise ValueError(f"{uri!r} has no host")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != (443 if secure else 80):
        host_header += f":{parts.port}"
    return secure, host, port, resource, host_header


class connect:
    """Open a client connection: ``async with connect(uri) as ws`` or ``ws = await connect(uri)``.

    Keywords: ``subprotocols``, ``extra_headers`` (pairs), ``origin``,
    ``listener`` (callback API), ``compression`` (a ``PerMessageDeflate`` offer,
    on by default; ``None`` to offer none), ``ssl`` (an SSLContext; default for wss://),
    ``server_hostname``, and every ``Limits`` keyword.
    """

    def __init__(
        self,
        uri: str,
        *,
        subprotocols: Optional[list[str]] = None,
        extra_headers: Optional[Iterable[tuple[str, str]]] = None,
        origin: Optional[str] = None,
        listener: Optional[Listener] = None,
        compression: Optional[PerMessageDeflate] = CLIENT_DEFAULT,
        ssl: Optional[ssl_module.SSLContext] = None,
        server_hostname: Optional[str] = None,
        sock: Optional[socket.socket] = None,
        **limits: Unpack[LimitOptions],
    ) -> None:
        self.compression = compression
        self.limits = Limits.from_options(limits, caller="connect")
        self.secure, self.host, self.port, resource, host_header = parse_uri(uri)
        if self.secure and ssl is None:
            ssl = ssl_module.create_default_context()
        elif not self.secure and ssl is not None:
            raise ValueError("ssl= needs a wss:// URI")
        self.ssl = ssl
        self.options: dict[str, Any] = dict(sock=sock)
        if server_hostname is not None:
            self.options["server_hostname"] = server_hostname
        self.listener = listener
        self.handshake_args = dict(
            host=host_header,
            path=resource,
            subprotocols=subprotocols,
            extra_headers=None if extra_headers is None else list(extra_headers),
            origin=origin,
            extensions=compression.offer() if compression is not None else None,
        )
        ClientHandshake(**self.handshake_args)  # type: ignore[arg-type]  # a header that cannot be written raises here
        self.connection: Optional[ClientConnection] = None

    async def _open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        handshake = ClientHandshake(**self.handshake_args)  # type: ignore[arg-type]

        async def establish() -> ClientConnection:
            factory = lambda: ClientConnection(handshake, self.limits, self.listener, self.compression)  # noqa: E731
            if self.options["sock"] is not None:
                _, protocol = await loop.create_connection(factory, ssl=self.ssl, **self.options)
            else:
                _, protocol = await loop.create_connection(factory, self.host, self.port, ssl=self.ssl, **self.options)
            await protocol._opened
            return protocol

        try:
            self.connection = await asyncio.wait_for(establish(), self.limits.open_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"opening handshake timed out after {self.limits.open_timeout}s") from None
        return self.connection

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._open()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.connection is not None:
            await self.connection.close()
