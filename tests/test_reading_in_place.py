"""Reading through ``get_buffer()``/``buffer_updated()``, the path uvloop
takes: the rest of a large message is read straight into its
payload, other reads go into the loop's shared buffer, and either way every
message arrives as ``data_received()`` delivers it. On both codecs."""

from __future__ import annotations

import asyncio
import ctypes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastws.connection
from fastws import Listener, connect, serve
from fastws.asyncio import protocol
from fastws.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT

from .support.asyncio import async_test
from .support.codecs import use_codec
from .support.frames import client_frame, server_frame
from .support.transport import open_client_websocket, open_server_websocket


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)
    return codec


class Collect(Listener):
    def __init__(self) -> None:
        self.messages: list = []

    def on_message(self, ws, message) -> None:
        self.messages.append(message)


def read_as_a_buffered_transport(ws, data: bytes, read_sizes: list[int]) -> int:
    """Hand ``data`` to ``ws`` as uvloop does for a buffered protocol: ask for
    a buffer, fill it up to the next read size, report the count. Returns how
    many reads went straight into a payload (not into the shared buffer)."""
    shared = protocol.receive_buffer()
    in_place = reads = at = 0
    while at < len(data):
        buffer = ws.get_buffer(-1)
        count = min(len(buffer), read_sizes[reads % len(read_sizes)], len(data) - at)
        buffer[:count] = data[at : at + count]
        in_place += buffer is not shared
        reads += 1
        ws.buffer_updated(count)
        at += count
    return in_place


def pattern(size: int, seed: int) -> bytes:
    block = bytes(range(seed % 256, 256)) + bytes(range(seed % 256))
    return (block * (size // 256 + 1))[:size]


def frames_of(messages: list, is_client_side: bool) -> bytes:
    """What the peer of a client (is_client_side) or of a server sends:
    each message in one frame, or in two when marked so."""
    frame = server_frame if is_client_side else client_frame
    out = []
    for message, in_two in messages:
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        payload = message.encode() if isinstance(message, str) else message
        if in_two:
            half = len(payload) // 2
            out += [frame(opcode, payload[:half], fin=False), frame(OP_CONT, payload[half:])]
        else:
            out.append(frame(opcode, payload))
    return b"".join(out)


messages = st.lists(
    st.tuples(
        st.one_of(
            st.binary(max_size=200),
            st.text(max_size=100),
            st.builds(pattern, st.integers(0, 300_000), st.integers(0, 255)),
            st.builds(lambda n: "é" * n, st.integers(30_000, 80_000)),
        ),
        st.booleans(),
    ),
    max_size=5,
)
read_sizes = st.lists(st.integers(1, 300_000), min_size=1, max_size=8)


@pytest.mark.parametrize("side", ["client", "server"])
@settings(max_examples=40, deadline=None)
@given(messages=messages, read_sizes=read_sizes)
def test_messages_read_through_buffers_arrive_as_sent(side, messages, read_sizes):
    async def main():
        listener = Collect()
        opened = open_client_websocket if side == "client" else open_server_websocket
        ws, _ = opened(listener=listener, max_message_size=None)
        read_as_a_buffered_transport(ws, frames_of(messages, side == "client"), read_sizes)
        assert listener.messages == [message for message, _ in messages]

    asyncio.run(main())


@pytest.mark.parametrize("side", ["client", "server"])
@async_test
async def test_the_rest_of_a_large_message_is_read_into_its_payload(side):
    listener = Collect()
    opened = open_client_websocket if side == "client" else open_server_websocket
    ws, _ = opened(listener=listener, max_message_size=None)
    message = pattern(1 << 20, 7)
    in_place = read_as_a_buffered_transport(ws, frames_of([(message, False)], side == "client"), [64 * 1024])
    assert listener.messages == [message]
    # A client allocates a server's large frame at its header; a server once
    # half of the masked frame has arrived. The reads after that go in place.
    assert in_place >= (15 if side == "client" else 7)


@async_test
async def test_a_short_rest_of_a_message_is_read_with_what_follows():
    listener = Collect()
    ws, _ = open_client_websocket(listener=listener, max_message_size=None)
    message = pattern(100_000, 1)
    data = frames_of([(message, False), (b"next", False)], True)
    in_place = read_as_a_buffered_transport(ws, data, [60_000, 300_000])
    assert in_place == 0  # 40 KB left after the first read: less than IN_PLACE_BYTES
    assert listener.messages == [message, b"next"]


@async_test
async def test_nothing_is_read_into_a_frame_after_the_close_frame():
    ws, _ = open_client_websocket(listener=Collect(), max_message_size=None)
    close = server_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
    large = server_frame(OP_BINARY, pattern(200_000, 3))
    ws.buffer_updated(0)  # a read of nothing changes nothing
    shared = protocol.receive_buffer()
    assert ws.get_buffer(-1) is shared
    shared[: len(close) + 100] = close + large[:100]
    ws.buffer_updated(len(close) + 100)
    assert ws.get_buffer(-1) is shared  # the connection is closing: what follows is ignored, not read into a payload
    assert ws.close_code == 1000


@async_test
async def test_a_window_offered_but_not_read_into_is_not_taken_for_the_next_read():
    """uvloop may ask for a buffer and read nothing (EAGAIN). If the rest of
    the frame then arrives another way, the next read into the shared buffer
    is parsed as such, not as bytes of the payload window."""
    listener = Collect()
    ws, _ = open_client_websocket(listener=listener, max_message_size=None)
    message = pattern(300_000, 5)
    frame = server_frame(OP_BINARY, message)
    ws.data_received(frame[:1000])
    window = ws.get_buffer(-1)
    assert window is not protocol.receive_buffer()  # offered, then not read into
    ws.data_received(frame[1000:])
    after = server_frame(OP_TEXT, b"after")
    buffer = ws.get_buffer(-1)
    assert buffer is protocol.receive_buffer()
    buffer[: len(after)] = after
    ws.buffer_updated(len(after))
    assert listener.messages == [message, "after"]


@async_test
async def test_a_protocol_error_keeps_no_view_of_the_shared_buffer():
    """The error kept as ``connection.error`` has no traceback: its frames
    would hold the read's view of the shared buffer, which the next read
    (of any connection on the thread) overwrites."""
    ws, _ = open_server_websocket(listener=Collect())
    bad = client_frame(OP_BINARY, b"x", rsv=4)  # RSV3 without an extension: 1002
    buffer = ws.get_buffer(-1)
    buffer[: len(bad)] = bad
    ws.buffer_updated(len(bad))
    error = ws.connection.error
    assert error is not None and error.__traceback__ is None


def test_a_window_refused_as_too_short_costs_no_allocation_each_time():
    """An I/O layer asks for a window before every read and refuses one under
    its read size; the parser must not allocate the rest of the frame each
    time: asked again, it offers the same memory."""
    connection = fastws.connection.Connection(is_client=True, max_message_size=None)
    connection.receive_data(server_frame(OP_BINARY, pattern(1 << 20, 2))[:1000])
    first = connection.receive_buffer()
    assert first is not None and len(first) == (1 << 20) + 10 - 1000
    assert connection.receive_buffer(2 << 20) is None  # more than is to come: refused
    again = connection.receive_buffer()
    assert again is not None and len(again) == len(first)
    assert address(again) == address(first)


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def run_on(loop_name: str, main) -> None:
    if loop_name == "uvloop":
        import uvloop

        uvloop.run(asyncio.wait_for(main(), 60))
    else:
        asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop", "aiofastnet"])
def test_every_loop_reads_large_payloads_in_place(loop_name, monkeypatch):
    """uvloop, asyncio's own loop and aiofastnet all read a WebSocket through
    get_buffer()/buffer_updated() (it is a BufferedProtocol), and the rest of
    a large message goes straight into its payload."""
    in_place = {True: 0, False: 0}  # bytes read into payloads, by a client (True) and by the server
    into_payload = {}  # WebSocket -> whether its last get_buffer() was a payload's window
    get_buffer, buffer_updated = protocol.WebSocket.get_buffer, protocol.WebSocket.buffer_updated

    def watched_get_buffer(self, sizehint):
        window = get_buffer(self, sizehint)
        into_payload[self] = window.obj is not protocol.receive_buffer().obj  # not the loop's shared buffer
        return window

    def counting_buffer_updated(self, nbytes):
        if into_payload.pop(self, False):
            in_place[self.is_client] += nbytes
        return buffer_updated(self, nbytes)

    monkeypatch.setattr(protocol.WebSocket, "get_buffer", watched_get_buffer)
    monkeypatch.setattr(protocol.WebSocket, "buffer_updated", counting_buffer_updated)
    message = pattern(1 << 20, 9)  # one frame (MAX_FRAME_SIZE): a fragmented message is assembled, not read in place

    async def main():
        if loop_name == "aiofastnet":
            import aiofastnet

            aiofastnet.patch_loop(asyncio.get_running_loop())

        async def echo(ws):
            async for received in ws:
                await ws.send(received)

        async with serve(echo, "127.0.0.1", 0, max_message_size=None, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", max_message_size=None, compression=None) as ws:
                for _ in range(3):
                    await ws.send(message)
                    assert await ws.recv() == message

    run_on(loop_name, main)
    # Reads are at most 256 KiB (the shared buffer). The client allocates
    # each echo at its header: all of it goes in place but the first read
    # and a rest under 64 KiB. The server allocates a masked message once
    # half of it is here: at least the last 256 KiB go in place.
    assert in_place[True] >= 3 * (len(message) - 320 * 1024)
    assert in_place[False] >= 3 * 256 * 1024
