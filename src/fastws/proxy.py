"""Client proxies, sans I/O: which proxy to use, and the HTTP CONNECT exchange.

``proxy_for(uri, proxy)`` picks the proxy for a ws:// or wss:// URI (from the
environment by default, as websockets and most HTTP clients do);
``Proxy.from_url`` parses ``http://``, ``https://``, ``socks5://``,
``socks5h://``, ``socks4://`` and ``socks4a://`` URLs, credentials included;
``ConnectTunnel`` builds the ``CONNECT host:port`` request for an HTTP(S)
proxy and reads its answer (RFC 9110 §9.3.6). SOCKS is spoken by python-socks
in the I/O layers (``fastws.asyncio.proxy``, ``fastws.sync.client``), which
take its arguments from ``socks_options`` and turn its failures into
ProxyError with ``socks_errors``.
"""

from __future__ import annotations

import base64
import contextlib
import urllib.parse
from collections.abc import Iterator
from typing import Any, Optional, Union

from .exceptions import InvalidHandshake, InvalidURI, ProxyError
from .handshake import MAX_HEADER_SIZE, SERVER_NAME, Headers, HeadParser, Request, parse_response
from .uri import parse_uri

__all__ = ["Proxy", "proxy_for", "ConnectTunnel", "basic_credentials", "socks_options", "socks_errors", "SCHEMES"]

SCHEMES = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080, "socks4a": 1080}
"""The proxy schemes fastws speaks, with the port each defaults to (1080: RFC 1928 §3)."""


def _redacted(url: str) -> str:
    """``url`` for an error message, with the password (if any) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparsable proxy URL>"


class Proxy:
    """A proxy server: ``scheme`` (one of SCHEMES), ``host``, ``port`` and,
    when the URL has them, ``username`` and ``password`` (percent-decoded).
    Both credentials are set, or neither."""

    __slots__ = ("scheme", "host", "port", "username", "password")

    def __init__(
        self,
        scheme: str,
        host: str,
        port: Optional[int] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
    ) -> None:
        if scheme not in SCHEMES:
            raise InvalidURI(f"unsupported proxy scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
        if (username is None) != (password is None):
            raise InvalidURI("proxy credentials need both a username and a password")
        self.scheme = scheme
        self.host = host
        self.port = SCHEMES[scheme] if port is None else port
        self.username = username
        self.password = password

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """Parse ``scheme://[user:password@]host[:port][/]``; anything else raises InvalidURI.

        Credentials are percent-decoded as UTF-8 (``%40`` for ``@``, ``%3A`` for ``:``).
        """
        shown = _redacted(url)
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:  # a port that is not a number or out of range, a bad IPv6 literal
            raise InvalidURI(f"invalid proxy URL {shown}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise InvalidURI(
                f"unsupported proxy scheme {parts.scheme!r} in {shown}: use one of {', '.join(SCHEMES)}"
                if parts.scheme
                else f"invalid proxy URL {shown}: no scheme (write http://host:port, socks5://host:port...)"
            )
        if not parts.hostname:
            raise InvalidURI(f"invalid proxy URL {shown}: no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidURI(f"invalid proxy URL {shown}: a proxy URL has no path, query or fragment")
        username = password = None
        if parts.username is not None:
            if parts.password is None:
                raise InvalidURI(f"invalid proxy URL {shown}: a username without a password (write user:password@)")
            try:
                username = urllib.parse.unquote(parts.username, errors="strict")
                password = urllib.parse.unquote(parts.password, errors="strict")
            except UnicodeDecodeError:
                raise InvalidURI(f"invalid proxy URL {shown}: credentials are not percent-encoded UTF-8") from None
            if ":" in username:  # RFC 7617 §2: the user-id cannot contain a colon
                raise InvalidURI(f"invalid proxy URL {shown}: the username contains ':'")
        host = parts.hostname
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise InvalidURI(f"invalid proxy URL {shown}: host {host!r} is not a valid domain name") from None
        return cls(scheme, host, port, username, password)

    def where(self) -> str:
        """How errors name this proxy: ``socks5 proxy host:port``, ``proxy host:port``."""
        kind = f"{self.scheme} proxy" if self.is_socks else "proxy"
        return f"{kind} {self.host}:{self.port}"

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def remote_dns(self) -> bool:
        """Whether the proxy resolves the target's name (socks5h, socks4a, and HTTP CONNECT)."""
        return self.scheme in ("socks5h", "socks4a", "http", "https")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in self.__slots__))

    def __repr__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = "" if self.username is None else f"{urllib.parse.quote(self.username, safe='')}:***@"
        return f"Proxy('{self.scheme}://{user}{host}:{self.port}')"


def _from_environment(secure: bool, host: str, port: int) -> Optional[str]:
    """The proxy URL the environment names for this target, or None.

    As websockets does: NO_PROXY first (``urllib.request.proxy_bypass``), then
    ``wss_proxy`` or ``ws_proxy`` (a proxy just for WebSocket), then a SOCKS
    proxy (``socks_proxy``; RFC 6455 §4.1 prefers SOCKS), then ``https_proxy``,
    for ws:// ``http_proxy``; and last, as curl does, ``all_proxy`` (which
    websockets does not read).
    """
    import urllib.request  # ~30 ms of imports (http.client, email): only when the environment is consulted

    if urllib.request.proxy_bypass(f"{host}:{port}"):
        return None
    proxies = urllib.request.getproxies()
    for key in ("wss", "socks", "https", "all") if secure else ("ws", "socks", "https", "http", "all"):
        url = proxies.get(key)
        if url:
            # An OS setting (macOS, Windows registry) comes as {"socks": "http://host:port"}.
            if key == "socks" and url.startswith("http://"):
                url = "socks5h://" + url[len("http://") :]
            return url
    return None


def proxy_for(uri: str, proxy: Union[str, bool, None] = True) -> Optional[Proxy]:
    """The proxy to use for ws(s):// ``uri``: True = from the environment, None/False = none, str = that URL.

    A bad proxy URL (from the argument or the environment) raises InvalidURI.
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, Proxy):
        return proxy
    if proxy is True:
        target = parse_uri(uri)  # InvalidURI for anything but a ws:// or wss:// URI with a host
        url = _from_environment(target.secure, target.host, target.port)
        return None if url is None else Proxy.from_url(url)
    if isinstance(proxy, str):
        return Proxy.from_url(proxy)
    raise TypeError(f"proxy must be a URL, True, False or None, not {type(proxy).__name__}")


def basic_credentials(username: str, password: str) -> str:
    """The ``Basic`` credentials for a Proxy-Authorization header (RFC 7617 §2):
    base64 of ``user:password`` encoded as UTF-8, the charset RFC 7617 §2.1 names."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class ConnectTunnel:
    """The client side of an HTTP CONNECT tunnel (RFC 9110 §9.3.6), sans I/O.

    Send ``request_bytes()`` to the proxy, then feed what it answers to
    ``receive_data()``: None while the answer is incomplete, then the bytes
    after it (normally ``b""``) once a 2xx opened the tunnel; from then on the
    connection carries the target's bytes. ``receive_eof()`` when the proxy
    closes first. A refusal, a malformed answer or a close raises ProxyError.
    """

    def __init__(self, proxy: Proxy, host: str, port: int, user_agent: Optional[str] = SERVER_NAME) -> None:
        self.proxy = proxy
        # RFC 9112 §3.2.3: the request target is the authority form host:port;
        # Host carries the same (RFC 9110 §7.2: an HTTP/1.1 request has one).
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            headers = Headers([("Host", self.authority)])
            if user_agent:
                headers.add("User-Agent", user_agent)
            if proxy.username is not None:
                assert proxy.password is not None
                headers.add("Proxy-Authorization", basic_credentials(proxy.username, proxy.password))
            self.request = Request("CONNECT", self.authority, headers)
        except ValueError as exc:  # InvalidHeader: a host or user agent with CR, LF or another control character
            raise InvalidURI(f"cannot ask the proxy for {self.authority!r}: {exc}") from None
        self._parser = HeadParser(MAX_HEADER_SIZE)
        self._received = 0
        self._first = b""  # the first bytes of the answer, up to 5
        self.status: Optional[int] = None
        self.done = False

    def request_bytes(self) -> bytes:
        return self.request.serialize()

    def receive_data(self, data: bytes) -> Optional[bytes]:
        """Feed the proxy's bytes; None until its answer is complete, then the
        bytes that followed the 2xx head. Raises ProxyError."""
        if self.done:
            raise RuntimeError("the tunnel is already open: its bytes are the target's")
        if len(self._first) < 5 and data:
            # Fail fast on something that is not HTTP at all (a SOCKS or TLS
            # server behind an http:// URL) rather than wait for a blank line.
            self._first = (self._first + data)[:5]
            if not b"HTTP/".startswith(self._first):
                raise ProxyError(f"{self.proxy.where()} did not answer CONNECT with HTTP: it sent {bytes(data[:32])!r}")
        self._received += len(data)
        while True:
            try:
                result = self._parser.feed(data)
            except InvalidHandshake:
                raise ProxyError(f"{self.proxy.where()} sent a response head over {MAX_HEADER_SIZE} bytes") from None
            if result is None:
                return None
            head, rest = result
            try:
                response = parse_response(head)
            except InvalidHandshake as exc:
                raise ProxyError(f"{self.proxy.where()} sent an invalid answer to CONNECT: {exc}") from None
            if response.status < 200:
                # RFC 9110 §15.2: a client parses interim 1xx responses and waits for the final one.
                data = rest
                continue
            self.status = response.status
            if response.status >= 300:
                raise ProxyError(self._refusal(response.status, response.reason), response.status)
            # RFC 9110 §9.3.6: after a 2xx the connection is a tunnel; the client
            # ignores Content-Length and Transfer-Encoding in that answer.
            self.done = True
            return rest

    def _refusal(self, status: int, reason: str) -> str:
        message = f"{self.proxy.where()} refused to open a tunnel to {self.authority}: HTTP {status} {reason}".rstrip()
        if status == 407 or (status == 401 and self.proxy.username is not None):
            # 407 is the proxy's "credentials, please" (RFC 9110 §15.5.8); tinyproxy
            # answers wrong ones with 401, which a proxy otherwise has no reason to send.
            message += (
                " (the proxy rejected the credentials in the proxy URL)"
                if self.proxy.username is not None
                else " (the proxy wants credentials: put them in the proxy URL, http://user:password@host:port)"
            )
        return message

    def receive_eof(self) -> None:
        """The proxy closed the connection before its answer was complete: raises ProxyError."""
        if self.done:
            return
        if self._received:
            raise ProxyError(f"{self.proxy.where()} closed the connection in the middle of its answer to CONNECT")
        raise ProxyError(f"{self.proxy.where()} closed the connection without answering CONNECT")


SOCKS_HINT = 'pip install "pyfastws[socks]"'


def socks_options(proxy: Proxy) -> dict[str, Any]:
    """The keywords of python-socks's ``Proxy`` (sync or asyncio) for a SOCKS proxy.

    Raises ImportError with the extra to install when python-socks is missing,
    and InvalidURI for credentials that are not ASCII: RFC 1929 names no
    charset, and python-socks sends ASCII only."""
    try:
        from python_socks import ProxyType
    except ImportError as exc:
        raise ImportError(f"a {proxy.scheme}:// proxy needs python-socks: {SOCKS_HINT}") from exc
    if not all(text is None or text.isascii() for text in (proxy.username, proxy.password)):
        raise InvalidURI(f"the credentials of a {proxy.scheme}:// proxy must be ASCII")
    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    # socks5h and socks4a send the name for the proxy to resolve; socks5 and socks4 resolve it here.
    return dict(
        proxy_type=kind,
        host=proxy.host,
        port=proxy.port,
        username=proxy.username,
        password=proxy.password,
        rdns=proxy.remote_dns,
    )


@contextlib.contextmanager
def socks_errors(proxy: Proxy, host: str, port: int) -> Iterator[None]:
    """Around python-socks opening a tunnel to host:port: what it raises about
    the proxy becomes ProxyError (anything else passes through)."""
    from python_socks import ProxyError as SocksError
    from python_socks import ProxyTimeoutError

    where = proxy.where()
    try:
        yield
    except ProxyTimeoutError as exc:
        raise ProxyError(f"{where} did not open a tunnel to {host}:{port} in time: {exc}") from exc
    except SocksError as exc:  # the proxy refused or answered garbage
        raise ProxyError(f"{where} refused to open a tunnel to {host}:{port}: {exc}") from exc
    except OSError as exc:  # cannot reach the proxy (python-socks's ProxyConnectionError), or resolving failed
        raise ProxyError(f"cannot reach {where}: {exc}") from exc
