"""Client proxies: URL parsing, the environment (NO_PROXY included), the CONNECT
exchange (fastws.proxy, sans I/O), and the asyncio layer against in-process
fake proxies: an HTTP CONNECT proxy (plain and TLS) and a SOCKS4/5 one, each
relaying to a fastws echo server, or refusing, babbling, hanging up, or saying
nothing. Real proxies (tinyproxy, microsocks) are in tests/interop/test_proxy.py.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import sys
from collections.abc import Awaitable
from typing import Callable, Optional

import pytest

from fastws import connect, serve
from fastws.asyncio.proxy import create_proxied_connection
from fastws.exceptions import InvalidURI, ProxyError
from fastws.proxy import ConnectTunnel, Proxy, basic_credentials, proxy_for

from .support.asyncio import async_test
from .support.tls import tls_contexts

STEP = 10.0  # seconds for one step of a test: a connection, a message

# -- Proxy.from_url -----------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://proxy.example:3128", ("http", "proxy.example", 3128, None, None)),
        ("http://proxy.example", ("http", "proxy.example", 80, None, None)),
        ("https://proxy.example/", ("https", "proxy.example", 443, None, None)),
        ("socks5://127.0.0.1", ("socks5", "127.0.0.1", 1080, None, None)),
        ("socks5h://[::1]:9050", ("socks5h", "::1", 9050, None, None)),
        ("socks4://h:1", ("socks4", "h", 1, None, None)),
        ("socks4a://h:1", ("socks4a", "h", 1, None, None)),
        ("HTTP://Proxy.Example:8080", ("http", "proxy.example", 8080, None, None)),
        ("http://user:pass@h:1", ("http", "h", 1, "user", "pass")),
        # percent-decoded: %40 is "@", %3A is ":", %20 a space; an empty password is allowed
        ("http://us%40er:p%3Ass%20w@h:1", ("http", "h", 1, "us@er", "p:ss w")),
        ("http://user:@h:1", ("http", "h", 1, "user", "")),
        # non-ASCII credentials, percent-encoded UTF-8
        ("http://%C3%A9l%C3%A8ve:m%C3%B6t@h:1", ("http", "h", 1, "élève", "möt")),
        # an internationalised host name becomes its ASCII (IDNA) form
        ("http://bücher.example:1", ("http", "xn--bcher-kva.example", 1, None, None)),
    ],
)
def test_from_url(url, expected):
    proxy = Proxy.from_url(url)
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.password) == expected


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://h:21", "unsupported proxy scheme 'ftp'"),
        ("//h:3128", "no scheme"),
        ("http://:3128", "no host"),
        ("http://h:99999", "invalid proxy URL"),
        ("http://h:port", "invalid proxy URL"),
        ("http://h:1/path", "no path, query or fragment"),
        ("http://h:1?x=1", "no path, query or fragment"),
        ("http://h:1#frag", "no path, query or fragment"),
        ("http://user@h:1", "a username without a password"),
        ("http://a%3Ab:c@h:1", "the username contains ':'"),
        ("http://%FF:c@h:1", "not percent-encoded UTF-8"),
    ],
)
def test_from_url_refuses(url, message):
    with pytest.raises(InvalidURI) as caught:
        Proxy.from_url(url)
    assert message in str(caught.value)


def test_the_password_never_shows():
    proxy = Proxy.from_url("http://alice:s3cret@proxy.example:3128")
    assert repr(proxy) == "Proxy('http://alice:***@proxy.example:3128')"
    assert "s3cret" not in repr(proxy) and "s3cret" not in str(proxy)
    with pytest.raises(InvalidURI) as caught:
        Proxy.from_url("gopher://alice:s3cret@proxy.example:70")
    assert "s3cret" not in str(caught.value) and "alice:***@proxy.example" in str(caught.value)
    assert repr(Proxy.from_url("socks5h://[::1]:9050")) == "Proxy('socks5h://[::1]:9050')"


def test_proxy_equality_and_flags():
    assert Proxy.from_url("http://u:p@h:1") == Proxy("http", "h", 1, "u", "p")
    assert Proxy.from_url("http://u:p@h:1") != Proxy("http", "h", 1, "u", "q")
    assert [Proxy(s, "h").remote_dns for s in ("socks5", "socks5h", "socks4", "socks4a", "http")] == [
        False,
        True,
        False,
        True,
        True,
    ]
    assert Proxy("socks4", "h").is_socks and not Proxy("https", "h").is_socks
    with pytest.raises(InvalidURI, match="unsupported proxy scheme"):
        Proxy("ftp", "h")
    with pytest.raises(InvalidURI, match="both a username and a password"):
        Proxy("http", "h", 1, "user")


# -- proxy_for: the argument and the environment -----------------------------

PROXY_VARIABLES = ["http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "socks_proxy", "all_proxy", "no_proxy"]


@pytest.fixture
def environment(monkeypatch):
    """No proxy variable set (in either case); ``environment(name=value)`` sets some."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)  # urllib ignores HTTP_PROXY under CGI

    def set_variables(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_variables


def test_no_proxy_in_the_environment(environment):
    assert proxy_for("ws://example.com/") is None
    assert proxy_for("wss://example.com/") is None


def test_https_proxy_serves_both_schemes_and_http_proxy_only_ws(environment):
    # As websockets: for ws:// the order is ws, socks, https, http; for wss:// it is wss, socks, https.
    environment(HTTP_PROXY="http://plain-proxy:3128")
    assert proxy_for("ws://example.com/") == Proxy("http", "plain-proxy", 3128)
    assert proxy_for("wss://example.com/") is None
    environment(HTTPS_PROXY="http://secure-proxy:3129")
    assert proxy_for("wss://example.com/") == Proxy("http", "secure-proxy", 3129)
    assert proxy_for("ws://example.com/") == Proxy("http", "secure-proxy", 3129)


def test_lowercase_variables_win(environment):
    environment(HTTPS_PROXY="http://upper:1", https_proxy="http://lower:2")
    assert proxy_for("wss://example.com/") == Proxy("http", "lower", 2)


def test_socks_then_ws_specific_variables_take_precedence(environment):
    environment(HTTPS_PROXY="http://secure-proxy:3129", HTTP_PROXY="http://plain-proxy:3128")
    environment(SOCKS_PROXY="socks5://socks-proxy:1080")
    assert proxy_for("wss://example.com/") == Proxy("socks5", "socks-proxy", 1080)
    assert proxy_for("ws://example.com/") == Proxy("socks5", "socks-proxy", 1080)
    environment(WSS_PROXY="https://wss-proxy:8443", WS_PROXY="http://ws-proxy:8080")
    assert proxy_for("wss://example.com/") == Proxy("https", "wss-proxy", 8443)
    assert proxy_for("ws://example.com/") == Proxy("http", "ws-proxy", 8080)


def test_a_socks_setting_without_scheme_means_socks5h(environment):
    # How the OS settings (macOS, the Windows registry) come through getproxies().
    environment(socks_proxy="http://socks-proxy:1080")
    assert proxy_for("wss://example.com/") == Proxy("socks5h", "socks-proxy", 1080)


def test_all_proxy_is_the_last_resort(environment):
    environment(ALL_PROXY="socks5://everything:1080")
    assert proxy_for("wss://example.com/") == Proxy("socks5", "everything", 1080)
    assert proxy_for("ws://example.com/") == Proxy("socks5", "everything", 1080)
    environment(HTTP_PROXY="http://plain-proxy:3128")
    assert proxy_for("ws://example.com/") == Proxy("http", "plain-proxy", 3128)
    assert proxy_for("wss://example.com/") == Proxy("socks5", "everything", 1080)
    environment(NO_PROXY="example.com")
    assert proxy_for("wss://example.com/") is None


def test_no_proxy(environment):
    environment(HTTPS_PROXY="http://secure-proxy:3129", NO_PROXY="internal.example, other.example:8443")
    assert proxy_for("wss://internal.example/") is None
    assert proxy_for("wss://deep.sub.internal.example/") is None  # a suffix match
    assert proxy_for("wss://other.example:8443/") is None  # host:port entry
    assert proxy_for("wss://other.example/") == Proxy("http", "secure-proxy", 3129)  # another port
    assert proxy_for("wss://notinternal.example/") == Proxy("http", "secure-proxy", 3129)
    assert proxy_for("wss://public.example/") == Proxy("http", "secure-proxy", 3129)


def test_no_proxy_star(environment):
    environment(HTTPS_PROXY="http://secure-proxy:3129", no_proxy="*")
    assert proxy_for("wss://anything.example/") is None


def test_the_argument_overrides_the_environment(environment):
    environment(HTTPS_PROXY="http://secure-proxy:3129", NO_PROXY="example.com")
    assert proxy_for("wss://public.example/", None) is None
    assert proxy_for("wss://public.example/", False) is None
    # An explicit proxy is used even for a NO_PROXY host: the caller asked for it.
    assert proxy_for("wss://example.com/", "socks5h://s:9050") == Proxy("socks5h", "s", 9050)
    with pytest.raises(TypeError, match="proxy must be"):
        proxy_for("wss://example.com/", 3128)  # type: ignore[arg-type]


def test_bad_proxy_urls_and_uris(environment):
    environment(HTTPS_PROXY="gopher://oops:70")
    with pytest.raises(InvalidURI, match="unsupported proxy scheme 'gopher'"):
        proxy_for("wss://example.com/")
    with pytest.raises(InvalidURI):
        proxy_for("https://example.com/")


# -- ConnectTunnel (RFC 9110 §9.3.6) -------------------------------------------


def test_connect_request():
    tunnel = ConnectTunnel(Proxy("http", "proxy", 3128), "example.com", 443)
    assert tunnel.request_bytes() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: fastws\r\n\r\n"
    )
    tunnel = ConnectTunnel(Proxy("http", "proxy", 3128), "::1", 8080, user_agent=None)
    assert tunnel.request_bytes() == b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"


def test_connect_request_with_basic_credentials():
    tunnel = ConnectTunnel(Proxy.from_url("http://user:pass@proxy:3128"), "example.com", 80, user_agent="agent/1")
    assert tunnel.request_bytes() == (
        b"CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\nUser-Agent: agent/1\r\n"
        b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n"  # base64("user:pass")
    )


def test_non_ascii_credentials_are_utf8():
    # RFC 7617 §2.1 (charset="UTF-8"): the UTF-8 bytes, not latin-1.
    expected = "Basic " + base64.b64encode(b"\xc3\xa9l\xc3\xa8ve:m\xc3\xb6t \xe2\x82\xac").decode()
    assert basic_credentials("élève", "möt €") == expected
    tunnel = ConnectTunnel(Proxy.from_url("http://%C3%A9l%C3%A8ve:m%C3%B6t%20%E2%82%AC@proxy:3128"), "h", 1)
    assert f"Proxy-Authorization: {expected}\r\n".encode() in tunnel.request_bytes()


def test_a_target_that_cannot_be_written_is_refused():
    with pytest.raises(InvalidURI, match="cannot ask the proxy"):
        ConnectTunnel(Proxy("http", "proxy"), "evil.example\r\nX-Injected: 1", 80)


def tunnel() -> ConnectTunnel:
    return ConnectTunnel(Proxy("http", "proxy", 3128), "example.com", 443)


def test_a_2xx_opens_the_tunnel_byte_by_byte():
    t = tunnel()
    answer = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 proxy\r\n\r\n"
    for byte in answer[:-1]:
        assert t.receive_data(bytes([byte])) is None
    assert t.receive_data(answer[-1:]) == b""
    assert t.done and t.status == 200


def test_bytes_after_the_head_are_the_tunnels():
    t = tunnel()
    # Content-Length in a 2xx to CONNECT is ignored (RFC 9110 §9.3.6): what follows is the target's.
    assert t.receive_data(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n\x16\x03\x01") == b"\x16\x03\x01"
    with pytest.raises(RuntimeError):
        t.receive_data(b"more")


def test_interim_responses_are_skipped():
    t = tunnel()
    assert t.receive_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 20") is None
    assert t.receive_data(b"4 No Content\r\n\r\n") == b""
    assert t.status == 204


@pytest.mark.parametrize(
    "answer, status, text",
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403, "HTTP 403 Forbidden"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", 502, "HTTP 502 Bad Gateway"),
        (b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://x/\r\n\r\n", 301, "HTTP 301 Moved Permanently"),
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 407, "the proxy wants credentials"),
    ],
)
def test_refusals(answer, status, text):
    with pytest.raises(ProxyError) as caught:
        tunnel().receive_data(answer)
    assert caught.value.status == status
    assert text in str(caught.value)
    assert "proxy proxy:3128 refused to open a tunnel to example.com:443" in str(caught.value)


@pytest.mark.parametrize("status, reason", [(407, "Proxy Authentication Required"), (401, "Unauthorized")])
def test_407_with_credentials_blames_them(status, reason):
    # 401: what tinyproxy answers to wrong credentials (tests/interop/test_proxy.py).
    t = ConnectTunnel(Proxy.from_url("http://user:wrong@proxy:3128"), "example.com", 443)
    with pytest.raises(ProxyError) as caught:
        t.receive_data(f"HTTP/1.0 {status} {reason}\r\n\r\n".encode())
    assert str(caught.value) == (
        f"proxy proxy:3128 refused to open a tunnel to example.com:443: HTTP {status} {reason}"
        " (the proxy rejected the credentials in the proxy URL)"
    )
    assert caught.value.status == status


def test_401_without_credentials_gets_no_hint():
    with pytest.raises(ProxyError) as caught:
        tunnel().receive_data(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
    assert str(caught.value).endswith("HTTP 401 Unauthorized") and caught.value.status == 401


@pytest.mark.parametrize(
    "answer, text",
    [
        (b"\x05\x00", "did not answer CONNECT with HTTP: it sent b'\\x05\\x00'"),  # a SOCKS5 server
        (b"\x15\x03\x01\x00\x02\x02\x46", "did not answer CONNECT with HTTP"),  # a TLS alert
        (b"SSH-2.0-OpenSSH_9.2\r\n", "did not answer CONNECT with HTTP"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "invalid answer to CONNECT: invalid status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "invalid answer to CONNECT: invalid header line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000, "response head over 16384 bytes"),
    ],
)
def test_garbage(answer, text):
    with pytest.raises(ProxyError) as caught:
        tunnel().receive_data(answer)
    assert text in str(caught.value)
    assert caught.value.status is None


def test_garbage_split_across_reads():
    t = tunnel()
    assert t.receive_data(b"HT") is None
    with pytest.raises(ProxyError, match="did not answer CONNECT with HTTP"):
        t.receive_data(b"ML>")


def test_eof():
    with pytest.raises(ProxyError, match="closed the connection without answering CONNECT"):
        tunnel().receive_eof()
    t = tunnel()
    t.receive_data(b"HTTP/1.1 200 Conn")
    with pytest.raises(ProxyError, match="closed the connection in the middle of its answer to CONNECT"):
        t.receive_eof()


# -- fake proxies -------------------------------------------------------------


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def relay(reader, writer, host: str, port: int) -> Optional[Callable[[], Awaitable]]:
    """Connect to host:port: a function relaying both ways (to run once the
    client is told), or None if the target cannot be reached."""
    try:
        target_reader, target_writer = await asyncio.open_connection(host, port)
    except OSError:
        return None

    async def run() -> None:
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))

    return run


class FakeProxy:
    """A proxy server in this process (HTTP CONNECT, or SOCKS4/5 with ``socks=True``).

    ``answer=None`` relays to the target; bytes are sent as the answer, then
    the connection is closed, or held open with ``hold=True``; ``silent=True``
    reads the request and never answers. ``requests`` records what clients
    asked; ``ended`` is set when a client connection ends.
    """

    def __init__(
        self,
        answer: Optional[bytes] = None,
        *,
        hold: bool = False,
        silent: bool = False,
        credentials: Optional[str] = None,
        tls: Optional[ssl.SSLContext] = None,
        socks: bool = False,
    ) -> None:
        self.answer = answer
        self.hold = hold
        self.silent = silent
        self.credentials = credentials  # the Proxy-Authorization value it wants
        self.tls = tls
        self.socks = socks
        self.requests: list = []
        self.ended = asyncio.Event()
        self.tasks: set = set()

    async def __aenter__(self) -> FakeProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        if self.tasks:  # the clients have closed: let the handlers see it (bounded), then cancel stragglers
            await asyncio.wait(list(self.tasks), timeout=STEP)
        for task in list(self.tasks):
            task.cancel()
        await self.server.wait_closed()

    def url(self, scheme: Optional[str] = None, userinfo: str = "") -> str:
        scheme = scheme or ("https" if self.tls else "http")
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        try:
            if self.silent:
                self.requests.append(await reader.read(65536))
                await reader.read()  # until the client closes
            elif self.socks:
                await self._socks(reader, writer)
            else:
                await self._http(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.ended.set()
            self.tasks.discard(asyncio.current_task())

    async def _answer_or_hold(self, reader, writer) -> bool:
        """Send the canned answer, if any (then hold or close); True if it did."""
        if self.answer is None:
            return False
        writer.write(self.answer)
        await writer.drain()
        if self.hold:
            await reader.read()  # until the client closes
        return True

    async def _http(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        if await self._answer_or_hold(reader, writer):
            return
        lines = head.decode("latin-1").split("\r\n")
        if self.credentials is not None and f"Proxy-Authorization: {self.credentials}" not in lines:
            writer.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n\r\n')
            return
        method, authority, _ = lines[0].split(" ")
        host, _, port = authority.rpartition(":")
        run = await relay(reader, writer, host.strip("[]"), int(port))
        if not run:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await run()

    async def _socks(self, reader, writer) -> None:
        version = (await reader.readexactly(1))[0]
        if version == 4:  # SOCKS4(a): CD DSTPORT DSTIP USERID\0 [HOST\0]
            command, port, address = (
                await reader.readexactly(1),
                await reader.readexactly(2),
                await reader.readexactly(4),
            )
            user = (await reader.readuntil(b"\0"))[:-1]
            host = socket.inet_ntoa(address)
            if address[:3] == b"\0\0\0" and address[3]:  # 0.0.0.x: SOCKS4a, the name follows
                host = (await reader.readuntil(b"\0"))[:-1].decode()
            self.requests.append((4, host, int.from_bytes(port, "big"), user))
            if await self._answer_or_hold(reader, writer):
                return
            run = await relay(reader, writer, self.target[0], self.target[1])
            writer.write(b"\0\x5a" + bytes(6) if run else b"\0\x5b" + bytes(6))
        else:  # SOCKS5 (RFC 1928), no authentication
            methods = await reader.readexactly((await reader.readexactly(1))[0])
            writer.write(b"\x05\x00")
            _, command, _, kind = await reader.readexactly(4)
            if kind == 1:
                host = socket.inet_ntoa(await reader.readexactly(4))
            elif kind == 4:
                host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
            else:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.requests.append((5, kind, host, port, methods))
            if await self._answer_or_hold(reader, writer):
                return
            run = await relay(reader, writer, self.target[0], self.target[1])
            writer.write(b"\x05" + (b"\x00" if run else b"\x05") + b"\x00\x01" + bytes(6))
        if run:
            await run()

    # Where the SOCKS fake connects, whatever the client asked (its name may
    # resolve to ::1 here and 127.0.0.1 there): set by the test.
    target: tuple = ("127.0.0.1", 0)


@pytest.fixture(scope="module")
def certificates():
    """A CA, a server context (127.0.0.1, localhost) and a client context trusting it."""
    return tls_contexts()


async def open_through(uri: str, proxy: str, *, ssl=None, proxy_ssl=None, open_timeout: float = STEP):
    """A fastws client connection to ``uri`` through ``proxy``."""
    return await connect(uri, proxy=proxy, ssl=ssl, proxy_ssl=proxy_ssl, open_timeout=open_timeout)


class Recorder(asyncio.Protocol):
    """A bare protocol for create_proxied_connection: records what it is given."""

    def __init__(self) -> None:
        self.transport = None
        self.received = bytearray()
        self.data = asyncio.Event()
        self.lost = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"ping")

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.data.set()

    def connection_lost(self, exc) -> None:
        self.lost.set()


async def tcp_echo_server():
    async def echo_bytes(reader, writer):
        await _pipe(reader, writer)

    return await asyncio.start_server(echo_bytes, "127.0.0.1", 0)


async def echo_once(ws, message="through the proxy é") -> None:
    await ws.send(message)
    assert await asyncio.wait_for(ws.recv(), STEP) == message
    await ws.close()


# -- HTTP CONNECT through the fake ---------------------------------------------


@async_test
async def test_http_proxy_relays():
    async with serve(echo, "127.0.0.1", 0) as server, FakeProxy() as proxy:
        ws = await open_through(f"ws://127.0.0.1:{server.port}/path?q=1", proxy.url())
        await echo_once(ws)
        assert proxy.requests == [
            f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "User-Agent: fastws\r\n\r\n".encode()
        ]


@async_test
async def test_http_proxy_with_credentials():
    wanted = "Basic " + base64.b64encode("alice:pässword".encode()).decode()
    async with serve(echo, "127.0.0.1", 0) as server, FakeProxy(credentials=wanted) as proxy:
        ws = await open_through(f"ws://127.0.0.1:{server.port}/", proxy.url(userinfo="alice:p%C3%A4ssword@"))
        await echo_once(ws)
        with pytest.raises(ProxyError) as caught:
            await open_through(f"ws://127.0.0.1:{server.port}/", proxy.url(userinfo="alice:wrong@"))
        assert caught.value.status == 407
        assert "HTTP 407 Proxy Authentication Required" in str(caught.value)
        assert "rejected the credentials" in str(caught.value)
        with pytest.raises(ProxyError, match="wants credentials") as caught:
            await open_through(f"ws://127.0.0.1:{server.port}/", proxy.url())
        assert caught.value.status == 407


@pytest.mark.parametrize("proxy_scheme", ["http", "https"])
@pytest.mark.parametrize("target_scheme", ["ws", "wss"])
@async_test
async def test_tls_to_the_proxy_and_to_the_target(certificates, proxy_scheme, target_scheme):
    """http/https proxy x ws/wss target: for https + wss, TLS inside TLS."""
    server_tls, client_tls = certificates
    target_tls = server_tls if target_scheme == "wss" else None
    proxy_tls = server_tls if proxy_scheme == "https" else None
    async with serve(echo, "127.0.0.1", 0, ssl=target_tls) as server, FakeProxy(tls=proxy_tls) as proxy:
        if target_scheme == "wss" and proxy_scheme == "https" and sys.version_info < (3, 11):
            with pytest.raises(NotImplementedError, match="needs Python 3.11 or later"):
                await open_through(f"wss://localhost:{server.port}/", proxy.url(), ssl=client_tls, proxy_ssl=client_tls)
            assert proxy.requests == []  # refused before connecting
            return
        ws = await open_through(
            f"{target_scheme}://localhost:{server.port}/",
            proxy.url(),
            ssl=client_tls if target_scheme == "wss" else None,
            proxy_ssl=client_tls if proxy_scheme == "https" else None,
        )
        assert (ws.transport.get_extra_info("ssl_object") is not None) == (
            target_scheme == "wss" or proxy_scheme == "https"
        )
        await echo_once(ws, "x" * 100_000)  # larger than one TLS record
        assert proxy.requests[0].startswith(f"CONNECT localhost:{server.port} HTTP/1.1\r\n".encode())


@async_test
async def test_an_untrusted_https_proxy_is_refused(certificates):
    server_tls, _ = certificates
    async with FakeProxy(tls=server_tls) as proxy:
        with pytest.raises(ProxyError, match=f"cannot reach proxy 127.0.0.1:{proxy.port}") as caught:
            await open_through("ws://127.0.0.1:1/", proxy.url())  # the system's CAs do not know trustme's
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


@async_test
async def test_proxy_ssl_needs_an_https_proxy(certificates):
    with pytest.raises(ValueError, match="proxy_ssl= needs an https:// proxy"):
        await open_through("ws://127.0.0.1:1/", "http://127.0.0.1:1", proxy_ssl=certificates[1])


@pytest.mark.parametrize(
    "answer, status, text",
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden", 403, "HTTP 403 Forbidden"),
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 407, "wants credentials"),
    ],
)
@async_test
async def test_refused(answer, status, text):
    async with FakeProxy(answer) as proxy:
        with pytest.raises(ProxyError) as caught:
            await open_through("ws://example.com:8080/", proxy.url())
        assert caught.value.status == status
        assert f"proxy 127.0.0.1:{proxy.port} refused to open a tunnel to example.com:8080: HTTP {status}" in str(
            caught.value
        )
        assert text in str(caught.value)


@pytest.mark.parametrize(
    "answer, text",
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "did not answer CONNECT with HTTP: it sent b'SSH-2.0-OpenSSH_9.2"),
        (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "sent an invalid answer to CONNECT: invalid header line"),
    ],
)
@async_test
async def test_garbage_answers(answer, text):
    async with FakeProxy(answer, hold=True) as proxy:  # held open: the error comes from the bytes, not a close
        with pytest.raises(ProxyError) as caught:
            await open_through("ws://example.com/", proxy.url())
        assert text in str(caught.value) and caught.value.status is None
        await asyncio.wait_for(proxy.ended.wait(), STEP)  # and the connection was closed


@pytest.mark.parametrize(
    "answer, text",
    [
        (b"", "closed the connection without answering CONNECT"),
        (b"HTTP/1.1 200 Connection est", "closed the connection in the middle of its answer to CONNECT"),
    ],
)
@async_test
async def test_closed_mid_handshake(answer, text):
    async with FakeProxy(answer) as proxy:
        with pytest.raises(ProxyError, match=text):
            await open_through("ws://example.com/", proxy.url())


@async_test
async def test_bytes_before_tls_are_refused():
    async with FakeProxy(b"HTTP/1.1 200 OK\r\n\r\nunexpected", hold=True) as proxy:
        with pytest.raises(ProxyError, match="sent bytes of its own after opening the tunnel"):
            await open_through("wss://example.com/", proxy.url(), ssl=ssl.create_default_context())
        await asyncio.wait_for(proxy.ended.wait(), STEP)


@async_test
async def test_unreachable_proxy():
    with socket.socket() as unused:  # bound, never listening: connecting is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(ProxyError, match=f"cannot reach proxy 127.0.0.1:{port}") as caught:
            await open_through("ws://example.com/", f"http://127.0.0.1:{port}")
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize("scheme", ["http", "https", "socks5"])
@async_test
async def test_a_silent_proxy_times_out_and_the_connection_is_closed(certificates, scheme):
    async with FakeProxy(silent=True, tls=certificates[0] if scheme == "https" else None) as proxy:
        with pytest.raises(TimeoutError, match="timed out after 0.5s"):
            await open_through(
                "ws://example.com/",
                proxy.url(scheme),
                proxy_ssl=certificates[1] if scheme == "https" else None,
                open_timeout=0.5,
            )
        await asyncio.wait_for(proxy.ended.wait(), STEP)  # cancelled: the connection to the proxy was closed
        first = b"CONNECT example.com:80 " if scheme != "socks5" else b"\x05"  # it got the request
        assert proxy.requests[0].startswith(first)


# -- SOCKS through the fake (python-socks) --------------------------------------


@pytest.mark.parametrize(
    "scheme, name_sent",
    [("socks5", False), ("socks5h", True), ("socks4", False), ("socks4a", True)],
)
@async_test
async def test_socks(scheme, name_sent):
    async with serve(echo, "127.0.0.1", 0) as server, FakeProxy(socks=True) as proxy:
        proxy.target = ("127.0.0.1", server.port)
        ws = await open_through(f"ws://localhost:{server.port}/", proxy.url(scheme))
        await echo_once(ws)
        request = proxy.requests[0]
        assert request[0] == (5 if scheme.startswith("socks5") else 4)
        host, port = request[-3:-1] if request[0] == 5 else request[1:3]
        assert port == server.port
        if name_sent:  # socks5h, socks4a: the proxy resolves the name
            assert host == "localhost"
        else:  # socks5, socks4: resolved here, an address is sent
            assert ipaddress.ip_address(host).is_loopback


@async_test
async def test_socks_refusal():
    async with FakeProxy(socks=True) as proxy:
        proxy.target = ("127.0.0.1", 1)  # nothing listens there: the fake answers "connection refused"
        with pytest.raises(ProxyError) as caught:
            await open_through("ws://127.0.0.1:1/", proxy.url("socks5"))
        assert f"socks5 proxy 127.0.0.1:{proxy.port} refused to open a tunnel to 127.0.0.1:1" in str(caught.value)
        assert "refused" in str(caught.value.__cause__).lower()


@async_test
async def test_socks_unreachable():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(ProxyError, match=f"cannot reach socks5h proxy 127.0.0.1:{port}"):
            await open_through("ws://example.com/", f"socks5h://127.0.0.1:{port}")


@async_test
async def test_socks_without_python_socks(monkeypatch):
    monkeypatch.setitem(sys.modules, "python_socks", None)  # import python_socks now raises ImportError
    with pytest.raises(ImportError, match=r'a socks5h:// proxy needs python-socks: pip install "pyfastws\[socks\]"'):
        await open_through("ws://example.com/", "socks5h://127.0.0.1:1080")


@async_test
async def test_socks_credentials_must_be_ascii():
    async with FakeProxy(socks=True) as proxy:
        with pytest.raises(InvalidURI, match="the credentials of a socks5:// proxy must be ASCII"):
            await open_through("ws://127.0.0.1:1/", proxy.url("socks5", userinfo="%C3%A9:x@"))
        assert proxy.requests == []  # refused before connecting


# -- create_proxied_connection with a bare protocol -----------------------------


@async_test
async def test_create_proxied_connection_hands_over_the_transport():
    loop = asyncio.get_running_loop()
    server = await tcp_echo_server()
    port = server.sockets[0].getsockname()[1]
    try:
        async with FakeProxy() as proxy:
            transport, protocol = await create_proxied_connection(
                loop, Recorder, Proxy.from_url(proxy.url()), "127.0.0.1", port, ssl=None, server_hostname=None
            )
            assert isinstance(protocol, Recorder) and protocol.transport is transport
            assert transport.get_protocol() is protocol
            await asyncio.wait_for(protocol.data.wait(), STEP)
            assert protocol.received == b"ping"  # written in connection_made, echoed back through the tunnel
            transport.close()
            await asyncio.wait_for(protocol.lost.wait(), STEP)
    finally:
        server.close()
        await server.wait_closed()


@async_test
async def test_bytes_right_after_the_200_reach_the_protocol():
    loop = asyncio.get_running_loop()
    async with FakeProxy(b"HTTP/1.1 200 OK\r\n\r\nearly bytes", hold=True) as proxy:
        transport, protocol = await create_proxied_connection(
            loop, Recorder, Proxy.from_url(proxy.url()), "example.com", 80, ssl=None, server_hostname=None
        )
        await asyncio.wait_for(protocol.data.wait(), STEP)
        assert protocol.received == b"early bytes"
        transport.close()
        await asyncio.wait_for(proxy.ended.wait(), STEP)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
@async_test
async def test_cancelling_create_proxied_connection_closes_the_connection(scheme):
    loop = asyncio.get_running_loop()
    async with FakeProxy(silent=True) as proxy:
        opening = asyncio.ensure_future(
            create_proxied_connection(
                loop, Recorder, Proxy.from_url(proxy.url(scheme)), "example.com", 80, ssl=None, server_hostname=None
            )
        )
        while not proxy.requests:  # wait (bounded by the test's deadline) until the proxy has the request
            await asyncio.sleep(0.01)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await asyncio.wait_for(proxy.ended.wait(), STEP)


# -- connect() and the environment ---------------------------------------------


@async_test
async def test_connect_uses_the_environment_and_no_proxy(environment):
    async with serve(echo, "127.0.0.1", 0) as server, FakeProxy() as proxy:
        environment(HTTP_PROXY=proxy.url())
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("from the environment")
            assert await asyncio.wait_for(ws.recv(), STEP) == "from the environment"
        assert len(proxy.requests) == 1
        async with connect(f"ws://127.0.0.1:{server.port}/", proxy=None):
            pass
        environment(NO_PROXY="127.0.0.1")
        async with connect(f"ws://127.0.0.1:{server.port}/"):
            pass
        assert len(proxy.requests) == 1  # neither went through the proxy
