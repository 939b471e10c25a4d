"""The asyncio layer in states that depend on timing, driven through a fake
transport: writing paused, the transport lost while paused, failures deferred,
fragmented messages interrupted or concurrent."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest

from fastws import codec, policy
from fastws.asyncio import Listener, protocol
from fastws.connection import PASSTHROUGH_BYTES
from fastws.exceptions import ConnectionClosed, ConnectionClosedError
from fastws.frames import OP_BINARY
from fastws.relay import Relay

from .support.asyncio import after_loop_passes, async_test
from .support.codecs import use_codec
from .support.frames import client_frame, server_frame
from .support.transport import FakeTransport, open_client_websocket, open_server_websocket

TIMEOUT = 10


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)
    return codec


@async_test
async def test_resuming_writes_does_not_send_a_deferred_failure_before_the_replies():
    ws, transport = open_server_websocket(close_timeout=0.2)  # the fake peer never hangs up: lingering ends by timeout
    ws.pause_writing()
    ws.data_received(client_frame(1, b"a") + client_frame(3, b""))  # a message, then a reserved opcode
    ws.resume_writing()
    assert await ws.recv() == "a"
    await ws.send("reply to a")
    with pytest.raises(ConnectionClosedError) as failure:
        await ws.recv()
    assert failure.value.code == 1002
    assert [frame[0] for frame in transport.frames()] == [1, 8]  # the reply, then the close frame
    assert transport.eof  # lingering: our side shut down, waiting for the peer to hang up
    await asyncio.wait_for(ws.close(), TIMEOUT)


@pytest.mark.parametrize("wait", ["drain", "wait_sendable"])
@async_test
async def test_waiting_to_send_ends_when_the_transport_is_lost_while_paused(wait):
    ws, transport = open_server_websocket()
    ws.pause_writing()
    transport.abort()
    await asyncio.sleep(0)  # connection_lost runs
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(getattr(ws, wait)(), TIMEOUT)


@async_test
async def test_relay_backlog_of_a_subscriber_lost_while_paused_is_released():
    relay = Relay(max_backlog=4)
    ws, transport = open_server_websocket()
    relay.subscribe(ws, "topic")
    ws.pause_writing()
    transport.abort()  # e.g. the write timeout; connection_lost comes on the next iteration
    relay.publish("topic", "x")  # still open in this iteration: held in the backlog
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    for _ in range(3):
        await asyncio.sleep(0)
    assert relay.subscriber_count == 0
    assert [task for task in asyncio.all_tasks() if "_drain" in repr(task)] == []


@async_test
async def test_a_fragment_that_cannot_be_encoded_closes_1011_and_no_frame_follows_inside_it():
    ws, transport = open_server_websocket()
    with pytest.raises(TypeError):
        await ws.send_fragments(["a", 5])  # the last piece is not str or bytes
    with pytest.raises(ConnectionClosed):
        await ws.send("next")
    frames = transport.frames()
    assert [frame[0] for frame in frames] == [1, 8]  # the first fragment, then the close: nothing inside it
    assert frames[1][1][:2] == (1011).to_bytes(2, "big")


@async_test
async def test_concurrent_send_fragments_and_send_wait_their_turn():
    ws, transport = open_server_websocket()

    async def pieces(tag):
        for index in range(3):
            yield f"{tag}{index}"
            await asyncio.sleep(0)

    first = asyncio.ensure_future(ws.send_fragments(pieces("A")))
    await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(ws.send("plain"), ws.send_fragments(pieces("B")), first), TIMEOUT)
    messages, current = [], ""
    for _opcode, payload, fin in transport.frames():
        current += payload.decode()
        if fin:
            messages.append(current)
            current = ""
    assert messages[0] == "A0A1A2" and sorted(messages[1:]) == ["B0B1B2", "plain"]


@async_test
async def test_send_nowait_during_a_fragmented_message_is_refused():
    ws, transport = open_server_websocket()
    gate = asyncio.Event()

    async def pieces():
        yield "a"
        yield "b"
        await gate.wait()
        yield "c"

    sending = asyncio.ensure_future(ws.send_fragments(pieces()))
    while not ws.connection.sending_fragments:
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="fragmented message"):
        ws.send_nowait("x")
    with pytest.raises(RuntimeError, match="fragmented message"):
        ws.send_soon("x")
    gate.set()
    await asyncio.wait_for(sending, TIMEOUT)
    ws.send_soon("after")
    await asyncio.sleep(0)
    assert [frame[1] for frame in transport.frames()] == [b"a", b"b", b"c", b"after"]


def test_the_write_batch_keeps_no_finished_loop_alive():
    async def use_send_soon():
        ws, transport = open_server_websocket()
        ws.send_soon("x")
        await asyncio.sleep(0)
        assert transport.frames() == [(1, b"x", True)]

    for _ in range(3):
        asyncio.run(use_send_soon())
    gc.collect()
    assert len(protocol._batches) == 0


@async_test
async def test_relay_holds_messages_for_a_subscriber_sending_fragments_and_delivers_them_after():
    relay = Relay()
    ws, transport = open_server_websocket()
    relay.subscribe(ws, "topic")
    gate = asyncio.Event()

    async def pieces():
        yield "a"
        yield "b"
        await gate.wait()
        yield "c"

    sending = asyncio.ensure_future(ws.send_fragments(pieces()))
    while not ws.connection.sending_fragments:
        await asyncio.sleep(0)
    assert relay.publish("topic", "news 1") == 1 and relay.publish("topic", "news 2") == 1  # held, not lost
    await asyncio.sleep(0)
    assert [frame[1] for frame in transport.frames()] == [b"a"]  # nothing inside the fragmented message
    gate.set()
    await asyncio.wait_for(sending, TIMEOUT)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [frame[1] for frame in transport.frames()] == [b"a", b"b", b"c", b"news 1", b"news 2"]


@async_test
async def test_a_burst_of_small_frames_is_joined_and_a_large_payload_is_passed_by_reference():
    ws, transport = open_server_websocket()
    for index in range(1000):
        ws.send_soon(bytes([index % 256]) * 250)  # 252-byte frames: about 252 KB in all
    large = bytes(200_000)
    ws.send_soon(large)
    ws.send_soon(b"last")
    # A large frame does not wait for the end of the iteration: it leaves at
    # once, in one writelines() with the burst held before it.
    assert len(transport.written) == 1
    assert len(transport.buffers) <= 7  # four or five joined buffers, the large frame's header, its payload
    assert transport.buffers[-1] is large  # not copied
    await asyncio.sleep(0)
    assert len(transport.written) == 2  # the tail, at the end of the iteration
    payloads = [frame[1] for frame in transport.frames()]
    assert payloads == [bytes([index % 256]) * 250 for index in range(1000)] + [large, b"last"]


class JoiningTransport(FakeTransport):
    """A transport whose writelines() joins the list (asyncio's before 3.12)."""

    writelines = asyncio.WriteTransport.writelines


@async_test
async def test_where_writelines_is_not_trusted_small_frames_are_joined_and_a_large_payload_written_as_it_is():
    ws, transport = open_server_websocket(transport_class=JoiningTransport)
    for index in range(1000):
        ws.send_soon(bytes([index % 256]) * 250)
    large = bytes(300_000)  # from SEPARATE_WRITES_PASSTHROUGH_BYTES (256 KiB): by reference
    ws.send_soon(large)
    ws.send_soon(b"last")
    await asyncio.sleep(0)
    assert len(transport.written) <= 7  # four or five joined writes (the last with the header), the payload, the tail
    assert any(buffer is large for buffer in transport.buffers)  # a write of its own, not copied
    payloads = [frame[1] for frame in transport.frames()]
    assert payloads == [bytes([index % 256]) * 250 for index in range(1000)] + [large, b"last"]


@async_test
async def test_where_each_buffer_is_a_write_of_its_own_a_medium_message_is_copied_into_one_write():
    """Below SEPARATE_WRITES_PASSTHROUGH_BYTES a separate header would cost a
    send of its own (and the peer a wake-up): the frame is one buffer, one
    write. Where writelines is trusted the same payload goes by reference."""
    assert policy.passthrough_from(False) == policy.SEPARATE_WRITES_PASSTHROUGH_BYTES > 100_000
    assert policy.passthrough_from(True) == PASSTHROUGH_BYTES < 100_000
    medium = os.urandom(100_000)
    for transport_class, by_reference in ((JoiningTransport, False), (FakeTransport, True)):
        ws, transport = open_server_websocket(transport_class=transport_class)
        ws.send_nowait(medium)
        await ws.send(medium)
        assert len(transport.written) == 2  # one write (or writelines) per message
        assert any(buffer is medium for buffer in transport.buffers) is by_reference
        assert [frame[1] for frame in transport.frames()] == [medium, medium]


@async_test
async def test_every_way_to_send_passes_a_large_payload_by_reference_and_keeps_the_order():
    ws, transport = open_server_websocket(max_frame_size=100_000)
    large, text = os.urandom(250_000), "é" * 70_000
    await ws.send(large)
    ws.send_nowait(text)
    ws.send_nowait(b"small")
    ws.send_soon(large)
    await asyncio.sleep(0)
    by_reference = [buffer for buffer in transport.buffers if isinstance(buffer, memoryview) and buffer.obj is large]
    # send() writes its three slices as they are; the batch behind send_soon()
    # passes the two of 100 KB and joins the 50 KB tail with its neighbours.
    assert len(by_reference) == 5
    frames = transport.frames()
    assert [(opcode, len(payload), fin) for opcode, payload, fin in frames] == [
        (2, 100_000, False), (0, 100_000, False), (0, 50_000, True),
        (1, 100_000, False), (0, 40_000, True),
        (2, 5, True),
        (2, 100_000, False), (0, 100_000, False), (0, 50_000, True),
    ]  # fmt: skip
    assert b"".join(payload for _, payload, _ in frames[:3]) == large
    assert b"".join(payload for _, payload, _ in frames[3:5]).decode() == text


class Echo(Listener):
    def on_message(self, ws, message):
        ws.send_soon(message)


def client_frames(data: bytes) -> list:
    """The payloads of the masked frames a client wrote."""
    return [frame.payload for frame in codec.FrameParser().feed(data)]


@async_test
async def test_a_client_writes_a_reads_replies_in_partial_batches():
    # Both ends batching a read's replies into one write fall into lock-step when pipelining.
    every = protocol.CLIENT_REPLIES_PER_WRITE
    ws, transport = open_client_websocket(Echo())
    count = 2 * every + 1
    ws.data_received(b"".join(server_frame(OP_BINARY, bytes([n]) * 10) for n in range(count)))
    assert [client_frames(data) for data in transport.written] == [
        [bytes([n]) * 10 for n in range(start, min(start + every, count))] for start in range(0, count, every)
    ]
    ws.data_received(server_frame(OP_BINARY, b"alone"))
    assert len(transport.written) == 4 and client_frames(transport.written[3]) == [b"alone"]


@async_test
async def test_a_client_writes_a_large_reply_at_once():
    # A reply of COALESCE_BYTES or more gains nothing from waiting for the next ones.
    ws, transport = open_client_websocket(Echo())
    large = b"x" * policy.COALESCE_BYTES
    small = b"small"
    frame = codec.encode_frame(2, large)  # unmasked, as a server sends it
    ws.data_received(
        frame + server_frame(OP_BINARY, small) + frame + server_frame(OP_BINARY, small) + server_frame(OP_BINARY, small)
    )
    written = [client_frames(data) for data in transport.written]
    assert b"".join(map(b"".join, written)) == large + small + large + small + small
    # each large reply leaves with whatever was pending before it; the last small ones after the read
    assert [len(payloads) for payloads in written] == [1, 2, 2]


@async_test
async def test_a_server_writes_a_reads_replies_in_one_go():
    ws, transport = open_server_websocket(listener=Echo())
    ws.data_received(b"".join(client_frame(2, bytes([n]) * 10) for n in range(4)))
    assert len(transport.written) == 1
    assert [frame[1] for frame in transport.frames()] == [bytes([n]) * 10 for n in range(4)]


class EchoNow(Listener):
    def on_message(self, ws, message):
        ws.send_nowait(message)


@pytest.mark.parametrize("listener", [EchoNow, Echo], ids=["send_nowait", "send_soon"])
@async_test
async def test_a_server_writes_each_large_reply_at_once_with_what_it_held_before(listener):
    # Holding a large reply for the read's one write only makes the peer wait (WebSocket._hold).
    ws, transport = open_server_websocket(listener=listener())
    large = os.urandom(policy.COALESCE_BYTES)
    messages = [b"a", large, b"b", b"c", large, b"d"]
    ws.data_received(b"".join(client_frame(2, message) for message in messages))
    await asyncio.sleep(0)
    assert [frame[1] for frame in transport.frames()] == messages  # in order
    assert transport.payloads_of_each_write() == [[b"a", large], [b"b", b"c", large], [b"d"]]


def feed_from_the_loop(ws, data: bytes, transport: FakeTransport) -> asyncio.Future:
    """Call ``ws.data_received(data)`` from a loop callback, as a transport does;
    the future gets what had been written when that call returned."""
    written: asyncio.Future = asyncio.get_running_loop().create_future()

    def feed() -> None:
        ws.data_received(data)
        written.set_result(list(transport.written))

    asyncio.get_running_loop().call_soon(feed)
    return written


@async_test
async def test_an_echo_handler_answers_every_message_of_one_read_in_one_write():
    """The reader's task runs after the read (recv() waits on a plain future,
    woken by call_soon); the replies to a read's messages are held while
    more of them are queued and leave together when recv() would wait."""
    ws, transport = open_server_websocket()

    async def echo():
        async for message in ws:
            await ws.send(message)

    task = asyncio.ensure_future(echo())
    await asyncio.sleep(0)  # the handler waits in recv()
    written = await feed_from_the_loop(ws, client_frame(1, b"one") + client_frame(1, b"two"), transport)
    assert written == []  # the task has not run yet
    await after_loop_passes(lambda: transport.written)
    assert transport.written == [b"\x81\x03one\x81\x03two"]
    task.cancel()


@async_test
async def test_a_woken_reader_keeps_its_own_context():
    """The task runs in its own contextvars context, as when call_soon wakes it."""
    import contextvars

    name: contextvars.ContextVar[str] = contextvars.ContextVar("name", default="loop")
    ws, transport = open_server_websocket()
    seen: list = []

    async def reader():
        name.set("reader")
        async for message in ws:
            seen.append((message, name.get()))

    task = asyncio.ensure_future(reader())
    await asyncio.sleep(0)
    name.set("test")  # the loop callback below runs in a copy of this context
    await feed_from_the_loop(ws, client_frame(1, b"one"), transport)
    await after_loop_passes(lambda: seen)
    assert seen == [("one", "reader")]
    task.cancel()
