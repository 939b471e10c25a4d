"""The asyncio client's features beyond one plain connection: URIs and credentials,
headers, strict keywords, redirects, reconnection with backoff, Unix sockets.

Servers here are fastws's own (the websockets library plays them in
tests/interop/test_client_websockets.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import socket
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastws
from fastws.asyncio.client import unix_connect
from fastws.exceptions import ConnectionClosed, InvalidHandshake, InvalidRedirect, InvalidStatus, InvalidURI, ProxyError
from fastws.handshake import Headers, Response
from fastws.policy import Backoff, retry_after, retryable
from fastws.uri import parse_uri, redirect_uri

from .support.asyncio import async_test
from .support.reconnect import Gate, fast


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def request_headers_server(**kwargs):
    """A server whose handler sends back the request's headers as "name: value" lines."""

    async def handler(ws):
        await ws.send("\n".join(f"{name}: {value}" for name, value in ws.request.headers))

    return fastws.serve(handler, "127.0.0.1", 0, **kwargs)


# -- URIs ----------------------------------------------------------------------------


def test_parse_uri():
    uri = parse_uri("wss://user:p%40ss@Example.com:8443/chat?room=1")
    assert (uri.secure, uri.host, uri.port, uri.resource) == (True, "example.com", 8443, "/chat?room=1")
    assert (uri.username, uri.password) == ("user", "p@ss")
    assert uri.host_header == "example.com:8443"
    assert parse_uri("ws://[::1]/").host_header == "[::1]"
    assert parse_uri("ws://h:80").resource == "/"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://example.com/", "not a ws:// or wss:// URI"),
        ("ws:///path", "has no host"),
        ("ws://host:99999/", "not a valid URI"),
        ("ws://host/#frag", "fragment"),
        ("ws://a%3Ab:pw@host/", "user name with ':'"),
    ],
)
def test_parse_uri_refuses(uri, message):
    with pytest.raises(InvalidURI, match=message):
        parse_uri(uri)
    with pytest.raises(ValueError):  # InvalidURI is a ValueError, as before
        fastws.connect(uri)


def test_basic_auth_from_uri_is_utf8():
    uri = parse_uri("ws://J%C3%BCrgen:p%C3%A4ss@host/")
    assert uri.authorization() == "Basic " + base64.b64encode("Jürgen:päss".encode()).decode()
    assert parse_uri("ws://host/").authorization() is None


@pytest.mark.parametrize(
    "current, location, expected",
    [
        ("ws://a/x/y", "/z", "ws://a/z"),
        ("ws://a/x/y", "z", "ws://a/x/z"),
        ("ws://a/", "wss://b:9/", "wss://b:9/"),
        ("wss://a/", "wss://b/", "wss://b/"),
        ("ws://a/", "//b/c", "ws://b/c"),
    ],
)
def test_redirect_targets(current, location, expected):
    assert redirect_uri(parse_uri(current), 302, location).uri == expected


@pytest.mark.parametrize(
    "current, location, message",
    [
        ("wss://a/", "ws://a/", "would drop TLS"),
        ("ws://a/", "http://a/", "not a WebSocket URI"),
        ("ws://a/", "https://b/", "not a WebSocket URI"),
        ("ws://a/", None, "without a Location"),
    ],
)
def test_redirects_refused(current, location, message):
    with pytest.raises(InvalidRedirect, match=message) as info:
        redirect_uri(parse_uri(current), 307, location)
    assert info.value.status == 307


def test_credentials_follow_only_the_same_origin():
    current = parse_uri("ws://u:p@a/")
    assert redirect_uri(current, 301, "/b").username == "u"
    assert redirect_uri(current, 301, "ws://other/").username is None
    assert redirect_uri(current, 301, "ws://a:81/").username is None


# -- backoff and what is retried -------------------------------------------------------


@given(
    initial=st.floats(0.001, 10),
    factor=st.floats(1, 4),
    extra=st.floats(0, 100),
    seed=st.integers(0, 2**32),
)
def test_backoff_delays_grow_within_bounds(initial, factor, extra, seed):
    maximum = initial + extra
    backoff = Backoff(initial, factor, maximum, rng=random.Random(seed))
    for n in range(30):
        ceiling = min(maximum, initial * factor**n)
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling  # jittered, never zero, never above maximum
    backoff.reset()
    assert backoff.next_delay() <= initial


def test_backoff_honours_retry_after_up_to_maximum():
    backoff = Backoff(0.01, 2, 5.0)
    assert backoff.next_delay(at_least=3) == 3
    assert backoff.next_delay(at_least=3600) == 5.0
    with pytest.raises(ValueError):
        Backoff(initial=0)


def test_backoff_after_a_disconnect():
    backoff = Backoff(initial=1.0, maximum=8.0, stable_after=10.0, rng=random.Random(1))
    assert 0.5 <= backoff.after_disconnect(lasted=0.2) <= 1.0  # dropped at once: a failure
    assert backoff.failures == 1
    assert backoff.after_disconnect(lasted=10.0) == 0.0  # a stable connection: reconnect now, start over
    assert backoff.failures == 0


def test_retry_after():
    later = InvalidStatus(503, "Service Unavailable", response=Response(503, Headers([("Retry-After", "7")])))
    dated = InvalidStatus(503, "", response=Response(503, Headers([("Retry-After", "Fri, 27 Nov 2026 12:00:00 GMT")])))
    assert retry_after(later) == 7.0
    assert retry_after(dated) == 0.0 and retry_after(InvalidStatus(503, "")) == 0.0
    assert retry_after(ConnectionRefusedError()) == 0.0


@pytest.mark.parametrize(
    "error, retry",
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ProxyError("proxy closed"), True),
        (ConnectionClosed(1006), True),
        (InvalidStatus(503, "Service Unavailable"), True),
        (InvalidStatus(429, "Too Many Requests"), True),
        (InvalidStatus(403, "Forbidden"), False),
        (InvalidStatus(404, "Not Found"), False),
        (InvalidRedirect("loop", 302), False),
        (InvalidHandshake("bad accept"), False),
        (InvalidURI("x"), False),
    ],
)
def test_retryable(error, retry):
    assert retryable(error) is retry


# -- keywords and headers --------------------------------------------------------------


def test_unknown_keywords_name_the_fastws_equivalent():
    with pytest.raises(TypeError, match="'max_size'; fastws calls it max_message_size"):
        fastws.connect("ws://h/", max_size=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'additional_headers'; fastws calls it extra_headers"):
        fastws.connect("ws://h/", additional_headers={})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="connect\\(\\) got an unexpected keyword argument 'max_mesage_size'$"):
        fastws.connect("ws://h/", max_mesage_size=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="serve\\(\\) got an unexpected keyword argument 'max_size'"):
        fastws.serve(echo, max_size=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "extra",
    [
        {"X-Token": "abc", "X-Two": "2"},
        [("X-Token", "abc"), ("X-Two", "2")],
        Headers([("X-Token", "abc"), ("X-Two", "2")]),
    ],
    ids=["dict", "pairs", "Headers"],
)
@async_test
async def test_extra_headers_forms(extra):
    async with request_headers_server() as server:
        async with fastws.connect(f"ws://127.0.0.1:{server.port}/", extra_headers=extra) as ws:
            lines = (await ws.recv()).split("\n")
    assert "X-Token: abc" in lines and "X-Two: 2" in lines


@async_test
async def test_user_agent_and_credentials_headers():
    async with request_headers_server() as server:
        uri = f"ws://J%C3%BCrgen:s%3Acret@127.0.0.1:{server.port}/"
        async with fastws.connect(uri, user_agent_header="my-app/2") as ws:
            lines = (await ws.recv()).split("\n")
        assert "User-Agent: my-app/2" in lines
        assert "Authorization: Basic " + base64.b64encode("Jürgen:s:cret".encode()).decode() in lines
        async with fastws.connect(uri, user_agent_header=None, extra_headers={"Authorization": "Bearer t"}) as ws:
            lines = (await ws.recv()).split("\n")
        assert not any(line.startswith("User-Agent:") for line in lines)
        assert [line for line in lines if line.startswith("Authorization")] == ["Authorization: Bearer t"]


@async_test
async def test_connect_logger(caplog):
    async with fastws.serve(echo, "127.0.0.1", 0) as server:
        caplog.set_level(logging.DEBUG, logger="my.client")
        async with fastws.connect(f"ws://127.0.0.1:{server.port}/", logger="my.client") as ws:
            assert ws.logger is logging.getLogger("my.client")
            assert isinstance(ws.id.int, int) and ws.id == ws.id
            assert ws.local_address[0] == "127.0.0.1" and ws.local_address[1] != server.port


# -- redirects -----------------------------------------------------------------------------


def redirecting(location_for):
    """process_request answering 302 with ``location_for(path)`` (None: accept)."""

    def process_request(ws, request):
        location = location_for(request.path)
        if location is None:
            return None
        return Response(302, Headers([("Location", location)]), reason="Found")

    return process_request


@async_test
async def test_redirect_chain_to_another_server():
    async with fastws.serve(echo, "127.0.0.1", 0) as target:
        hops = {"/a": "/b", "/b": f"ws://127.0.0.1:{target.port}/final"}
        async with fastws.serve(echo, "127.0.0.1", 0, process_request=redirecting(hops.get)) as front:
            async with fastws.connect(f"ws://127.0.0.1:{front.port}/a") as ws:
                await ws.send("through")
                assert await ws.recv() == "through"
                assert ws.handshake.request.path == "/final"


@async_test
async def test_redirect_loop_and_limits():
    async with fastws.serve(echo, "127.0.0.1", 0, process_request=redirecting(lambda path: path)) as server:
        uri = f"ws://127.0.0.1:{server.port}/loop"
        with pytest.raises(InvalidRedirect, match="more than 10 redirects") as info:
            await fastws.connect(uri)
        assert info.value.status == 302
        with pytest.raises(InvalidRedirect, match="more than 2 redirects"):
            await fastws.connect(uri, max_redirects=2)
        with pytest.raises(InvalidStatus) as refused:  # max_redirects=0: the 302 itself is the answer
            await fastws.connect(uri, max_redirects=0)
        assert refused.value.status == 302 and refused.value.response.headers["Location"] == "/loop"


@async_test
async def test_redirect_to_another_scheme_is_refused():
    async with fastws.serve(echo, "127.0.0.1", 0, process_request=redirecting(lambda p: "https://x/")) as server:
        with pytest.raises(InvalidRedirect, match="not a WebSocket URI"):
            await fastws.connect(f"ws://127.0.0.1:{server.port}/")


# -- reconnection ---------------------------------------------------------------------------


@async_test
async def test_reconnect_retries_5xx_then_connects():
    gate = Gate(refusals=3)
    async with fastws.serve(echo, "127.0.0.1", 0, process_request=gate) as server:
        client = fastws.connect(f"ws://127.0.0.1:{server.port}/", backoff=fast())
        async for ws in client:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            break
        assert gate.requests == 4
        assert isinstance(client.last_error, InvalidStatus) and client.last_error.status == 503


@async_test
async def test_reconnect_does_not_retry_4xx():
    gate = Gate(refusals=1, status=403)
    async with fastws.serve(echo, "127.0.0.1", 0, process_request=gate) as server:
        with pytest.raises(InvalidStatus) as info:
            async for _ in fastws.connect(f"ws://127.0.0.1:{server.port}/", backoff=fast()):
                pytest.fail("a 403 must not connect")
        assert info.value.status == 403 and gate.requests == 1


@async_test
async def test_reconnect_after_server_restart_delivers_every_message():
    """The server is stopped (closing every connection) and started again on the
    same port, twice; the client reconnects each time and sends the rest."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    received: list[str] = []

    async def collect(ws):
        async for message in ws:
            received.append(message)
            await ws.send(f"ack {message}")

    restarts = 0
    server = await fastws.serve(collect, "127.0.0.1", port)
    client = fastws.connect(f"ws://127.0.0.1:{port}/", backoff=fast())
    pending = [str(n) for n in range(30)]
    async for ws in client:
        try:
            while pending:
                await ws.send(pending[0])
                assert await ws.recv() == f"ack {pending[0]}"
                pending.pop(0)  # acknowledged: the server has it
                if len(pending) in (20, 10) and restarts < 2:
                    restarts += 1
                    await server.close()  # the client sees 1001 and reconnects
                    server = await fastws.serve(collect, "127.0.0.1", port)
        except ConnectionClosed:
            continue
        break
    await server.close()
    assert received == [str(n) for n in range(30)]
    assert restarts == 2 and isinstance(client.last_error, ConnectionClosed) and client.last_error.code == 1001


@async_test
async def test_reconnect_waits_while_the_server_is_down(caplog):
    """Connection refused while nothing listens: every retry is logged with a
    positive delay (no busy loop), then the client connects once it is back."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    caplog.set_level(logging.INFO, logger="fastws.client")
    client = fastws.connect(f"ws://127.0.0.1:{port}/", backoff=fast())
    iterator = client.__aiter__()
    attempt = asyncio.ensure_future(iterator.__anext__())
    while sum("retrying in" in r.getMessage() for r in caplog.records) < 3:
        await asyncio.sleep(0.005)
    assert isinstance(client.last_error, ConnectionRefusedError)
    async with fastws.serve(echo, "127.0.0.1", port):
        ws = await asyncio.wait_for(attempt, 10)
        await ws.send("back")
        assert await ws.recv() == "back"
        await iterator.aclose()
    delays = [
        float(r.getMessage().rsplit(" ", 1)[1].rstrip("s")) for r in caplog.records if "retrying in" in r.getMessage()
    ]
    assert all(0.005 <= delay <= 0.05 for delay in delays)


@async_test
async def test_reconnect_backs_off_when_connections_drop_at_once(caplog):
    """A server that accepts and closes at once: the client must wait between
    connections (they did not last ``stable_after``), not spin."""

    async def drop(ws):
        await ws.close(1011, "go away")

    caplog.set_level(logging.INFO, logger="fastws.client")
    async with fastws.serve(drop, "127.0.0.1", 0) as server:
        client = fastws.connect(f"ws://127.0.0.1:{server.port}/", backoff=fast())
        count = 0
        async for ws in client:
            await ws.wait_closed()
            count += 1
            if count == 4:
                break
    waits = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(waits) == 3 and all("closed 1011 go away" in w for w in waits)
    assert client.backoff.failures == 3


def test_reconnect_refuses_a_given_socket():
    async def main():
        with socket.socket() as s:
            with pytest.raises(TypeError, match="cannot reconnect"):
                async for _ in fastws.connect("ws://h/", sock=s):
                    pass

    asyncio.run(main())


# -- Unix sockets ---------------------------------------------------------------------------


@async_test
async def test_unix_connect_round_trip():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(path)
        async with fastws.serve(echo, sock=listening):
            async with unix_connect(path) as ws:
                await ws.send(b"unix")
                assert await ws.recv() == b"unix"
                assert ws.handshake.request.headers["Host"] == "localhost"
            with pytest.raises(TypeError, match="'proxy'"):
                unix_connect(path, proxy="http://p:1")
        with pytest.raises(FileNotFoundError, match="no Unix socket at '.*missing.sock'"):
            await unix_connect(os.path.join(tmp, "missing.sock"))


# -- websockets habits ------------------------------------------------------------------------


@async_test
async def test_websockets_habits_work():
    """compression="deflate", ``async with ws:``, Server.is_serving()/wait_closed(), and
    the hint for websockets' process_exception."""
    async with fastws.serve(echo, "127.0.0.1", 0, compression="deflate") as server:
        assert server.is_serving()
        ws = await fastws.connect(f"ws://127.0.0.1:{server.port}/", compression="deflate")
        async with ws:
            assert ws.extension is not None  # permessage-deflate negotiated
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
        assert ws.closed and ws.close_code == 1000
        with pytest.raises(ZeroDivisionError):
            async with await fastws.connect(f"ws://127.0.0.1:{server.port}/") as failing:
                raise ZeroDivisionError("the block failed")
        assert failing.close_code == 1011
        closing = asyncio.ensure_future(server.close())
        await server.wait_closed()
        await closing
        assert not server.is_serving()
    with pytest.raises(TypeError, match="fastws calls it backoff= and fastws.policy.retryable"):
        fastws.connect("ws://h/", process_exception=None)  # type: ignore[call-arg]


@async_test
async def test_unix_peers_are_logged_by_path(caplog):
    caplog.set_level(logging.INFO, logger="fastws.server")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        async with fastws.unix_serve(echo, path):
            async with unix_connect(path) as ws:
                assert ws.peer == f"unix:{path}"
                await ws.send("x")
                await ws.recv()
    assert any(r.getMessage() == f"unix:{path} connected /" for r in caplog.records)
