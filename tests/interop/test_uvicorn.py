"""fastws as uvicorn's WebSocket protocol, side by side with uvicorn's own classes.

Every scenario runs a real uvicorn server (in the test's event loop) once per
``--ws`` implementation: fastws, websockets-sansio and wsproto. The same ASGI
app records the events it receives, the same client records what it sees, and
the results must match. fastws runs on both codec backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import pathlib
import subprocess
import sys

import h11
import pytest
import uvicorn
import uvicorn.server
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect, WebSocketException
from websockets.asyncio.client import connect as ws_connect

import fastws
from fastws.uvicorn import WebSocketProtocol

from ..support.asyncio import RawPeer, async_test, until, upgrade_request
from ..support.codecs import use_codec
from ..support.frames import client_frame

IMPLEMENTATIONS = {"fastws": WebSocketProtocol, "websockets-sansio": "websockets-sansio", "wsproto": "wsproto"}
TIMEOUT = 10


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Run fastws's connections of the test on one codec backend."""
    use_codec(monkeypatch, codec)
    return codec


@contextlib.asynccontextmanager
async def uvicorn_server(app, ws, **options):
    """A uvicorn server on a free port in this event loop; yields (server, port)."""
    options.setdefault("lifespan", "off")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws=ws, log_config=None, **options)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        await until(lambda: server.started or task.done())
        if task.done():
            task.result()
            raise AssertionError("uvicorn exited before starting")
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


# The built-in classes do not depend on fastws's codec backend: their results are
# computed once per test (and parameters) and reused for the other backend.
REFERENCE_RESULTS: dict = {}
CURRENT_TEST: list = [None]


@pytest.fixture(autouse=True)
def current_test(request):
    params = getattr(request.node, "callspec", None)
    params = {} if params is None else {key: repr(value) for key, value in params.params.items() if key != "codec"}
    CURRENT_TEST[0] = (request.node.originalname, tuple(sorted(params.items())))


async def each_implementation(scenario, only=None, **options):
    """Run ``scenario(port, events)`` against each implementation; return {name: result}."""
    results = {}
    for name, ws in IMPLEMENTATIONS.items():
        if only is not None and name not in only:
            continue
        key = (CURRENT_TEST[0], name)
        if name != "fastws" and key in REFERENCE_RESULTS:
            results[name] = REFERENCE_RESULTS[key]
            continue
        events: list = []
        async with uvicorn_server(make_app(events), ws, **options) as (_, port):
            results[name] = await asyncio.wait_for(scenario(port, events), TIMEOUT)
        if name != "fastws":
            REFERENCE_RESULTS[key] = results[name]
    return results


def assert_same(results, expected=None):
    """Every implementation saw the same thing (and that is ``expected`` if given)."""
    reference = results["websockets-sansio"] if expected is None else expected
    for name, result in results.items():
        assert result == reference, f"{name}: {result!r} != {reference!r}"


def make_app(events: list):
    """An ASGI app whose path picks its behaviour; it records every event it receives."""

    async def wait_disconnected():
        """Until the client's TCP connection is gone (the app is told by send() failing)."""
        await until(lambda: events and events[-1] == "tcp closed")
        events.pop()

    async def receive_logged(receive):
        event = await receive()
        events.append(event)
        return event

    async def app(scope, receive, send):
        assert scope["type"] == "websocket"
        path = scope["path"].removeprefix(scope["root_path"])
        await receive_logged(receive)  # websocket.connect
        if path == "/echo":
            events.append(
                {
                    "path": scope["path"],
                    "raw_path": scope["raw_path"],
                    "root_path": scope["root_path"],
                    "query_string": scope["query_string"],
                    "subprotocols": scope["subprotocols"],
                    "x-custom": [value for name, value in scope["headers"] if name == b"x-custom"],
                    "client": scope["client"][0],
                    "server": scope["server"][0],
                    "scheme": scope["scheme"],
                    "extensions": scope["extensions"],
                }
            )
            subprotocol = "v2" if "v2" in scope["subprotocols"] else None
            await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-extra", b"yes")]})
            while True:
                event = await receive_logged(receive)
                if event["type"] == "websocket.disconnect":
                    return
                if event.get("text") is not None:
                    await send({"type": "websocket.send", "text": event["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": event["bytes"]})
        elif path == "/close":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "before close"})
            await send({"type": "websocket.close", "code": 4000, "reason": "custom reason"})
            await receive_logged(receive)
            with contextlib.suppress(RuntimeError) as error:
                await send({"type": "websocket.send", "text": "after close"})
            events.append("send after close: RuntimeError" if error is None else "no error")
        elif path == "/deny":
            await send({"type": "websocket.close"})
            await receive_logged(receive)
        elif path == "/teapot":
            headers = [(b"content-type", b"text/plain"), (b"x-reason", b"short and stout")]
            await send({"type": "websocket.http.response.start", "status": 418, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": b"I'm a ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"teapot"})
            await receive_logged(receive)
        elif path == "/raise-before-accept":
            raise RuntimeError("app failed before accept")
        elif path == "/return-before-accept":
            return
        elif path == "/raise-after-accept":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "about to fail"})
            raise RuntimeError("app failed after accept")
        elif path == "/send-after-disconnect":
            await send({"type": "websocket.accept"})
            await receive_logged(receive)  # the client's close
            await wait_disconnected()
            try:
                await send({"type": "websocket.send", "text": "too late"})
            except OSError as exc:  # uvicorn's ClientDisconnected
                events.append(type(exc).__name__)
        elif path.startswith("/script/"):
            return await run_script(SCRIPTS[path.removeprefix("/script/")], events, receive, send)
        elif path.startswith("/misuse/"):
            misuse = {
                "send-before-accept": {"type": "websocket.send", "text": "x"},
                "body-before-start": {"type": "websocket.http.response.body", "body": b""},
                "bad-status": {"type": "websocket.http.response.start", "status": 99, "headers": []},
            }[path.removeprefix("/misuse/")]
            try:
                await send(misuse)
            except RuntimeError as exc:
                events.append(str(exc))
                raise
        elif path == "/wait":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "ready"})
            await receive_logged(receive)
        elif path == "/slow-reader":
            await send({"type": "websocket.accept"})
            received = []
            while len(received) < 200:
                event = await receive_logged(receive)
                received.append(event.get("text"))
                await asyncio.sleep(0)
            await send({"type": "websocket.send", "text": str(received == [str(i) for i in range(200)])})
            await receive_logged(receive)
        else:
            raise AssertionError(path)

    return app


def parse_http_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and de-chunked body of a raw HTTP response."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(data)
    client.receive_data(b"")
    status, headers, body = 0, {}, b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {name.decode(): value.decode() for name, value in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.NEED_DATA:
            return status, headers, body


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def accepted_raw_peer(port: int) -> RawPeer:
    """A raw client on ``/wait``, past the 101 answer and the app's "ready" message."""
    peer = await RawPeer.open(port, handshake=False)
    peer.writer.write(upgrade_request("/wait"))
    assert (await peer.read_head()).startswith(b"HTTP/1.1 101")
    assert await peer.read_frame() == (1, b"ready")
    return peer


async def events_settled(events: list, count: int) -> list:
    """The app's events once there are ``count`` of them (bounded wait)."""
    await until(lambda: len(events) >= count)
    return events


def load_example(name: str):
    """Import examples/<name>.py by path (examples/ is not a package)."""
    path = pathlib.Path(__file__).parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fastws_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the ASGI events, side by side ------------------------------------------------


@async_test
async def test_scope_accept_receive_send_and_client_close():
    async def scenario(port, events):
        uri = f"ws://127.0.0.1:{port}/ech%6F?q=1&r=%C3%A9"
        async with ws_connect(uri, subprotocols=["v1", "v2"], additional_headers={"X-Custom": "abc"}) as ws:
            seen = [ws.subprotocol, ws.response.headers.get("x-extra")]
            await ws.send("héllo")
            seen.append(await ws.recv())
            await ws.send(b"\x00\xff" * 1000)
            seen.append(await ws.recv())
            await ws.close(1000, "bye")
        return seen, await events_settled(events, 5)

    results = await each_implementation(scenario, root_path="/api")
    connect, scope, text, binary, disconnect = results["fastws"][1]
    assert scope == {
        "path": "/api/echo",
        "raw_path": b"/api/ech%6F",
        "root_path": "/api",
        "query_string": b"q=1&r=%C3%A9",
        "subprotocols": ["v1", "v2"],
        "x-custom": [b"abc"],
        "client": "127.0.0.1",
        "server": "127.0.0.1",
        "scheme": "ws",
        "extensions": {"websocket.http.response": {}},
    }
    assert results["fastws"][0] == ["v2", "yes", "héllo", b"\x00\xff" * 1000]
    assert [connect, text, binary, disconnect] == [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "héllo"},
        {"type": "websocket.receive", "bytes": b"\x00\xff" * 1000},
        {"type": "websocket.disconnect", "code": 1000, "reason": "bye"},
    ]
    assert_same(results)


@async_test
async def test_fastws_client_through_uvicorn():
    async def scenario(port, events):
        async with fastws.connect(f"ws://127.0.0.1:{port}/echo", subprotocols=["v2"]) as ws:
            await ws.send("x" * 100000)
            echoed = await ws.recv()
            await ws.send(b"y")
            echoed_binary = await ws.recv()
            latency = await ws.ping()
        return [ws.subprotocol, echoed == "x" * 100000, echoed_binary, latency >= 0], (await events_settled(events, 5))[
            -1
        ]

    assert_same(await each_implementation(scenario))


@async_test
async def test_server_close_with_code_and_reason():
    async def scenario(port, events):
        async with ws_connect(f"ws://127.0.0.1:{port}/close") as ws:
            first = await ws.recv()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        rcvd = closed.value.rcvd
        return first, rcvd.code, rcvd.reason, await events_settled(events, 3)

    assert_same(
        await each_implementation(scenario),
        (
            "before close",
            4000,
            "custom reason",
            [
                {"type": "websocket.connect"},
                {"type": "websocket.disconnect", "code": 4000, "reason": "custom reason"},
                "send after close: RuntimeError",
            ],
        ),
    )


@async_test
async def test_close_before_accept_is_403():
    async def scenario(port, events):
        status, _, _ = parse_http_response(await raw_exchange(port, upgrade_request("/deny")))
        return status, await events_settled(events, 2)

    assert_same(
        await each_implementation(scenario),
        (403, [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1006}]),
    )


@async_test
async def test_denial_response_extension():
    async def scenario(port, events):
        status, headers, body = parse_http_response(await raw_exchange(port, upgrade_request("/teapot")))
        return status, headers["x-reason"], headers["content-type"], body, await events_settled(events, 2)

    assert_same(
        await each_implementation(scenario),
        (
            418,
            "short and stout",
            "text/plain",
            b"I'm a teapot",
            [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1006}],
        ),
    )


@pytest.mark.parametrize("path", ["/raise-before-accept", "/return-before-accept"])
@async_test
async def test_app_failing_before_accept_is_500(path):
    async def scenario(port, events):
        status, _, body = parse_http_response(await raw_exchange(port, upgrade_request(path)))
        return status, body.strip()

    assert_same(await each_implementation(scenario), (500, b"Internal Server Error"))


@async_test
async def test_app_raising_after_accept_drops_the_connection():
    async def scenario(port, events):
        async with ws_connect(f"ws://127.0.0.1:{port}/raise-after-accept") as ws:
            first = await ws.recv()
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
        return first, closed.value.rcvd

    assert_same(await each_implementation(scenario), ("about to fail", None))  # 1006: no close frame


@async_test
async def test_client_dropping_tcp_is_disconnect_1005():
    async def scenario(port, events):
        peer = await accepted_raw_peer(port)
        peer.writer.transport.abort()
        return await events_settled(events, 2)

    assert_same(
        await each_implementation(scenario),
        [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1005}],
    )


@async_test
async def test_client_close_without_status_code():
    async def scenario(port, events):
        peer = await accepted_raw_peer(port)
        peer.send_frame(8, b"")
        reply = await peer.read_frame()
        tail = await peer.read_until_eof()
        peer.close()
        return reply, tail, (await events_settled(events, 2))[1]

    assert_same(
        await each_implementation(scenario),
        ((8, b""), b"", {"type": "websocket.disconnect", "code": 1005, "reason": ""}),
    )


@async_test
async def test_message_over_ws_max_size_is_1009():
    async def scenario(port, events):
        async with ws_connect(f"ws://127.0.0.1:{port}/echo", max_size=None) as ws:
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
            await ws.send("x" * 1001)
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
        disconnect = (await events_settled(events, 4))[3]
        return closed.value.rcvd.code, disconnect["type"], disconnect["code"]

    assert_same(await each_implementation(scenario, ws_max_size=1000), (1009, "websocket.disconnect", 1009))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x02hi", 1002),  # unmasked client frame (RFC 6455 §5.1)
        (client_frame(1, b"\xff\xfe"), 1007),  # invalid UTF-8 in a text message
        (client_frame(9, b"x" * 126), 1002),  # control frame over 125 bytes
    ],
)
@async_test
async def test_protocol_errors_close_with_the_right_code(frame, code):
    async def scenario(port, events):
        peer = await accepted_raw_peer(port)
        peer.writer.write(frame)
        try:
            opcode, payload = await peer.read_frame()
        except asyncio.IncompleteReadError:
            return "dropped without a close frame", (await events_settled(events, 2))[1]
        await peer.read_until_eof()
        peer.close()
        return (opcode, int.from_bytes(payload[:2], "big")), (await events_settled(events, 2))[1]

    results = await each_implementation(scenario)
    # The app sees the same disconnect code everywhere (reasons are each library's wording).
    assert {name: disconnect["code"] for name, (_, disconnect) in results.items()} == dict.fromkeys(results, code)
    # The client gets the close frame from fastws and websockets-sansio; wsproto's
    # close() right after it resets the connection, which can discard the frame
    # unread, so that one is not compared.
    assert results["fastws"][0] == results["websockets-sansio"][0] == (8, code)


@async_test
async def test_ping_is_answered_with_its_payload():
    async def scenario(port, events):
        peer = await accepted_raw_peer(port)
        peer.send_frame(9, b"are you there")
        pong = await peer.read_frame()
        peer.send_close(1000)
        await peer.read_frame()
        peer.close()
        return pong

    assert_same(await each_implementation(scenario), (10, b"are you there"))


@async_test
async def test_keepalive_pings_and_drops_a_silent_client():
    async def scenario(port, events):
        peer = await accepted_raw_peer(port)
        ping_opcode, payload = await peer.read_frame()
        close_opcode, close = await peer.read_frame()
        await peer.read_until_eof()
        peer.close()
        return ping_opcode, len(payload), close_opcode, int.from_bytes(close[:2], "big"), close[2:]

    assert_same(
        await each_implementation(scenario, ws_ping_interval=0.05, ws_ping_timeout=0.2),
        (9, 4, 8, 1011, b"keepalive ping timeout"),
    )


@async_test
async def test_keepalive_keeps_an_answering_client():
    async def scenario(port, events):
        peer = await accepted_raw_peer(port)
        payloads = []
        while len(payloads) < 3:  # each pong is answered with the next ping
            opcode, payload = await peer.read_frame()
            assert opcode == 9
            payloads.append(payload)
            peer.send_frame(10, payload)
        peer.send_close(1000)
        close = await peer.read_frame()
        peer.close()
        return len(set(payloads)), close, (await events_settled(events, 2))[1]

    assert_same(
        await each_implementation(scenario, ws_ping_interval=0.05, ws_ping_timeout=2.0),
        (3, (8, b"\x03\xe8"), {"type": "websocket.disconnect", "code": 1000, "reason": ""}),
    )


@pytest.mark.parametrize("deflate", [True, False])
@async_test
async def test_per_message_deflate_setting(deflate):
    async def scenario(port, events):
        async with ws_connect(f"ws://127.0.0.1:{port}/echo") as ws:
            text = "compress me " * 10000
            await ws.send(text)
            echoed = await ws.recv()
            offered = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        return echoed == text, offered.startswith("permessage-deflate")

    assert_same(await each_implementation(scenario, ws_per_message_deflate=deflate), (True, deflate))


@async_test
async def test_slow_app_gets_every_message_in_order():
    async def scenario(port, events):
        async with ws_connect(f"ws://127.0.0.1:{port}/slow-reader") as ws:
            for i in range(200):
                await ws.send(str(i))
            return await ws.recv()

    assert_same(await each_implementation(scenario, ws_max_queue=4), "True")


@async_test
async def test_graceful_shutdown_closes_with_1012():
    results = {}
    for name, ws in IMPLEMENTATIONS.items():
        events: list = []
        async with uvicorn_server(make_app(events), ws) as (server, port):
            client = await ws_connect(f"ws://127.0.0.1:{port}/wait")
            assert await client.recv() == "ready"
            server.should_exit = True
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(client.recv(), TIMEOUT)
            await client.close()
        results[name] = closed.value.rcvd.code, await events_settled(events, 2)
    assert_same(results, (1012, [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1012}]))


@async_test
async def test_access_log_lines(caplog):
    caplog.set_level(logging.INFO, logger="uvicorn.error")

    async def scenario(port, events):
        caplog.clear()
        async with ws_connect(f"ws://127.0.0.1:{port}/echo?q=1"):
            pass
        await raw_exchange(port, upgrade_request("/deny"))
        await raw_exchange(port, upgrade_request("/teapot"))
        return sorted(
            record.getMessage().split(" - ", 1)[1] for record in caplog.records if "WebSocket" in record.getMessage()
        )

    assert_same(
        await each_implementation(scenario),
        ['"WebSocket /deny" 403', '"WebSocket /echo?q=1" [accepted]', '"WebSocket /teapot" 418'],
    )


@async_test
async def test_send_after_the_client_left_raises_client_disconnected():
    async def scenario(port, events):
        async with ws_connect(f"ws://127.0.0.1:{port}/send-after-disconnect") as ws:
            await ws.close()
        events.append("tcp closed")  # the client saw the server close TCP
        return await events_settled(events, 3)

    assert_same(
        await each_implementation(scenario),
        [
            {"type": "websocket.connect"},
            {"type": "websocket.disconnect", "code": 1000, "reason": ""},
            "ClientDisconnected",
        ],
    )


@pytest.mark.parametrize("misuse", ["send-before-accept", "body-before-start", "bad-status"])
@async_test
async def test_asgi_misuse_raises_in_the_app_and_answers_500(misuse):
    async def scenario(port, events):
        status, _, _ = parse_http_response(await raw_exchange(port, upgrade_request(f"/misuse/{misuse}")))
        return status, (await events_settled(events, 2))[1]

    results = await each_implementation(scenario)
    assert_same(results)
    assert results["fastws"][0] == 500


# -- ASGI event sequences, side by side ----------------------------------------------
#
# A script is what the app does, step by step; a client kind is what the client
# does. Every (script, client) pair runs on each implementation, and the app's
# record (what receive() returned, what each send() raised, how the app ended),
# what the client saw and the uvicorn.error log lines must match websockets-sansio's.

START_418 = {"type": "websocket.http.response.start", "status": 418, "headers": [(b"x-reason", b"teapot")]}
BODY = {"type": "websocket.http.response.body", "body": b"short and stout"}
PARTIAL_BODY = {"type": "websocket.http.response.body", "body": b"short and ", "more_body": True}
ACCEPT = {"type": "websocket.accept"}
CLOSE = {"type": "websocket.close"}
SEND = {"type": "websocket.send", "text": "hi"}
RECEIVE, RAISE = ("receive",), ("raise",)


def send_(message):
    return ("send", message)


SCRIPTS = {
    # The denial-response extension, used wrongly.
    "start-then-return": [send_(START_418)],
    "start-then-raise": [send_(START_418), RAISE],
    "partial-body-then-return": [send_(START_418), send_(PARTIAL_BODY)],
    "partial-body-then-raise": [send_(START_418), send_(PARTIAL_BODY), RAISE],
    "body-of-str": [send_(START_418), send_({**BODY, "body": "text"})],
    "body-of-none": [send_(START_418), send_({**BODY, "body": None})],
    "body-missing": [send_(START_418), send_({"type": "websocket.http.response.body"})],
    "accept-after-start": [send_(START_418), send_(ACCEPT)],
    "send-after-start": [send_(START_418), send_(SEND)],
    "close-after-start": [send_(START_418), send_(CLOSE)],
    "second-start": [send_(START_418), send_(START_418)],
    "status-99": [send_({**START_418, "status": 99})],
    "status-600": [send_({**START_418, "status": 600})],
    "status-of-str": [send_({**START_418, "status": "418"})],
    "status-missing": [send_({"type": "websocket.http.response.start", "headers": []})],
    "headers-missing": [send_({"type": "websocket.http.response.start", "status": 418}), send_(BODY)],
    "headers-of-str": [send_({**START_418, "headers": [("x-reason", "teapot")]}), send_(BODY)],
    "headers-of-none": [send_({**START_418, "headers": None}), send_(BODY)],
    "headers-of-triples": [send_({**START_418, "headers": [(b"x-a", b"b", b"c")]}), send_(BODY)],
    "body-after-the-last": [send_(START_418), send_(BODY), send_(BODY)],
    "send-after-the-last-body": [send_(START_418), send_(BODY), send_(SEND)],
    "receive-after-denial": [send_(START_418), send_(BODY), RECEIVE, RECEIVE],
    "receive-after-403": [send_(CLOSE), RECEIVE, RECEIVE],
    "send-after-403": [send_(CLOSE), send_(SEND)],
    # Errors at each step of an accepted connection.
    "raise-after-close": [send_(ACCEPT), send_(CLOSE), RAISE],
    "close-after-close": [send_(ACCEPT), send_(CLOSE), send_(CLOSE)],
    "accept-twice": [send_(ACCEPT), send_(ACCEPT)],
    "return-a-value": [send_(ACCEPT), send_(CLOSE), ("return", 42)],
    "accept-headers-of-str": [send_({**ACCEPT, "headers": [("x-a", "b")]})],
    "send-without-data": [send_(ACCEPT), send_({"type": "websocket.send"}), send_(CLOSE)],
    # The client leaves before the handshake completes ("lost": wait until the
    # client is gone, then receive the disconnect before going on).
    "lost-before-answer": [("wait", "client gone"), RECEIVE, send_(ACCEPT)],
    "lost-then-close": [("wait", "client gone"), RECEIVE, send_(CLOSE)],
    "lost-then-start": [("wait", "client gone"), RECEIVE, send_(START_418)],
    "lost-after-accept": [send_(ACCEPT), ("wait", "client gone"), RECEIVE, send_(SEND)],
    "lost-after-start": [send_(START_418), ("wait", "client gone"), RECEIVE, send_(BODY)],
    "lost-after-partial-body": [send_(START_418), send_(PARTIAL_BODY), ("wait", "client gone"), RECEIVE],
    # Headers that cannot be written (RFC 9110 §5.5: no CR, LF or NUL in a value; §5.1: a name is a token).
    "accept-header-crlf": [send_({**ACCEPT, "headers": [(b"x-bad", b"a\r\nx-injected: yes")]})],
    "accept-header-nul": [send_({**ACCEPT, "headers": [(b"x-bad", b"a\0b")]})],
    "accept-header-name": [send_({**ACCEPT, "headers": [(b"x bad", b"a")]})],
    "accept-subprotocol-crlf": [send_({**ACCEPT, "subprotocol": "v1\r\nx-injected: yes"})],
    "deny-header-crlf": [send_({**START_418, "headers": [(b"x-bad", b"a\r\nx-injected: yes")]}), send_(BODY)],
    "deny-header-name": [send_({**START_418, "headers": [(b"x bad", b"a")]}), send_(BODY)],
    # The app fails at each step (before an answer, after accept, a 403, a denial).
    "raise-after-accept": [send_(ACCEPT), send_(SEND), RAISE],
    "raise-after-403": [send_(CLOSE), RAISE],
    "raise-after-denial": [send_(START_418), send_(BODY), RAISE],
    "raise-before-answer": [RAISE],
    "return-before-answer": [],
    # The client closes TCP right after its request (before the app can answer).
    "lost-at-once": [RECEIVE, send_(ACCEPT)],
    # uvicorn shuts down (test_graceful_shutdown_at_each_step) while the app waits.
    "shutdown-before-answer": [("wait", "shut down"), send_(ACCEPT), RECEIVE],
    "shutdown-after-accept": [send_(ACCEPT), ("wait", "shut down"), RECEIVE, send_(SEND)],
    "shutdown-during-denial": [send_(START_418), ("wait", "shut down"), send_(BODY), RECEIVE],
    "shutdown-after-close": [send_(ACCEPT), send_(CLOSE), ("wait", "shut down"), RECEIVE],
    "shutdown-in-receive": [send_(ACCEPT), ("note", "waiting"), RECEIVE, send_(SEND), ("wait", "shut down")],
    "shutdown-in-receive-before-answer": [("note", "waiting"), RECEIVE, send_(ACCEPT)],
    # Close codes and reasons that cannot be sent (RFC 6455 §7.4, §5.5).
    "close-with-code-1006": [send_(ACCEPT), send_({**CLOSE, "code": 1006})],
    "close-with-long-reason": [send_(ACCEPT), send_({**CLOSE, "reason": "x" * 124})],
}
# How the client of each script behaves: "read" reads the answer until the
# server closes (answering a close frame); "drop" sends the request, then
# resets TCP once the app reaches its "wait" step.
CLIENTS = {name: "drop" if name.startswith("lost-") else "read" for name in SCRIPTS}
CLIENTS["lost-at-once"] = "drop at once"


async def run_script(script, events: list, receive, send):
    """Run the app's side of a script, recording what happens in ``events``."""
    events.append("connected")  # websocket.connect was received
    try:
        for step in script:
            if step[0] == "receive":
                events.append(await receive())
            elif step[0] == "send":
                try:
                    await send(step[1])
                    events.append(f"sent {step[1]['type']}")
                except Exception as exc:
                    events.append(f"{step[1]['type']}: {type(exc).__name__}: {exc}")
                    raise
            elif step[0] == "wait":
                events.append("waiting")
                await until(lambda marker=step[1]: marker in events)
                events.remove(step[1])
            elif step[0] == "note":
                events.append(step[1])
            elif step[0] == "raise":
                raise RuntimeError("app failed")
            elif step[0] == "return":
                events.append("end: returned")
                return step[1]
    except BaseException as exc:
        events.append(f"end: {type(exc).__name__}")
        raise
    events.append("end: returned")


def describe_answer(data: bytes):
    """What a client sees: nothing, a 101 and its frames, or an HTTP answer."""
    if not data:
        return "nothing"
    if data.startswith(b"HTTP/1.1 101"):
        head, _, rest = data.partition(b"\r\n\r\n")
        frames = []
        while len(rest) >= 2:
            length = rest[1] & 0x7F
            frames.append((rest[0] & 0x0F, rest[2 : 2 + length]))
            rest = rest[2 + length :]
        return 101, frames
    try:
        status, headers, body = parse_http_response(data)
    except h11.RemoteProtocolError as exc:
        return f"unparseable HTTP: {exc}"
    headers.pop("date", None)
    headers.pop("server", None)
    return status, sorted(headers.items()), body


async def read_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """Read until the server closes, answering its close frame if it sends one."""
    data, answered = b"", False
    while chunk := await reader.read(65536):
        data += chunk
        seen = describe_answer(data) if b"\r\n\r\n" in data else None
        if not answered and isinstance(seen, tuple) and seen[0] == 101:
            for opcode, payload in seen[1]:
                if opcode == 8:
                    writer.write(client_frame(8, payload))
                    answered = True
    return describe_answer(data)


# Lines the websockets library itself logs through uvicorn's logger when
# websockets-sansio runs it; neither wsproto nor fastws logs them (see the
# module docstring of fastws.uvicorn). uvicorn's own lines are compared.
WEBSOCKETS_LIBRARY_LINES = ("connection open", "connection rejected (", "HTTP response sent (", "connection closed")


@contextlib.contextmanager
def log_lines():
    """The uvicorn.error records at INFO and above, as comparable strings."""
    lines: list = []

    class Handler(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith(WEBSOCKETS_LIBRARY_LINES):
                return
            if message.startswith("127.0.0.1:"):
                message = message.split(" - ", 1)[1]
            if record.exc_info and record.exc_info[1] is not None:
                message += f" [{type(record.exc_info[1]).__name__}]"
            lines.append(f"{record.levelname} {message}")

    logger = logging.getLogger("uvicorn.error")
    handler, level = Handler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def run_scripted_client(port: int, name: str, events: list):
    """One script, one client: (app record, client's view, log lines)."""
    with log_lines() as logged:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(f"/script/{name}"))
        kind = CLIENTS[name]
        try:
            if kind == "read":
                seen = await read_answer(reader, writer)
            elif kind == "drop at once":
                writer.close()
                seen = "dropped"
            else:
                await until(lambda: "waiting" in events)
                writer.transport.abort()
                events.append("client gone")
                seen = "dropped"
            await until(lambda: any(isinstance(e, str) and e.startswith("end: ") for e in events))
        finally:
            writer.close()
        return events, seen, logged


# Where wsproto disagrees with websockets-sansio, fastws follows websockets-sansio
# (uvicorn's default from now on). The scripts where wsproto differs, and why:
WSPROTO_DIFFERS = {
    # wsproto writes the denial's head at websocket.http.response.start and
    # streams the body chunked; websockets-sansio (and fastws) write the whole
    # response at the last body part, with Content-Length, or nothing at all if
    # the app fails first. wsproto also counts a started denial as a completed
    # handshake: no "returned without completing handshake" line, and TCP lost
    # afterwards is 1005, not 1006.
    "denial": [
        "start-then-return",
        "start-then-raise",
        "partial-body-then-return",
        "partial-body-then-raise",
        "body-of-str",
        "body-of-none",
        "body-missing",
        "accept-after-start",
        "send-after-start",
        "close-after-start",
        "second-start",
        "headers-of-str",
        "headers-of-none",
        "headers-of-triples",
        "body-after-the-last",
        "send-after-the-last-body",
        "receive-after-denial",
        "raise-after-denial",
        "lost-after-start",
        "lost-after-partial-body",
        "deny-header-crlf",
    ],
    # wsproto reads message["headers"] where the others default to no headers.
    "headers key": ["headers-missing"],
    # wsproto's 403 has neither Content-Type nor Connection: close.
    "403 headers": ["receive-after-403", "send-after-403", "raise-after-403"],
    # wsproto marks the handshake complete before writing the 101, so a header
    # it refuses leaves the app with an exception and the client with nothing
    # (websockets-sansio and fastws check first and answer 500); str headers go
    # through wsproto unchecked.
    "accept headers": ["accept-headers-of-str", "accept-header-crlf", "accept-header-nul", "accept-subprotocol-crlf"],
    # A header name that is not a token: websockets-sansio writes it; wsproto
    # refuses it at websocket.accept or websocket.http.response.start, answering nothing.
    "header names": ["accept-header-name", "deny-header-name"],
    # wsproto refuses websocket.send without bytes or text; the others send nothing.
    "empty send": ["send-without-data"],
    # A close code or reason that cannot be sent: wsproto writes it anyway.
    "close frame": ["close-with-code-1006", "close-with-long-reason"],
}
# Each library raises its own exception type (websockets' InvalidHeaderValue or
# ProtocolError, wsproto's LocalProtocolError, fastws's ValueError subclasses,
# an AssertionError inside websockets for a second response): compared as "raised".
OWN_EXCEPTIONS = {
    "body-after-the-last",
    "accept-header-crlf",
    "accept-header-nul",
    "accept-subprotocol-crlf",
    "deny-header-crlf",
    "close-with-code-1006",
    "close-with-long-reason",
}
# Where fastws differs from websockets-sansio on purpose (see the docstring of
# fastws.uvicorn): what fastws does instead.
FASTWS_DIFFERS = {
    # websockets-sansio logs "ASGI callable returned without completing
    # handshake." after a complete denial response when the app returns before
    # TCP is closed (it never marks a denial as done); wsproto and fastws do not.
    "headers-missing": (
        [{"type": "websocket.connect"}, "connected", "sent websocket.http.response.start"]
        + ["sent websocket.http.response.body", "end: returned"],
        (
            418,
            [("connection", "close"), ("content-length", "15"), ("content-type", "text/plain; charset=utf-8")],
            b"short and stout",
        ),
        ['INFO "WebSocket /script/headers-missing" 418'],
    ),
    # A header name that is not a token (RFC 9110 §5.1): websockets writes it
    # as given; fastws refuses it before writing, like a bad value: an
    # exception in the app, then a 500 (accept) or nothing (denial).
    "accept-header-name": (
        [{"type": "websocket.connect"}, "connected", "websocket.accept: raised", "end: raised"],
        (
            500,
            [("connection", "close"), ("content-length", "21"), ("content-type", "text/plain; charset=utf-8")],
            b"Internal Server Error",
        ),
        ['INFO "WebSocket /script/accept-header-name" [accepted]', "ERROR Exception in ASGI application\n [raised]"],
    ),
    "deny-header-name": (
        [{"type": "websocket.connect"}, "connected", "sent websocket.http.response.start"]
        + ["websocket.http.response.body: raised", "end: raised"],
        "nothing",
        ['INFO "WebSocket /script/deny-header-name" 418', "ERROR Exception in ASGI application\n [raised]"],
    ),
}


def as_raised(result):
    """A script's result with each exception's type and text replaced by "raised"."""
    events, seen, logged = result
    events = [
        (event.split(": ", 1)[0] + ": raised" if event != "end: returned" else event)
        if isinstance(event, str) and ": " in event
        else event
        for event in events
    ]
    logged = [line.split(" [", 1)[0] + " [raised]" if "\n [" in line else line for line in logged]
    return events, seen, logged


@pytest.mark.parametrize("name", [name for name in SCRIPTS if not name.startswith("shutdown-")])
@async_test
async def test_asgi_sequence(name):
    """What the app receives and raises, what the client sees and what uvicorn logs."""
    results = await each_implementation(lambda port, events: run_scripted_client(port, name, events))
    if name in OWN_EXCEPTIONS or name in FASTWS_DIFFERS:
        results = {impl: as_raised(result) for impl, result in results.items()}
    if name in FASTWS_DIFFERS:
        assert results["fastws"] == FASTWS_DIFFERS[name]
        assert results["websockets-sansio"] != FASTWS_DIFFERS[name]  # still a difference
    else:
        assert results["fastws"] == results["websockets-sansio"]
    differs = any(name in names for names in WSPROTO_DIFFERS.values())
    assert (results["wsproto"] == results["websockets-sansio"]) != differs


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name.startswith("shutdown-")])
@async_test
async def test_graceful_shutdown_at_each_step(name):
    """uvicorn stops while the app waits: 500 before an answer, 1012 after accept;
    afterwards the app's sends fail as they do with uvicorn's classes."""
    results = {}
    for impl, ws in IMPLEMENTATIONS.items():
        if impl == "wsproto" and name == "shutdown-during-denial":
            continue  # its shutdown() raises (a close frame during the handshake) and the server hangs
        events: list = []
        with log_lines() as logged:
            async with uvicorn_server(make_app(events), ws) as (server, port):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(upgrade_request(f"/script/{name}"))
                await until(lambda events=events: "waiting" in events)
                server.should_exit = True
                seen = await read_answer(reader, writer)
                writer.close()
                events.append("shut down")
                await until(lambda events=events: any(str(e).startswith("end: ") for e in events))
        logged = [line for line in logged if "WebSocket" in line or "ASGI" in line]
        results[impl] = events, seen, logged
    assert_same(results)


# -- fastws only -------------------------------------------------------------------


def test_importing_fastws_does_not_import_uvicorn():
    code = "import sys, fastws, fastws.codec, fastws.asyncio; assert 'uvicorn' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


MISSING_KEY = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
MISSING_KEY += b"Sec-WebSocket-Version: 13\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (MISSING_KEY, {"fastws": 400, "websockets-sansio": 400, "wsproto": 400}),
        # RFC 6455 §4.4: 426 with the supported version, as wsproto answers (websockets says 400).
        (upgrade_request("/echo", version="8"), {"fastws": 426, "websockets-sansio": 400, "wsproto": 426}),
    ],
)
@async_test
async def test_bad_handshake_never_reaches_the_app(request_bytes, expected):
    async def scenario(port, events):
        status, headers, _ = parse_http_response(await raw_exchange(port, request_bytes))
        return status, headers.get("sec-websocket-version"), events

    results = await each_implementation(scenario)
    assert {name: status for name, (status, _, _) in results.items()} == expected
    assert all(events == [] for _, _, events in results.values())
    assert results["fastws"][1] == ("13" if expected["fastws"] == 426 else None)


@async_test
async def test_starlette_chat_example():
    app = load_example("chat").app

    # The import string uvicorn's --ws option takes, as on the command line.
    async with uvicorn_server(app, "fastws.uvicorn:WebSocketProtocol") as (_, port):
        uri = f"ws://127.0.0.1:{port}/ws"
        async with fastws.connect(uri + "?name=ann") as ann, fastws.connect(uri + "?name=bob") as bob:
            assert await ann.recv() == "ann joined"
            assert await ann.recv() == "bob joined"
            assert await bob.recv() == "bob joined"
            await ann.send("hello")
            assert await ann.recv() == "ann: hello"
            assert await bob.recv() == "ann: hello"
            await ann.close()
            assert await bob.recv() == "ann left"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = parse_http_response(await asyncio.wait_for(reader.read(), TIMEOUT))
        writer.close()
        assert status == 200 and b"WebSocket" in body


def fastapi_app():
    app = FastAPI()

    @app.websocket("/items/{item_id}")
    async def items(websocket: WebSocket, item_id: int, token: str = ""):
        if token != "secret":
            raise WebSocketException(code=4401, reason="bad token")  # before accept: denied
        await websocket.accept(subprotocol="json")
        try:
            while True:
                data = await websocket.receive_json()
                if data.get("fail"):
                    raise WebSocketException(code=4000, reason="asked to fail")
                await websocket.send_json({"item": item_id, "echo": data})
        except WebSocketDisconnect as exc:
            websocket.app.state.disconnects.append((exc.code, exc.reason))

    app.state.disconnects = []
    return app


@async_test
async def test_unchanged_fastapi_app():
    results = {}
    for name, ws in IMPLEMENTATIONS.items():
        app = fastapi_app()
        async with uvicorn_server(app, ws) as (_, port):
            base = f"ws://127.0.0.1:{port}/items/7"
            async with ws_connect(base + "?token=secret", subprotocols=["json"]) as client:
                await client.send('{"a": [1, 2]}')
                echoed = await client.recv()
                await client.close(1001, "leaving")
            async with ws_connect(base + "?token=secret", subprotocols=["json"]) as client:
                await client.send('{"fail": true}')
                with pytest.raises(websockets.ConnectionClosed) as failed:
                    await client.recv()
            with pytest.raises(websockets.InvalidStatus) as denied:
                await ws_connect(base + "?token=wrong")
            await until(lambda app=app: len(app.state.disconnects) >= 1)
            results[name] = (
                client.subprotocol,
                echoed,
                (failed.value.rcvd.code, failed.value.rcvd.reason),
                denied.value.response.status_code,
                app.state.disconnects,
            )
    assert_same(results, ("json", '{"item":7,"echo":{"a":[1,2]}}', (4000, "asked to fail"), 403, [(1001, "leaving")]))


@async_test
async def test_ws_max_queue_pauses_reading_until_the_app_catches_up():
    """A client flooding an app that does not read fills ws_max_queue, then TCP: not memory."""
    release = asyncio.Event()
    received: list = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(received) < 2000:
            received.append((await receive())["bytes"])
        await send({"type": "websocket.send", "text": "done"})
        await receive()

    async with uvicorn_server(app, WebSocketProtocol, ws_max_queue=4) as (server, port):
        async with ws_connect(f"ws://127.0.0.1:{port}/", compression=None, write_limit=0) as client:

            async def flood():
                for i in range(2000):
                    await client.send(bytes([i % 256]) * 1024)

            sending = asyncio.ensure_future(flood())
            try:
                await until(lambda: any(p.read_paused for p in server.server_state.connections))
                [protocol] = server.server_state.connections
                # At most one read's worth (asyncio reads up to 256 KiB at once) past the limit.
                assert 4 <= len(protocol.queue) <= 4 + 262144 // 1024
            finally:
                release.set()
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "done"
            await sending
    assert received == [bytes([i % 256]) * 1024 for i in range(2000)]


class FakeTransport(asyncio.Transport):
    """Records writes and reading/closing calls; never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list = []
        self.closing = False
        self.reading = True

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@async_test
async def test_connection_output_leaves_whenever_there_is_some():
    """Connection.data_to_send() holds the newest pong while writing is paused
    and always returns close frames: the protocol writes whatever it returns."""
    received: list = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    config = uvicorn.Config(app, ws=WebSocketProtocol, log_config=None, lifespan="off")
    server_state = uvicorn.server.ServerState()
    transport = FakeTransport()
    protocol = WebSocketProtocol(config, server_state, {})
    protocol.connection_made(transport)
    protocol.data_received(upgrade_request("/"))
    await until(lambda: transport.written)
    assert transport.written.pop().startswith(b"HTTP/1.1 101")

    protocol.pause_writing()
    protocol.data_received(client_frame(9, b"one") + client_frame(9, b"two"))
    assert transport.written == []  # the pongs wait for resume_writing
    protocol.resume_writing()
    assert transport.written == [b"\x8a\x03two"]  # only the newest (RFC 6455 §5.5.3)

    transport.written.clear()
    protocol.pause_writing()
    protocol.data_received(client_frame(9, b"three") + client_frame(8, b"\x03\xe8"))
    assert transport.written == [b"\x88\x02\x03\xe8"]  # the close reply does not wait
    assert transport.closing
    await until(lambda: received)
    assert received == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
    protocol.connection_lost(None)


class WritelinesTransport(FakeTransport):
    """A transport whose writelines() fastws trusts (not asyncio's): records each call's buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list = []

    def writelines(self, buffers) -> None:
        self.lines.append(list(buffers))


@pytest.mark.parametrize("transport_class", [FakeTransport, WritelinesTransport])
@async_test
async def test_a_large_message_is_written_by_reference(transport_class):
    """websocket.send with 100 KiB of bytes: the payload goes to the transport as
    it is, after its frame header (one writelines() where the transport's is
    trusted, else a write each), not copied into a frame; a small one is one write."""
    payload = bytes(range(256)) * 400
    sent = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": payload})
        await send({"type": "websocket.send", "text": "small"})
        sent.set()
        await receive()

    config = uvicorn.Config(app, ws=WebSocketProtocol, log_config=None, lifespan="off")
    transport = transport_class()
    protocol = WebSocketProtocol(config, uvicorn.server.ServerState(), {})
    protocol.connection_made(transport)
    protocol.data_received(upgrade_request("/"))
    await asyncio.wait_for(sent.wait(), TIMEOUT)
    assert transport.written.pop(0).startswith(b"HTTP/1.1 101")
    if transport_class is WritelinesTransport:
        [[header, body]] = transport.lines
        assert transport.written == [b"\x81\x05small"]
    else:
        header, body, small = transport.written
        assert small == b"\x81\x05small"
    assert header == b"\x82\x7f" + len(payload).to_bytes(8, "big")
    assert body is payload  # the object the app passed, not a copy
    protocol.connection_lost(None)


def test_on_uvloop():
    """uvloop's transports (not asyncio subclasses): echo, and the lingering close after a protocol error."""
    import uvloop

    async def main():
        events: list = []
        async with uvicorn_server(make_app(events), WebSocketProtocol) as (_, port):
            async with ws_connect(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send(b"x" * 100000)
                assert await ws.recv() == b"x" * 100000
            peer = await accepted_raw_peer(port)
            peer.writer.write(b"\x81\x02hi")  # unmasked
            opcode, payload = await peer.read_frame()
            assert (opcode, payload[:2]) == (8, b"\x03\xea")  # 1002
            assert await peer.read_until_eof() == b""
            peer.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.close()
