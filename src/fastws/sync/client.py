"""The threaded WebSocket client: ``with connect(uri) as ws: ws.send("hi"); ws.recv()``.

Redirects, credentials in the URI, extra headers and Unix sockets are handled
as the asyncio client handles them, by the same sans-I/O pieces (``fastws.uri``,
``ClientHandshake``, ``ClientUpgrade``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl as ssl_module
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional, Union

from ..exceptions import ConnectionClosedError, InvalidStatus, ProxyError
from ..extensions.permessage_deflate import CLIENT_DEFAULT, PerMessageDeflate
from ..frames import CloseCode
from ..handshake import SERVER_NAME, ClientHandshake, Response
from ..limits import LimitOptions, Limits
from ..policy import Backoff, describe_ending, retry_after, retryable
from ..proxy import ConnectTunnel, Proxy, proxy_for, socks_errors, socks_options
from ..upgrade import ClientRequest, ClientUpgrade, HeadersLike
from ..uri import MAX_REDIRECTS, Redirects, WebSocketURI, parse_uri
from .connection import WebSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["connect", "unix_connect", "reconnect", "ClientConnection"]

USER_AGENT = SERVER_NAME
client_logger = logging.getLogger("fastws.client")


class ClientConnection(WebSocket):
    """A connection opened by ``connect``; ``response`` holds the server's answer."""

    def __init__(self, sock: socket.socket, upgrade: ClientUpgrade, limits: Limits, log: logging.Logger) -> None:
        super().__init__(sock, limits, is_client=True, log=log)
        self._upgrade = upgrade

    @property
    def handshake(self) -> ClientHandshake:
        """The upgrade request this connection sent (``handshake.request``)."""
        return self._upgrade.handshake

    @property
    def request(self) -> Any:
        """The upgrade request sent."""
        return self.handshake.request

    @property
    def response(self) -> Optional[Response]:
        """The server's answer to the upgrade request, once received."""
        return self._upgrade.response

    def _handshake(self, deadline: Optional[float]) -> None:
        """Send the request, read the answer (InvalidHandshake/InvalidStatus if
        refused), then start the connection."""
        sock = self.socket
        _settimeout(sock, deadline)
        sock.sendall(self._upgrade.request_bytes())
        while True:
            _settimeout(sock, deadline)
            data = sock.recv(65536)
            if not data:
                raise ConnectionClosedError(CloseCode.ABNORMAL, "connection lost during the handshake")
            if self._upgrade.receive_data(data) is not None:
                break
        self._start(self._upgrade)


def _settimeout(sock: socket.socket, deadline: Optional[float]) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(remaining)


class _Opener:
    """One opening: the URI, the options, and redirects followed within ``open_timeout``."""

    def __init__(
        self,
        uri: str,
        *,
        subprotocols: Optional[list[str]],
        extra_headers: Optional[HeadersLike],
        origin: Optional[str],
        user_agent_header: Optional[str],
        compression: Optional[PerMessageDeflate],
        ssl: Optional[ssl_module.SSLContext],
        server_hostname: Optional[str],
        sock: Optional[socket.socket],
        proxy: Union[str, bool, None],
        proxy_ssl: Optional[ssl_module.SSLContext],
        max_redirects: int,
        logger: Union[str, logging.Logger, None],
        limits: LimitOptions,
        caller: str,
        unix_path: Optional[str] = None,
    ) -> None:
        self.limits = Limits.from_options(limits, caller=caller)
        self.uri = parse_uri(uri)
        if not self.uri.secure and ssl is not None:
            raise ValueError("ssl= needs a wss:// URI")
        self.request = ClientRequest(
            subprotocols=subprotocols,
            extra_headers=extra_headers,
            origin=origin,
            user_agent=user_agent_header,
            compression=compression,
            max_header_size=self.limits.max_header_size,
        )
        self.user_agent_header = user_agent_header
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.sock = sock
        self.proxy = proxy
        self.proxy_ssl = proxy_ssl
        self.max_redirects = max_redirects
        self.logger = (
            client_logger if logger is None else logging.getLogger(logger) if isinstance(logger, str) else logger
        )
        self.unix_path = unix_path

    def open(self) -> ClientConnection:
        timeout = self.limits.open_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        redirects = Redirects(self.uri, self.max_redirects, pinned=self.sock is not None or self.unix_path is not None)
        try:
            while True:
                try:
                    return self._attempt(redirects.target, deadline)
                except InvalidStatus as exc:
                    target = redirects.follow(exc)
                    self.logger.info("redirected (%d) to %s", exc.status, target.uri)
        except (socket.timeout, TimeoutError):
            raise TimeoutError(f"opening handshake timed out after {timeout}s") from None

    def _attempt(self, target: WebSocketURI, deadline: Optional[float]) -> ClientConnection:
        sock = self._socket(target, deadline)
        try:
            if target.secure:
                context = self.ssl if self.ssl is not None else ssl_module.create_default_context()
                hostname = self.server_hostname if self.server_hostname is not None else target.host
                _settimeout(sock, deadline)
                sock = context.wrap_socket(sock, server_hostname=hostname)
            ws = ClientConnection(sock, self.request.upgrade(target), self.limits, self.logger)
            ws._handshake(deadline)
            return ws
        except BaseException:
            sock.close()
            raise

    def _socket(self, target: WebSocketURI, deadline: Optional[float]) -> socket.socket:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        if self.sock is not None:
            sock, self.sock = self.sock, None
            return sock
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(remaining)
                sock.connect(self.unix_path)
            except FileNotFoundError as exc:
                sock.close()
                message = f"no Unix socket at {self.unix_path!r}: the file does not exist"
                raise FileNotFoundError(errno.ENOENT, message, self.unix_path) from exc
            except BaseException:
                sock.close()
                raise
            return sock
        proxy = proxy_for(target.uri, self.proxy)
        if proxy is None:
            sock = socket.create_connection((target.host, target.port), timeout=remaining)
        else:
            sock = self._tunnel(proxy, target, deadline)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _tunnel(self, proxy: Proxy, target: WebSocketURI, deadline: Optional[float]) -> socket.socket:
        """A socket tunnelled to the target: SOCKS through python-socks, HTTP(S)
        with CONNECT (RFC 9110 §9.3.6), over TLS to an https:// proxy."""
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        if proxy.is_socks:
            options = socks_options(proxy)
            from python_socks.sync import Proxy as SocksProxy

            with socks_errors(proxy, target.host, target.port):
                return SocksProxy(**options).connect(target.host, target.port, timeout=remaining)
        if proxy.scheme == "https" and target.secure:
            # The ssl module wraps sockets, not TLS connections: TLS inside TLS
            # needs the asyncio client.
            raise NotImplementedError("a wss:// URI through an https:// proxy needs the asyncio client")
        try:
            sock = socket.create_connection((proxy.host, proxy.port), timeout=remaining)
            if proxy.scheme == "https":
                context = self.proxy_ssl or ssl_module.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=proxy.host)
        except OSError as exc:
            raise ProxyError(f"cannot reach {proxy.where()}: {exc}") from exc
        try:
            tunnel = ConnectTunnel(proxy, target.host, target.port, self.user_agent_header)
            sock.sendall(tunnel.request_bytes())
            while True:
                _settimeout(sock, deadline)
                data = sock.recv(4096)
                if not data:
                    tunnel.receive_eof()
                    raise ProxyError(f"{proxy.where()} closed the connection")
                rest = tunnel.receive_data(data)
                if rest is not None:
                    if rest:
                        raise ProxyError("the proxy sent bytes before the WebSocket handshake")
                    return sock
        except BaseException:
            sock.close()
            raise


def connect(
    uri: str,
    *,
    subprotocols: Optional[list[str]] = None,
    extra_headers: Optional[HeadersLike] = None,
    origin: Optional[str] = None,
    user_agent_header: Optional[str] = USER_AGENT,
    compression: Optional[PerMessageDeflate] = CLIENT_DEFAULT,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    proxy: Union[str, bool, None] = True,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    max_redirects: int = MAX_REDIRECTS,
    logger: Union[str, logging.Logger, None] = None,
    **limits: Unpack[LimitOptions],
) -> ClientConnection:
    """Open a client connection on a blocking socket: ``with connect(uri) as ws``.

    The asyncio ``connect()``'s keywords and defaults: ``proxy`` (http://,
    https://, socks5/5h/4/4a:// with ``pyfastws[socks]``; from HTTP(S)_PROXY,
    ALL_PROXY and NO_PROXY by default; wss:// through an https:// proxy needs
    the asyncio client), ``proxy_ssl`` for an https:// proxy, ``open_timeout``
    covering redirects. Raises InvalidStatus (a refusal), InvalidHandshake,
    InvalidRedirect, OSError and TimeoutError."""
    return _Opener(
        uri,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        origin=origin,
        user_agent_header=user_agent_header,
        compression=compression,
        ssl=ssl,
        server_hostname=server_hostname,
        sock=sock,
        proxy=None if sock is not None else proxy,
        proxy_ssl=proxy_ssl,
        max_redirects=max_redirects,
        logger=logger,
        limits=limits,
        caller="connect",
    ).open()


def unix_connect(
    path: Union[str, os.PathLike[str]],
    uri: str = "ws://localhost/",
    *,
    subprotocols: Optional[list[str]] = None,
    extra_headers: Optional[HeadersLike] = None,
    origin: Optional[str] = None,
    user_agent_header: Optional[str] = USER_AGENT,
    compression: Optional[PerMessageDeflate] = CLIENT_DEFAULT,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    max_redirects: int = MAX_REDIRECTS,
    logger: Union[str, logging.Logger, None] = None,
    **limits: Unpack[LimitOptions],
) -> ClientConnection:
    """``connect`` over the Unix socket at ``path``; ``uri`` gives the Host header
    and resource (and TLS, for wss://). Redirects are refused."""
    return _Opener(
        uri,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        origin=origin,
        user_agent_header=user_agent_header,
        compression=compression,
        ssl=ssl,
        server_hostname=server_hostname,
        sock=None,
        proxy=None,
        proxy_ssl=None,
        max_redirects=max_redirects,
        logger=logger,
        limits=limits,
        caller="unix_connect",
        unix_path=os.fspath(path),
    ).open()


def reconnect(
    uri: str,
    *,
    backoff: Optional[Backoff] = None,
    logger: Union[str, logging.Logger, None] = None,
    **options: Any,
) -> Iterator[ClientConnection]:
    """Connect, yield the connection, and when the loop comes back for the next
    one, close it and connect again: ``for ws in reconnect(uri): ...``, the
    threaded form of the asyncio client's ``async for ws in connect(uri)``.

    Failed attempts worth another (network errors, a 5xx or 429 answer:
    ``fastws.policy.retryable``) wait ``backoff`` (at least a Retry-After);
    any other failure is raised. A connection that stayed open
    ``backoff.stable_after`` seconds is followed by an immediate attempt, a
    shorter one counts as a failure. The other keywords are ``connect()``'s."""
    if options.get("sock") is not None:
        raise TypeError("reconnect() cannot take sock=: a socket is used once")
    backoff = backoff if backoff is not None else Backoff()
    log = client_logger if logger is None else logging.getLogger(logger) if isinstance(logger, str) else logger
    while True:
        try:
            ws = connect(uri, logger=log, **options)
        except Exception as exc:
            if not retryable(exc):
                raise
            delay = backoff.next_delay(retry_after(exc))
            log.info("connecting to %s failed (%s); retrying in %.2fs", uri, describe_ending(exc), delay)
            time.sleep(delay)
            continue
        opened_at = time.monotonic()
        try:
            yield ws
        finally:
            ws.close()
        lasted = time.monotonic() - opened_at
        delay = backoff.after_disconnect(lasted)
        log.info(
            "connection to %s ended (%s) after %.2fs; reconnecting in %.2fs",
            *(uri, describe_ending(ws._close_exception()), lasted, delay),
        )
        if delay:
            time.sleep(delay)
