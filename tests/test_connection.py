"""The sans-I/O connection over both codec backends: events, automatic replies,
the close handshake of RFC 6455 §7 and failure on bad input."""

from __future__ import annotations

import os

import pytest

from fastws.connection import PASSTHROUGH_BYTES, Connection, State
from fastws.exceptions import ConnectionClosedError, ConnectionClosedOK
from fastws.frames import build_close

from .support.frames import client_frame


@pytest.fixture
def server(codec):
    return Connection(is_client=False, codec=codec)


@pytest.fixture
def client(codec):
    return Connection(is_client=True, codec=codec)


def test_messages_and_pings_become_events(server, codec):
    events = server.receive_data(client_frame(1, b"hi") + client_frame(9, b"p") + client_frame(2, b"\x00"))
    assert events == [codec.Frame(1, "hi"), codec.Frame(9, b"p"), codec.Frame(2, b"\x00")]
    # RFC 6455 §5.5.2: a ping gets a pong with the same payload.
    assert server.data_to_send() == b"\x8a\x01p"
    assert server.data_to_send() == b""


def test_receive_data_takes_the_first_size_bytes_of_a_read_buffer(server, codec):
    """What an I/O layer that reads into one buffer passes: the buffer and the count read."""
    wire = client_frame(1, b"hi") + client_frame(9, b"p")
    buffer = bytearray(b"\xff" * 64)  # stale bytes after the read: a bad frame if parsed
    buffer[: len(wire)] = wire
    assert server.receive_data(memoryview(buffer), len(wire)) == [codec.Frame(1, "hi"), codec.Frame(9, b"p")]
    assert server.data_to_send() == b"\x8a\x01p"
    assert server.error is None


def test_client_and_server_talk(server, client, codec):
    assert server.receive_data(client.send("héllo")) == [codec.Frame(1, "héllo")]
    assert client.receive_data(server.send(b"bin")) == [codec.Frame(2, b"bin")]
    client.receive_data(server.send_ping(b"x"))
    assert server.receive_data(client.data_to_send()) == [codec.Frame(10, b"x")]


def test_outbound_fragmentation_at_max_frame_size(codec):
    sender = Connection(is_client=True, max_frame_size=131072, codec=codec)
    receiver = codec.FrameParser(assemble=False)
    frames = receiver.feed(sender.send(bytes(262145)))
    assert [len(f.payload) for f in frames] == [131072, 131072, 1]


def test_streaming_fragments_with_control_frames_between(server, client, codec):
    wire = (
        client.send_fragment("he")
        + client.send_ping(b"")
        + client.send_fragment("ll")
        + client.send_fragment("o", fin=True)
    )
    assert server.receive_data(wire) == [codec.Frame(9, b""), codec.Frame(1, "hello")]
    with pytest.raises(RuntimeError):
        client.send_fragment(b"a")
        client.send(b"interleaved")


def test_server_initiated_close_handshake(server, client):
    client.receive_data(server.send_close(1000, "bye"))
    assert server.state is State.CLOSING
    assert client.state is State.CLOSED and client.close_code == 1000 and client.close_reason == "bye"
    assert not client.should_close_transport  # RFC 6455 §7.1.1: the server closes TCP first
    server.receive_data(client.data_to_send())  # the echoed close
    assert server.state is State.CLOSED and server.close_code == 1000
    assert server.should_close_transport


def test_client_initiated_close_echoes_code(server, client, codec):
    server.receive_data(client.send_close(4000, "done"))
    echoed = codec.FrameParser(is_client=True).feed(server.data_to_send())
    assert echoed == [codec.Frame(8, build_close(4000, "done"))]
    assert server.should_close_transport
    assert isinstance(server.close_exception(), ConnectionClosedError)
    client.receive_data(codec.encode_frame(8, build_close(4000, "done")))
    assert client.state is State.CLOSED and client.close_code == 4000


def test_close_without_code_is_1005_and_echoed_empty(server, codec):
    server.receive_data(client_frame(8, b""))
    assert server.close_code == 1005
    assert server.data_to_send() == b"\x88\x00"


def test_connection_lost_without_close_is_1006(server):
    server.receive_eof()
    assert server.close_code == 1006
    with pytest.raises(ConnectionClosedError) as info:
        server.send("x")
    assert info.value.code == 1006


def test_normal_close_raises_closed_ok_on_send(server):
    server.receive_data(client_frame(8, build_close(1000)))
    with pytest.raises(ConnectionClosedOK):
        server.send("late")


@pytest.mark.parametrize(
    "payload, code, clean",
    [
        (build_close(1000), 1000, True),
        (build_close(1001), 1001, True),
        (b"", 1005, True),
        (build_close(4000), 4000, False),
    ],
)
def test_which_closes_are_clean(server, payload, code, clean):
    """1000, 1001 and a close frame without a code (1005, RFC 6455 §7.1.5) end
    cleanly (``async for`` just stops); any other code is an error."""
    server.receive_data(client_frame(8, payload))
    error = server.close_exception()
    assert error.code == code
    assert isinstance(error, ConnectionClosedOK if clean else ConnectionClosedError)


def test_protocol_error_fails_with_its_code_and_keeps_earlier_messages(server, codec):
    events = server.receive_data(client_frame(1, b"good") + client_frame(1, b"\xff"))
    assert events == [codec.Frame(1, "good")]
    assert server.failing and server.state is State.OPEN  # the reply to "good" may still go first
    reply = server.send("echo: good")
    assert server.receive_data(client_frame(1, b"more")) == []  # nothing is parsed past the error
    close = server.data_to_send()  # the failure's close frame, after the reply
    assert server.state is State.CLOSED and server.close_code == 1007 and not server.failing
    parsed = codec.FrameParser(is_client=True).feed(reply + close)
    assert [frame.opcode for frame in parsed] == [1, 8] and parsed[1].payload[:2] == b"\x03\xef"
    assert server.should_close_transport
    with pytest.raises(ConnectionClosedError):
        server.send("too late")


def test_failing_connection_sends_its_own_close_code_whatever_close_is_asked(server, codec):
    server.receive_data(client_frame(3, b""))  # reserved opcode
    assert server.failing
    close = server.send_close(1000, "bye")
    assert codec.FrameParser(is_client=True).feed(close)[0].payload[:2] == b"\x03\xea"  # 1002, not 1000
    assert server.close_code == 1002


def test_bad_bytes_after_a_close_frame_are_not_an_error(server, codec):
    server.receive_data(client_frame(8, build_close(1000)) + client_frame(3, b""))
    assert server.close_code == 1000 and server.error is None


def test_data_after_close_frame_is_ignored(server, codec):
    events = server.receive_data(client_frame(8, build_close(1000)) + client_frame(1, b"late"))
    assert events == [codec.Frame(8, build_close(1000))]


def test_oversize_message_is_1009(codec):
    server = Connection(max_message_size=10, codec=codec)
    server.receive_data(client_frame(2, bytes(11)))
    server.data_to_send()
    assert server.close_code == 1009


def test_no_pong_after_close_sent(server):
    server.send_close()
    server.receive_data(client_frame(9, b"p"))
    assert server.data_to_send() == b""


# -- the gate for pre-encoded messages (broadcast, relay) ---------------------


def test_prepared_message_is_shared_by_servers_and_masked_by_clients(server, client, codec):
    from fastws.connection import PreparedMessage

    prepared = PreparedMessage("héllo", codec)
    assert server.send_prepared(prepared) is prepared.frames  # encoded once, the same bytes for every server
    masked = client.send_prepared(prepared)
    assert masked[1] & 0x80  # RFC 6455 §5.3: a client masks every frame
    assert masked != client.send_prepared(prepared)  # with a fresh key each time
    assert server.receive_data(masked) == [codec.Frame(1, "héllo")]
    assert client.receive_data(server.send_prepared(prepared)) == [codec.Frame(1, "héllo")]


def test_prepared_message_never_interrupts_a_fragmented_message(server, codec):
    from fastws.connection import PreparedMessage

    prepared = PreparedMessage(b"other", codec)
    server.send_fragment("first ")
    assert server.sending_fragments
    with pytest.raises(RuntimeError, match="fragmented message"):
        server.send_prepared(prepared)  # RFC 6455 §5.4: no data frame inside a fragmented message
    server.send_fragment("last", fin=True)
    assert not server.sending_fragments
    assert server.send_prepared(prepared) == prepared.frames


def test_prepared_message_is_refused_once_closing(server, codec):
    from fastws.connection import PreparedMessage

    server.send_close(1000)
    with pytest.raises(ConnectionClosedOK):
        server.send_prepared(PreparedMessage("late", codec))


def test_close_codes_print_as_numbers_on_every_python():
    from fastws.frames import CloseCode

    assert str(CloseCode.ABNORMAL) == "1006"  # was "CloseCode.ABNORMAL" before Python 3.11
    assert f"{CloseCode.GOING_AWAY}" == "1001"


def test_held_pong_waits_but_a_close_reply_leaves_while_not_writable(server):
    server.writable = False
    server.receive_data(client_frame(9, b"a") + client_frame(9, b"b"))
    assert server.data_to_send() == b""  # only the newest pong is kept, for later
    server.receive_data(client_frame(8, b"\x03\xe8"))
    assert server.data_to_send() == b"\x88\x02\x03\xe8"  # the close reply does not wait
    server.writable = True
    assert server.data_to_send() == b""  # closed: the held pong is obsolete


def test_a_fragment_that_cannot_be_encoded_leaves_the_message_state_unchanged(server):
    with pytest.raises(TypeError):
        server.send_fragment(5)  # first piece: nothing was started
    assert not server.sending_fragments
    server.send_fragment("a")
    with pytest.raises(TypeError):
        server.send_fragment(5, fin=True)  # last piece: the message is still open
    assert server.sending_fragments
    with pytest.raises(RuntimeError, match="fragmented message"):
        server.send("inside")


def read_through_buffers(connection, wire: bytes, chunk: int) -> list:
    """Deliver ``wire`` as an I/O layer reading into ``receive_buffer()`` when
    offered would, ``chunk`` bytes at most per read."""
    events, wire = [], memoryview(wire)
    while wire:
        window = connection.receive_buffer()
        if window is None:
            events += connection.receive_data(bytes(wire[:chunk]))
            wire = wire[chunk:]
        else:
            size = min(len(window), chunk, len(wire))
            window[:size] = wire[:size]
            events += connection.receive_into(size)
            wire = wire[size:]
    return events


def test_large_messages_read_into_their_payload(server, client, codec):
    """receive_buffer()/receive_into(): the same events as receive_data(),
    pings in between answered, and nothing offered once closed."""
    payload = os.urandom(300001)
    events = read_through_buffers(server, client_frame(2, payload) + client_frame(9, b"p"), 65536)
    assert events == [codec.Frame(2, payload), codec.Frame(9, b"p")]
    assert server.data_to_send() == b"\x8a\x01p"
    reply = server.send(payload)
    assert client.receive_data(reply[:10]) == []
    assert len(client.receive_buffer()) == len(payload)  # a client reads a server's frame in from its header
    assert read_through_buffers(client, reply[10:], 100000) == [codec.Frame(2, payload)]
    closing = client_frame(2, payload)[:100000] + client_frame(8, build_close(1000, ""))
    server.receive_data(client_frame(8, build_close(1000, "")))
    assert server.state is State.CLOSED
    assert server.receive_buffer() is None
    assert server.receive_into(0) == []
    assert read_through_buffers(server, closing, 100000) == []


def test_compressed_messages_read_into_their_payload(codec):
    from fastws.extensions.permessage_deflate import PerMessageDeflate

    response, server_session = PerMessageDeflate().accept_offer([PerMessageDeflate().offer()])
    client = Connection(is_client=True, deflate=PerMessageDeflate().accept_response(response), codec=codec)
    server = Connection(is_client=False, deflate=server_session, codec=codec)
    payload = os.urandom(200000) + bytes(200000)
    wire = client.send(payload) + client.send("text " * 20000)
    events = read_through_buffers(server, wire, 50000)
    assert events == [codec.Frame(2, payload), codec.Frame(1, "text " * 20000)]


def test_send_buffers_pass_a_large_payload_by_reference_and_join_to_send(codec):
    server = Connection(is_client=False, max_frame_size=100_000, codec=codec)
    large = os.urandom(250_000)
    buffers = server.send_buffers(large)
    assert [len(buffer) for buffer in buffers] == [10, 100_000, 10, 100_000, 4, 50_000]
    assert all(buffer.obj is large for buffer in buffers[1::2])  # slices of it, not copies
    assert b"".join(buffers) == server.send(large)
    text = "é" * 40_000  # 80,000 bytes
    assert b"".join(server.send_buffers(text)) == server.send(text)
    below = os.urandom(PASSTHROUGH_BYTES - 1)  # copied: one buffer
    assert server.send_buffers(below) == [server.send(below)]
    one_frame = Connection(is_client=False, codec=codec)
    assert one_frame.send_buffers(large)[1] is large


@pytest.mark.parametrize(
    "message",
    [b"small", bytearray(100_000), memoryview(bytes(100_000))],
    ids=["small", "bytearray", "memoryview"],
)
def test_send_buffers_copy_small_and_mutable_payloads(server, codec, message):
    assert server.send_buffers(message) == [server.send(message)]


def test_a_client_masks_a_copy_of_every_payload(client, codec):
    buffers = client.send_buffers(bytes(100_000))
    assert len(buffers) == 1 and type(buffers[0]) is bytes
    assert codec.FrameParser().feed(buffers[0]) == [codec.Frame(2, bytes(100_000))]


def test_send_buffers_refuse_what_send_refuses(server, codec):
    server.send_fragment(b"first")
    with pytest.raises(RuntimeError, match="fragmented message"):
        server.send_buffers(bytes(100_000))
    server.send_fragment(b"last", fin=True)
    server.send_close(1000)
    with pytest.raises(ConnectionClosedOK):
        server.send_buffers(bytes(100_000))


def test_send_buffers_compress_and_pass_the_compressed_payload(codec):
    from fastws.extensions.permessage_deflate import PerMessageDeflate

    response, server_session = PerMessageDeflate().accept_offer([PerMessageDeflate().offer()])
    client = Connection(is_client=True, deflate=PerMessageDeflate().accept_response(response), codec=codec)
    server = Connection(is_client=False, deflate=server_session, codec=codec)
    messages = [os.urandom(100_000), "text " * 20_000, bytes(300_000)]
    wire = b"".join(b"".join(server.send_buffers(message)) for message in messages)
    assert [frame.payload for frame in client.receive_data(wire)] == messages
