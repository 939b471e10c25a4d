"""Opening the client's connection through a proxy, for asyncio.

HTTP and HTTPS proxies get a ``CONNECT`` (``fastws.proxy.ConnectTunnel``) on a
connection to the proxy, TLS to the proxy for https://; SOCKS proxies go
through python-socks (``pip install "pyfastws[socks]"``). Then TLS to the target
for wss:// (inside the proxy's TLS for an https:// proxy) and the WebSocket
protocol on top. The caller bounds the whole in time (``open_timeout``);
cancelled at any point, nothing is left open.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
import sys
from typing import Any, Callable, Optional

from ..exceptions import ProxyError
from ..handshake import SERVER_NAME
from ..proxy import ConnectTunnel, Proxy, socks_errors, socks_options

__all__ = ["create_proxied_connection"]


class _TunnelOpener(asyncio.Protocol):
    """The protocol on the connection to an HTTP(S) proxy until CONNECT succeeds.

    ``opened`` gets the bytes after the proxy's 2xx (normally none) or the
    ProxyError. Reading pauses once the tunnel is open; anything that still
    arrives before the caller swaps in the real protocol waits in ``extra``.
    """

    def __init__(self, tunnel: ConnectTunnel, loop: asyncio.AbstractEventLoop) -> None:
        self.tunnel = tunnel
        self.opened: asyncio.Future = loop.create_future()
        self.transport: Optional[asyncio.Transport] = None
        self.extra = bytearray()
        self.closed = False  # the tunnel ended (EOF or loss) after it opened

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # called again by start_tls with the TLS transport: nothing to send then
            self.transport = transport  # type: ignore[assignment]
            transport.write(self.tunnel.request_bytes())  # type: ignore[attr-defined]

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            self.extra += data
            return
        try:
            rest = self.tunnel.receive_data(data)
        except ProxyError as exc:
            self._fail(exc)
            return
        if rest is not None:
            assert self.transport is not None
            self.transport.pause_reading()
            self.opened.set_result(rest)

    def eof_received(self) -> bool:
        if self.opened.done():
            self.closed = True
        else:
            try:
                self.tunnel.receive_eof()
            except ProxyError as exc:
                self._fail(exc)
        return False  # close the transport

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.opened.done():
            self.closed = True
            return
        where = f"proxy {self.tunnel.proxy.host}:{self.tunnel.proxy.port}"
        if exc is None:
            try:
                self.tunnel.receive_eof()
            except ProxyError as error:
                self._fail(error)
            return
        self._fail(ProxyError(f"connection to {where} lost during CONNECT: {exc}"))


async def _connect_socks(loop: asyncio.AbstractEventLoop, proxy: Proxy, host: str, port: int) -> socket.socket:
    """A socket connected to host:port through a SOCKS proxy (python-socks speaks SOCKS)."""
    options = socks_options(proxy)
    from python_socks.async_.asyncio import Proxy as SocksProxy

    with socks_errors(proxy, host, port):
        return await SocksProxy(**options).connect(host, port)


async def _start(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    sock: socket.socket,
    ssl: Optional[ssl_module.SSLContext],
    server_hostname: Optional[str],
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """The protocol (and TLS to the target, if any) on a socket already tunnelled."""
    try:
        return await loop.create_connection(
            protocol_factory, sock=sock, ssl=ssl, server_hostname=server_hostname if ssl is not None else None
        )
    except BaseException:
        sock.close()
        raise


async def _connect_http(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    proxy: Proxy,
    host: str,
    port: int,
    ssl: Optional[ssl_module.SSLContext],
    server_hostname: Optional[str],
    proxy_ssl: Optional[ssl_module.SSLContext],
    user_agent: Optional[str],
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    tunnel = ConnectTunnel(proxy, host, port, user_agent)
    where = proxy.where()
    options: dict[str, Any] = {}
    if proxy.scheme == "https":
        options = dict(ssl=proxy_ssl or ssl_module.create_default_context(), server_hostname=proxy.host)
    try:
        opening = loop.create_connection(lambda: _TunnelOpener(tunnel, loop), proxy.host, proxy.port, **options)
        raw, opener = await opening
    except OSError as exc:  # refused, unreachable, name not found, TLS with the proxy failed
        raise ProxyError(f"cannot reach {where}: {exc}") from exc
    transport: asyncio.Transport = raw
    try:
        rest = await opener.opened
        if ssl is not None:
            if rest or opener.extra:
                raise ProxyError(f"{where} sent bytes of its own after opening the tunnel, before TLS started")
            # TLS with the target inside the tunnel (inside TLS with the proxy for https://).
            tls = await loop.start_tls(transport, opener, ssl, server_hostname=server_hostname)
            if tls is None:  # the connection closed during the TLS handshake
                raise ProxyError(f"the tunnel through {where} closed during the TLS handshake with {host}:{port}")
            transport = tls
        if opener.closed:
            raise ProxyError(f"{where} closed the tunnel to {host}:{port} right after opening it")
        protocol = protocol_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        early = bytes(rest) + bytes(opener.extra)
        if early:
            protocol.data_received(early)  # type: ignore[attr-defined]
        if ssl is None:
            transport.resume_reading()
        return transport, protocol
    except BaseException:
        transport.abort()
        if transport is not raw:
            raw.abort()
        raise


async def create_proxied_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    proxy: Proxy,
    host: str,
    port: int,
    *,
    ssl: Optional[ssl_module.SSLContext],
    server_hostname: Optional[str],
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    user_agent: Optional[str] = SERVER_NAME,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Open a tunnel through ``proxy`` to host:port, then start ``protocol_factory()``
    on it (with TLS to the target when ``ssl`` is given).

    ``proxy_ssl`` is the TLS context for an https:// proxy (default: the
    system's trust store); it is a ValueError with another scheme. Failures of
    the proxy raise ProxyError (an OSError); a SOCKS proxy without python-socks
    raises ImportError; TLS to the target inside TLS to an https:// proxy
    raises NotImplementedError before Python 3.11. ``user_agent`` goes in the CONNECT request (None: no
    User-Agent). The caller bounds the time; cancelled, the connection is closed.
    """
    if proxy_ssl is not None and proxy.scheme != "https":
        raise ValueError(f"proxy_ssl= needs an https:// proxy, not {proxy.scheme}://")
    if ssl is not None and server_hostname is None:
        server_hostname = host
    if proxy.scheme == "https" and ssl is not None and sys.version_info < (3, 11):
        # asyncio's start_tls() takes a TLS transport (TLS inside TLS) from Python 3.11 on.
        raise NotImplementedError("a wss:// URI through an https:// proxy needs Python 3.11 or later")
    if proxy.is_socks:
        sock = await _connect_socks(loop, proxy, host, port)
        return await _start(loop, protocol_factory, sock, ssl, server_hostname)
    return await _connect_http(loop, protocol_factory, proxy, host, port, ssl, server_hostname, proxy_ssl, user_agent)
