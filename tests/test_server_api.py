"""The server API websockets users rely on: unix_serve, server_header,
process_response, Server.close(code, reason), logger=, connections in their
handshake kept out of ``server.connections``, and basic_auth."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import urllib.parse

import pytest

from fastws.asyncio.client import connect
from fastws.asyncio.server import SERVER_HEADER, ServerConnection, serve, unix_serve
from fastws.auth import basic_auth, basic_challenge, parse_basic_credentials
from fastws.exceptions import ConnectionClosed, InvalidStatus
from fastws.handshake import Headers, Response

from .support.asyncio import async_test, until, upgrade_request

WAIT = 10.0  # seconds for any one step


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def uri(server, path="/"):
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh TCP connection; return what comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()


async def raw_head(port: int, request: bytes) -> bytes:
    """The response head to ``request`` (for a 101, which keeps the connection open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    finally:
        writer.close()


def header_lines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]


def unix_client_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(path)
    sock.setblocking(False)
    return sock


# -- unix_serve --------------------------------------------------------------------------


@async_test
async def test_unix_serve_round_trip_sockets_and_the_file_removed_on_close(tmp_path):
    path = str(tmp_path / "ws.sock")
    async with unix_serve(echo, path) as server:
        assert os.path.exists(path)
        (listening,) = server.sockets
        assert listening.family == socket.AF_UNIX and listening.getsockname() == path
        with pytest.raises(RuntimeError, match="Unix socket"):
            _ = server.port
        async with connect("ws://localhost/chat", sock=unix_client_socket(path)) as ws:
            await ws.send("over a Unix socket")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "over a Unix socket"
            (accepted,) = server.connections
            assert accepted.path == "/chat" and accepted.local_address == path
    assert not os.path.exists(path)


@async_test
async def test_unix_serve_is_awaitable_takes_a_bound_socket_and_serve_keywords(tmp_path):
    path = str(tmp_path / "bound.sock")
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(path)
    server = await unix_serve(echo, sock=bound, max_message_size=4, compression=None)
    try:
        async with connect("ws://localhost/", sock=unix_client_socket(path)) as ws:
            await ws.send("1234")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "1234"
            await ws.send("12345")  # over max_message_size: the server closes with 1009
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert info.value.code == 1009
    finally:
        await server.close()
    bound.close()


@async_test
async def test_unix_serve_in_a_missing_directory_says_so(tmp_path):
    path = str(tmp_path / "no-such-dir" / "ws.sock")
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        async with unix_serve(echo, path):
            pass
    assert str(tmp_path / "no-such-dir") in str(info.value)


def test_unix_serve_refuses_tcp_keywords_and_needs_a_path_or_a_socket():
    with pytest.raises(TypeError, match="'port'"):
        unix_serve(echo, "/tmp/x.sock", port=80)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="path or sock"):
        unix_serve(echo)
    with pytest.raises(TypeError, match="unix_serve\\(\\) got an unexpected keyword argument 'max_size'"):
        unix_serve(echo, "/tmp/x.sock", max_size=10)  # type: ignore[call-arg]


# -- server_header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, expected",
    [({}, SERVER_HEADER.encode()), ({"server_header": "acme/2"}, b"acme/2"), ({"server_header": None}, None)],
)
@async_test
async def test_server_header_on_the_101_and_on_refusals(options, expected):
    assert SERVER_HEADER.startswith("fastws/")

    shared = Response(404, body=b"nothing here")  # one object for every request: never edited by the server

    def hook(ws, request):
        return shared if request.path == "/missing" else None

    async with serve(echo, process_request=hook, **options) as server:
        for head in (
            await raw_head(server.port, upgrade_request()),
            await raw_exchange(server.port, upgrade_request(version="8")),  # 426, fastws's own refusal
            await raw_exchange(server.port, upgrade_request("/missing")),  # process_request's answer
        ):
            servers = [line for line in header_lines(head) if line.lower().startswith(b"server:")]
            assert servers == ([] if expected is None else [b"Server: " + expected]), head
    assert "Server" not in shared.headers


# -- process_response --------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
@async_test
async def test_process_response_edits_the_101_and_replaces_a_refusal(is_async):
    seen = []

    def edit(ws, request, response):
        seen.append((request.path, response.status))
        if response.status == 101:
            response.headers.add("X-Trace", "abc")
            return None
        if response.status == 403:
            return Response(451, Headers([("X-Why", "legal")]), b"unavailable")
        return None

    async def async_edit(ws, request, response):
        await asyncio.sleep(0)
        return edit(ws, request, response)

    def forbid(ws, request):
        return Response(403, body=b"no") if request.path == "/forbidden" else None

    async with serve(echo, process_request=forbid, process_response=async_edit if is_async else edit) as server:
        head = await raw_head(server.port, upgrade_request("/ok"))
        assert head.startswith(b"HTTP/1.1 101 ") and b"\r\nX-Trace: abc\r\n" in head
        reply = await raw_exchange(server.port, upgrade_request("/forbidden"))
        assert reply.startswith(b"HTTP/1.1 451 ") and b"X-Why: legal" in reply and reply.endswith(b"unavailable")
        reply = await raw_exchange(server.port, upgrade_request("/old", version="8"))  # a refusal passes too
        assert reply.startswith(b"HTTP/1.1 426 ")
        async with connect(uri(server, "/client")) as ws:  # an edited 101 still opens the connection
            await ws.send("x")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "x"
    assert seen == [("/ok", 101), ("/forbidden", 403), ("/old", 426), ("/client", 101)]


@pytest.mark.parametrize("is_async", [False, True])
@async_test
async def test_failing_process_response_answers_a_bare_500_and_logs(is_async, caplog):
    def fail(ws, request, response):
        raise KeyError("bug in the hook")

    async def async_fail(ws, request, response):
        await asyncio.sleep(0)
        fail(ws, request, response)

    async with serve(echo, process_response=async_fail if is_async else fail) as server:
        reply = await raw_exchange(server.port, upgrade_request())
        assert reply.startswith(b"HTTP/1.1 500 ") and b"bug in the hook" not in reply
        assert not server.connections
    assert "process_response failed" in caplog.text and "bug in the hook" in caplog.text


@async_test
async def test_process_response_sees_the_500_of_a_failing_process_request(caplog):
    seen = []

    def fail(ws, request):
        raise KeyError("bug")

    def record(ws, request, response):
        seen.append(response.status)
        response.headers.add("X-Seen", "yes")

    async with serve(echo, process_request=fail, process_response=record) as server:
        reply = await raw_exchange(server.port, upgrade_request())
    assert reply.startswith(b"HTTP/1.1 500 ") and b"X-Seen: yes" in reply and seen == [500]
    assert "process_request failed" in caplog.text


@async_test
async def test_a_hook_that_returns_no_response_or_a_101_of_its_own_answers_500(caplog):
    def bad_request_hook(ws, request):
        return Response(101) if request.path == "/101" else None

    def bad_response_hook(ws, request, response):
        return "not a response" if request.path == "/str" else None

    async with serve(echo, process_request=bad_request_hook, process_response=bad_response_hook) as server:
        for path in ("/101", "/str"):
            reply = await raw_exchange(server.port, upgrade_request(path))
            assert reply.startswith(b"HTTP/1.1 500 "), reply
    assert "answered 101 itself" in caplog.text and "returned str" in caplog.text


# -- Server.close(code, reason) ----------------------------------------------------------


@async_test
async def test_server_close_with_a_code_and_reason():
    ready = asyncio.Event()

    async def handler(ws):
        ready.set()
        await echo(ws)

    server = await serve(handler)
    async with connect(uri(server)) as ws:
        await asyncio.wait_for(ready.wait(), WAIT)
        with pytest.raises(ValueError):
            await server.close(code=1005)  # may not be sent: refused before anything closes
        assert ws.open
        await asyncio.wait_for(server.close(code=4000, reason="bye"), WAIT)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert (info.value.code, info.value.reason) == (4000, "bye")


@async_test
async def test_server_close_defaults_to_1001():
    async with serve(echo) as server:
        ws = await connect(uri(server))
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), WAIT)
    assert info.value.code == 1001


# -- logger= -----------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["name", "logger"])
@async_test
async def test_logger_takes_a_name_or_a_logger_for_the_server_and_its_connections(given, caplog):
    name = f"test.server_api.{given}"
    caplog.set_level(logging.DEBUG, logger=name)

    async def failing(ws):
        assert ws.logger is logging.getLogger(name)
        raise RuntimeError("handler bug")

    chosen = name if given == "name" else logging.getLogger(name)
    async with serve(failing, logger=chosen) as server:
        assert server.logger is logging.getLogger(name)
        async with connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), WAIT)
    ours = [record.getMessage() for record in caplog.records if record.name == name]
    assert any("connected /" in message for message in ours), ours
    assert any("connection handler failed" in message for message in ours), ours
    assert any("server closing" in message for message in ours), ours
    assert not [record for record in caplog.records if record.name.startswith("fastws")]


@async_test
async def test_connections_log_to_fastws_server_by_default(caplog):
    caplog.set_level(logging.INFO, logger="fastws")
    async with serve(echo) as server, connect(uri(server)) as ws:
        assert ws is not None
        (accepted,) = server.connections
        assert accepted.logger is server.logger is logging.getLogger("fastws.server")
        assert "logger" not in vars(accepted)  # a property: nothing stored per connection


# -- connections in their handshake --------------------------------------------------------


@async_test
async def test_connections_in_their_handshake_are_not_counted_but_refused_by_close():
    entered = asyncio.Event()
    never = asyncio.Event()
    opened = []

    async def slow_hook(ws, request):
        if request.path == "/slow":
            entered.set()
            await never.wait()  # until Server.close() cancels it
        return None

    async def handler(ws):
        opened.append(ws in ws.server.connections)
        await echo(ws)

    server = await serve(handler, process_request=slow_hook)
    try:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
        slow_writer.write(upgrade_request("/slow"))
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.wait_for(entered.wait(), WAIT)
        ws = await connect(uri(server))
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "x"
        assert opened == [True]
        await until(lambda: len(server._handshaking) == 2)  # the accepted TCP connections
        (only,) = server.connections
        assert only.open
    finally:
        await asyncio.wait_for(server.close(), WAIT)
    for reader in (slow_reader, silent_reader):
        reply = await asyncio.wait_for(reader.read(), WAIT)
        assert reply.startswith(b"HTTP/1.1 503 "), reply
    slow_writer.close()
    silent_writer.close()
    assert not server.connections and not server._handshaking
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), WAIT)
    assert info.value.code == 1001


# -- basic_auth ----------------------------------------------------------------------------


def authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def whoami(ws):
    await ws.send(ws.username)
    await ws.wait_closed()


CREDENTIALS = {"alice": "s3cret", "zoë": "pässwörd€"}


@async_test
async def test_basic_auth_without_credentials_is_401_with_the_challenge():
    async with serve(whoami, process_request=basic_auth("my app", CREDENTIALS)) as server:
        reply = await raw_exchange(server.port, upgrade_request())
        assert reply.startswith(b"HTTP/1.1 401 ")
        assert b'\r\nWWW-Authenticate: Basic realm="my app", charset="UTF-8"\r\n' in reply
        assert reply.endswith(b"Missing credentials\n")


@pytest.mark.parametrize(
    "value, body",
    [
        (authorization("alice", "wrong"), b"Invalid credentials\n"),
        (authorization("mallory", "s3cret"), b"Invalid credentials\n"),
        (authorization("alice", "s3cre"), b"Invalid credentials\n"),
        ("Basic !!!notbase64", b"Malformed credentials\n"),
        ("Basic " + base64.b64encode(b"no colon").decode(), b"Malformed credentials\n"),
        ("Basic " + base64.b64encode(b"alice:\xff").decode(), b"Malformed credentials\n"),  # not UTF-8
        ("Bearer " + base64.b64encode(b"alice:s3cret").decode(), b"Malformed credentials\n"),
    ],
)
@async_test
async def test_basic_auth_refuses_wrong_or_malformed_credentials(value, body):
    async with serve(whoami, process_request=basic_auth("my app", CREDENTIALS)) as server:
        reply = await raw_exchange(server.port, upgrade_request("/", f"Authorization: {value}"))
        assert reply.startswith(b"HTTP/1.1 401 ") and b"WWW-Authenticate: Basic " in reply
        assert reply.endswith(body), reply


@pytest.mark.parametrize("check", ["credentials", "sync", "async"])
@async_test
async def test_basic_auth_accepts_right_credentials_and_sets_username(check):
    calls = []

    def sync_check(username, password):
        calls.append(username)
        return CREDENTIALS.get(username) == password

    async def async_check(username, password):
        await asyncio.sleep(0)
        return sync_check(username, password)

    if check == "credentials":
        hook = basic_auth("my app", CREDENTIALS)
    else:
        hook = basic_auth("my app", check_credentials=sync_check if check == "sync" else async_check)
    async with serve(whoami, process_request=hook) as server:
        async with connect(f"ws://alice:s3cret@127.0.0.1:{server.port}/") as ws:  # the client sends Basic auth
            assert await asyncio.wait_for(ws.recv(), WAIT) == "alice"
        user, password = (urllib.parse.quote(part) for part in ("zoë", "pässwörd€"))
        async with connect(f"ws://{user}:{password}@127.0.0.1:{server.port}/") as ws:
            assert await asyncio.wait_for(ws.recv(), WAIT) == "zoë"
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://alice:nope@127.0.0.1:{server.port}/")
        assert info.value.status == 401
    assert calls == ([] if check == "credentials" else ["alice", "zoë", "alice"])


@async_test
async def test_basic_auth_composes_with_another_process_request():
    auth = basic_auth("my app", [("alice", "s3cret")])

    def process_request(ws, request):
        if request.path == "/health":
            return Response(200, body=b"ok")  # no credentials needed
        denied = auth(ws, request)
        if denied is not None:
            return denied
        return Response(403, body=b"admins only") if request.path == "/admin" else None

    async with serve(whoami, process_request=process_request) as server:
        assert (await raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"ok")
        assert (await raw_exchange(server.port, upgrade_request("/admin"))).startswith(b"HTTP/1.1 401 ")
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://alice:s3cret@127.0.0.1:{server.port}/admin")
        assert info.value.status == 403
        async with connect(f"ws://alice:s3cret@127.0.0.1:{server.port}/") as ws:
            assert await asyncio.wait_for(ws.recv(), WAIT) == "alice"


def test_a_connection_has_no_username_until_authenticated():
    assert ServerConnection.username is None


def test_parse_basic_credentials():
    assert parse_basic_credentials(authorization("a", "b:c")) == ("a", "b:c")  # the user-id ends at the first colon
    assert parse_basic_credentials("bAsIc " + authorization("a", "")[6:]) == ("a", "")  # the scheme is case-insensitive
    assert parse_basic_credentials(authorization("", "x")) == ("", "x")
    decomposed = "zoe\u0308"  # "zoë" with a combining diaeresis: NFC makes it one code point
    assert parse_basic_credentials(authorization(decomposed, "p")) == ("zoë", "p")
    assert parse_basic_credentials(authorization("a\x01", "b")) is None  # no control characters (RFC 7617 §2)
    assert parse_basic_credentials("Basic") is None
    assert parse_basic_credentials("Basic YQ") is None  # unpadded base64
    assert parse_basic_credentials("Digest " + authorization("a", "b")[6:]) is None


def test_basic_auth_arguments():
    with pytest.raises(TypeError, match="either"):
        basic_auth("r")
    with pytest.raises(TypeError, match="either"):
        basic_auth("r", {"a": "b"}, check_credentials=lambda u, p: True)
    with pytest.raises(ValueError, match="realm"):
        basic_auth("r\n", {"a": "b"})
    with pytest.raises(ValueError, match="twice"):
        basic_auth("r", [("a", "b"), ("a", "c")])
    with pytest.raises(ValueError, match="colon"):
        basic_auth("r", [("a:b", "c")])
    with pytest.raises(TypeError, match="pairs"):
        basic_auth("r", ["ab"])  # type: ignore[list-item]
    assert basic_challenge('say "hi" \\o/') == 'Basic realm="say \\"hi\\" \\\\o/", charset="UTF-8"'


def test_basic_auth_takes_one_pair_like_websockets():
    class Connection:
        username = None

    hook = basic_auth("r", ("alice", "s3cret"))
    from fastws.handshake import Request

    connection = Connection()
    request = Request("GET", "/", Headers([("Authorization", authorization("alice", "s3cret"))]))
    assert hook(connection, request) is None and connection.username == "alice"
