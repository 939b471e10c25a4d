"""The asyncio server and client, over both codec backends."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from fastws import Headers, Listener, Response, connect, serve
from fastws.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHeader,
    InvalidStatus,
)

from .support.asyncio import RawPeer, async_test, close_code_recorder, leftover_tasks, server_idle, upgrade_request
from .support.codecs import use_codec
from .support.frames import client_frame
from .support.tls import tls_contexts


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Run every connection of the test on one codec backend."""
    use_codec(monkeypatch, codec)
    return codec


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def uri(server, path="/"):
    return f"ws://127.0.0.1:{server.port}{path}"


@async_test
async def test_echo_text_binary_and_large_messages():
    async with serve(echo) as server, connect(uri(server)) as ws:
        await ws.send("hello world")
        assert await ws.recv() == "hello world"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        big = bytes(range(256)) * 1024
        await ws.send(big)
        assert await ws.recv() == big
        text = "é€😀" * 50000
        await ws.send(text)
        assert await ws.recv() == text


@async_test
async def test_messages_in_order_with_async_for():
    async with serve(echo) as server, connect(uri(server)) as ws:
        for i in range(500):
            await ws.send(str(i))
        received = [await ws.recv() for _ in range(500)]
        assert received == [str(i) for i in range(500)]


@async_test
async def test_outbound_fragmentation_reaches_peer_as_one_message():
    async with serve(echo, max_frame_size=131072) as server, connect(uri(server), max_frame_size=1000) as ws:
        payload = bytes(262145)
        await ws.send(payload)
        assert await ws.recv() == payload


@async_test
async def test_send_fragments_streams_one_message():
    async with serve(echo) as server, connect(uri(server)) as ws:
        await ws.send_fragments(["a", "b", "c"])
        assert await ws.recv() == "abc"


@async_test
async def test_request_path_subprotocol_and_remote_address():
    seen = {}

    async def handler(ws):
        seen.update(path=ws.request.path, sub=ws.subprotocol, addr=ws.remote_address, ua=ws.request.headers["X-Test"])
        await ws.send("ready")

    async with serve(handler, subprotocols=["v2", "v1"]) as server:
        async with connect(uri(server, "/room?x=1"), subprotocols=["v1", "v2"], extra_headers=[("X-Test", "t")]) as ws:
            assert await ws.recv() == "ready"
            assert ws.subprotocol == "v2"
    assert seen["path"] == "/room?x=1" and seen["sub"] == "v2" and seen["ua"] == "t"
    assert seen["addr"][0] == "127.0.0.1"


@async_test
async def test_ping_waits_for_pong():
    async with serve(echo) as server, connect(uri(server)) as ws:
        latency = await ws.ping()
        assert 0 <= latency < 10
        assert ws.latency == latency


@async_test
async def test_close_code_and_reason_reach_the_handler():
    closed = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            closed.set_result((type(exc), exc.code, exc.reason))

    async with serve(handler) as server:
        ws = await connect(uri(server))
        await ws.close(4000, "done")
        assert await closed == (ConnectionClosedError, 4000, "done")
        assert ws.close_code == 4000


@async_test
async def test_normal_close_ends_async_for():
    async def handler(ws):
        await ws.send("one")
        await ws.close(1000, "bye")

    async with serve(handler) as server, connect(uri(server)) as ws:
        assert [message async for message in ws] == ["one"]
        assert (ws.close_code, ws.close_reason) == (1000, "bye")
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


@async_test
async def test_close_finishes_the_handshake_behind_a_full_receive_queue():
    """Reading is paused by unread messages; close() must still see the peer's
    close frame behind them, not wait for close_timeout and abort."""

    async def handler(ws):
        for n in range(50):
            await ws.send(f"{n:<65536}")
        async for _ in ws:
            pass

    async with serve(handler) as server:
        ws = await connect(uri(server), max_queue=4, close_timeout=120, compression=None)
        while len(ws._queue or ()) < 4:
            await asyncio.sleep(0.01)
        assert ws.reading_paused
        await asyncio.wait_for(ws.close(1000, "done"), 30)
        assert ws.close_code == 1000 and ws.close_reason == "done"
        # The messages queued before close() stay readable; later ones were dropped.
        numbers = [int(message) async for message in ws]
        assert numbers == list(range(len(numbers))) and 4 <= len(numbers) < 50


@async_test
async def test_handler_exception_closes_with_1011():
    async def handler(ws):
        raise ValueError("boom")

    async with serve(handler) as server, connect(uri(server)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011


@async_test
async def test_plain_http_via_process_request():
    def hook(ws, request):
        if request.path == "/health":
            return Response(200, Headers([("Content-Type", "text/plain")]), b"ok")
        if request.path == "/forbidden":
            return Response(403, body=b"no")
        return None

    async with serve(echo, process_request=hook) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read()).endswith(b"\r\n\r\nok")
        with pytest.raises(InvalidStatus) as info:
            await connect(uri(server, "/forbidden"))
        assert info.value.status == 403
        async with connect(uri(server, "/ws")) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"


@async_test
async def test_async_process_request():
    async def hook(ws, request):
        await asyncio.sleep(0)
        return None if request.path == "/ok" else Response(404, body=b"missing")

    async with serve(echo, process_request=hook) as server:
        async with connect(uri(server, "/ok")) as ws:
            await ws.send("y")
            assert await ws.recv() == "y"
        with pytest.raises(InvalidStatus):
            await connect(uri(server, "/nope"))


@pytest.mark.parametrize("is_async", [False, True])
@async_test
async def test_failing_or_unwritable_process_request_answers_500_and_nothing_else(is_async, caplog):
    def answer(request):
        if request.path == "/ws":
            return None
        if request.path == "/raise":
            raise KeyError("bug in the hook")
        response = Response(200, Headers([("X-Echo", "fine")]), b"ok")
        response.headers._items.append(("X-Echo", "a\r\nSet-Cookie: evil=1"))  # changed after it was checked
        return response

    async def async_hook(ws, request):
        await asyncio.sleep(0)
        return answer(request)

    hook = async_hook if is_async else (lambda ws, request: answer(request))
    async with serve(echo, process_request=hook) as server:
        for path in ("/raise", "/split"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reply = await asyncio.wait_for(reader.read(), 10)
            assert reply.startswith(b"HTTP/1.1 500 "), reply
            assert b"Set-Cookie" not in reply and b"bug in the hook" not in reply
            writer.close()
        async with connect(uri(server, "/ws")) as ws:  # the server keeps serving
            await ws.send("x")
            assert await ws.recv() == "x"
    assert "process_request" in caplog.text


def test_a_client_header_that_cannot_be_written_is_refused_by_connect_itself():
    with pytest.raises(InvalidHeader, match="'X'"):
        connect("ws://127.0.0.1:9/", extra_headers=[("X", "a\r\nEvil: 1")])  # nothing connects, nothing is sent
    with pytest.raises(InvalidHeader):
        connect("ws://127.0.0.1:9/", origin="http://a\nb")


@async_test
async def test_origin_allow_list_rejects_with_403():
    async with serve(echo, origins=["https://ok.example"]) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(uri(server), origin="https://evil.example")
        assert info.value.status == 403
        async with connect(uri(server), origin="https://ok.example") as ws:
            await ws.send("z")
            assert await ws.recv() == "z"


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"garbage garbage\r\n\r\n", b"400"),
        (upgrade_request(version="8"), b"426"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000, b"431"),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
    ],
)
@async_test
async def test_bad_handshakes_get_http_errors_and_server_keeps_serving(request_bytes, status):
    async with serve(echo) as server:
        peer = await RawPeer.open(server.port, handshake=False)
        peer.writer.write(request_bytes)
        answer = await peer.read_until_eof()
        assert answer.split(b" ")[1] == status
        async with connect(uri(server)) as ws:
            await ws.send("still serving")
            assert await ws.recv() == "still serving"


@async_test
async def test_silent_and_half_handshakes_time_out():
    async with serve(echo, open_timeout=0.3) as server:
        silent = await RawPeer.open(server.port, handshake=False)
        half = await RawPeer.open(server.port, handshake=False)
        half.writer.write(upgrade_request()[:30])
        assert await silent.read_until_eof() == b""
        assert await half.read_until_eof() == b""
        assert server_idle(server)


@async_test
async def test_protocol_error_closes_with_1002():
    async with serve(echo) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(b"\x81\x02hi")  # unmasked frame from a client
        opcode, payload = await peer.read_frame()
        assert opcode == 8 and payload[:2] == (1002).to_bytes(2, "big")
        assert await peer.read_until_eof() == b""


class EchoListener(Listener):
    def on_message(self, ws, message):
        ws.send_nowait(message)


@pytest.mark.parametrize("api", ["async for", "listener"])
@async_test
async def test_messages_before_a_protocol_error_are_answered_before_the_close_frame(api):
    """RFC 6455 §7.1.7 fails the connection, but what arrived before the bad
    frame is still a valid message: the application gets it and its reply
    leaves before the close frame (Autobahn's strict behaviour, cases 3.2, 5.15)."""
    app = dict(listener=EchoListener) if api == "listener" else dict(handler=echo)
    async with serve(**app) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(client_frame(1, b"one") + client_frame(1, b"two") + client_frame(3, b""))
        assert [await peer.read_frame() for _ in range(3)] == [
            (1, b"one"),
            (1, b"two"),
            (8, b"\x03\xeareserved opcode 3"),
        ]
        assert await peer.read_until_eof() == b""


@async_test
async def test_a_handler_that_stops_reading_is_failed_after_close_timeout():
    got = asyncio.get_running_loop().create_future()

    async def first_only(ws):
        got.set_result(await ws.recv())
        await ws.wait_closed()  # never asks for the message the bad frame followed

    async with serve(first_only, close_timeout=0.2) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(client_frame(1, b"one") + client_frame(1, b"two") + client_frame(3, b""))
        assert await asyncio.wait_for(got, 10) == "one"
        opcode, payload = await peer.read_frame()
        assert opcode == 8 and payload[:2] == (1002).to_bytes(2, "big")
        assert await peer.read_until_eof() == b""


@async_test
async def test_peer_vanishing_mid_frame_is_1006_for_the_handler():
    handler, seen = close_code_recorder()
    async with serve(handler) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(b"\x82\xfe\x10\x00abcdxxxx")  # 4096-byte frame, 4 bytes sent
        await peer.writer.drain()
        peer.close()
        assert await seen == 1006


@async_test
async def test_control_frames_between_fragments_and_pong_reply():
    async with serve(echo) as server:
        peer = await RawPeer.open(server.port)
        peer.send_frame(1, b"frag", fin=False)
        peer.send_frame(9, b"ping!")
        peer.send_frame(0, b"ment")
        assert await peer.read_frame() == (10, b"ping!")
        assert await peer.read_frame() == (1, b"fragment")
        peer.send_close(1000, "bye")
        assert await peer.read_frame() == (8, (1000).to_bytes(2, "big") + b"bye")
        assert await peer.read_until_eof() == b""  # the server closes TCP first


@async_test
async def test_keepalive_drops_a_peer_that_stops_answering():
    async with serve(echo, ping_interval=0.1, ping_timeout=0.2) as server:
        peer = await RawPeer.open(server.port)
        opcode, _ = await peer.read_frame()
        assert opcode == 9  # a ping we never answer
        opcode, payload = await peer.read_frame()
        assert opcode == 8 and payload[:2] == (1011).to_bytes(2, "big")


@async_test
async def test_keepalive_keeps_an_answering_peer():
    async with serve(echo, ping_interval=0.05, ping_timeout=0.5) as server:
        async with connect(uri(server), ping_interval=None) as ws:
            for _ in range(3):
                await ws.send("alive")
                assert await ws.recv() == "alive"
                await asyncio.sleep(0.1)
            assert ws.open


@async_test
async def test_keepalive_does_not_drop_a_live_peer_when_the_loop_stalls():
    """A blocked event loop makes the pong late; that is not a dead peer."""

    async def blocking_echo(ws):
        async for message in ws:
            if message == "block":
                time.sleep(0.8)  # the whole loop stalls, longer than ping_timeout
            await ws.send(message)

    async with serve(blocking_echo, ping_interval=0.05, ping_timeout=0.2) as server:
        async with connect(uri(server), ping_interval=None) as ws:
            await ws.send("block")
            assert await ws.recv() == "block"
            for _ in range(5):
                await ws.send("still here")
                assert await ws.recv() == "still here"
                await asyncio.sleep(0.1)
            assert ws.open


@async_test
async def test_keepalive_counts_incoming_data_as_life_until_it_stops():
    """A peer whose pong is stuck behind its own traffic is alive; silence is not."""
    async with serve(echo, ping_interval=0.05, ping_timeout=0.15) as server:
        peer = await RawPeer.open(server.port)  # never answers pings
        for _ in range(10):
            peer.send_frame(2, b"busy")
            await asyncio.sleep(0.05)
        frames = []
        while True:  # now silent: closed with 1011
            opcode, payload = await peer.read_frame()
            frames.append(opcode)
            if opcode == 8:
                break
        assert payload[:2] == (1011).to_bytes(2, "big")
        assert frames.count(2) == 10  # every message was echoed before that


@async_test
async def test_incoming_queue_is_bounded():
    release = asyncio.Event()
    sizes = []

    async def slow_handler(ws):
        await release.wait()
        sizes.append(len(ws._queue or ()))
        async for message in ws:
            if message == "last":
                await ws.send("done")

    async with serve(slow_handler, max_queue=4, compression=None) as server, connect(uri(server)) as ws:
        sending = asyncio.ensure_future(asyncio.gather(*(ws.send("x" * 100_000) for _ in range(100))))
        await asyncio.sleep(0.2)
        release.set()
        await sending
        await ws.send("last")
        assert await ws.recv() == "done"
        # Reading pauses at max_queue; messages already read in the same chunk
        # (at most 256 KiB, so 3 of these) are kept, never dropped.
        assert sizes[0] <= 4 + 3


@async_test
async def test_reader_that_never_reads_is_dropped_after_write_timeout():
    errors = asyncio.get_running_loop().create_future()

    async def flood(ws):
        try:
            while True:
                await ws.send(bytes(65536))
        except ConnectionClosed as exc:
            errors.set_result((exc.code, ws.buffered_amount))

    async with serve(flood, write_limit=65536, write_timeout=0.3) as server:
        peer = await RawPeer.open(server.port)  # reads nothing
        code, buffered = await errors
        assert code == 1006
        peer.close()


@async_test
async def test_graceful_shutdown_closes_clients_with_1001():
    async with serve(echo) as server:
        ws = await connect(uri(server))
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.code == 1001


@async_test
async def test_listener_callback_api():
    class EchoListener(Listener):
        def on_message(self, ws, message):
            ws.send_nowait(message)

    closed = []

    class Recorder(EchoListener):
        def on_close(self, ws, code, reason):
            closed.append(code)

    async with serve(listener=Recorder) as server:
        async with connect(uri(server)) as ws:
            await ws.send("cb")
            assert await ws.recv() == "cb"
            await ws.send(b"bytes")
            assert await ws.recv() == b"bytes"
        await asyncio.sleep(0)
    assert closed == [1000]


@async_test
async def test_no_leaks_after_many_connections():
    async with serve(echo) as server:
        for _ in range(50):
            async with connect(uri(server)) as ws:
                await ws.send("x")
                await ws.recv()
        for _ in range(50):
            peer = await RawPeer.open(server.port)
            peer.close()
        for _ in range(100):
            if server_idle(server):
                break
            await asyncio.sleep(0.02)
        assert server_idle(server)
    gc.collect()
    # Only this test's task and the deadline wrapper around it (if any) remain.
    tasks = leftover_tasks()
    assert tasks == [], tasks


@async_test
async def test_tls_wss_with_self_signed_certificate():
    server_context, client_context = tls_contexts()
    async with serve(echo, ssl=server_context) as server:
        async with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"


@async_test
async def test_listener_reply_to_a_message_that_arrives_with_a_close_frame():
    """The reply cannot be sent after the close; it must not break the connection."""
    errors = []

    class Echo(Listener):
        def on_message(self, ws, message):
            ws.send_nowait(message)

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: errors.append(context))
    async with serve(listener=Echo) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(client_frame(1, b"last words") + client_frame(8, (1000).to_bytes(2, "big")))
        opcode, payload = await peer.read_frame()
        assert opcode in (1, 8)
        assert await peer.read_until_eof() is not None
    assert errors == []


@async_test
async def test_listener_exception_closes_with_1011_and_server_goes_on():
    class Broken(Listener):
        def on_message(self, ws, message):
            raise ValueError("bug in user code")

    async with serve(listener=Broken) as server:
        async with connect(uri(server)) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1011
        async with connect(uri(server)) as ws:
            assert ws.open


def test_runs_on_uvloop():
    uvloop = pytest.importorskip("uvloop")

    async def main():
        async with serve(echo) as server, connect(uri(server)) as ws:
            await ws.send("on uvloop")
            assert await ws.recv() == "on uvloop"
            await ws.send(bytes(300000))
            assert await ws.recv() == bytes(300000)

    uvloop.run(asyncio.wait_for(main(), 30))
