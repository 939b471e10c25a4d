"""The frame codec, over both backends: RFC 6455 §5 framing, masking, limits, errors."""

from __future__ import annotations

import array
import gc
import os
import platform
import struct
import tracemalloc

import pytest

from fastws import _rules
from fastws import codec as selected_codec
from fastws._allocator import heap_usage
from fastws.exceptions import InvalidUTF8, MessageTooBig, ProtocolError
from fastws.frames import MAX_FRAME_SIZE, build_close, parse_close

from .support.frames import KEY, client_frame, naive_mask


def feed_bytewise(parser, data: bytes) -> list:
    frames = []
    for i in range(len(data)):
        frames += parser.feed(data[i : i + 1])
    return frames


# -- RFC 6455 §5.7 examples, byte for byte ---------------------------------

HELLO_UNMASKED = bytes.fromhex("810548656c6c6f")
HELLO_MASKED = bytes.fromhex("818537fa213d7f9f4d5158")
HELLO_FRAGMENTED = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
PING_UNMASKED = bytes.fromhex("890548656c6c6f")
PONG_MASKED = bytes.fromhex("8a8537fa213d7f9f4d5158")


def test_rfc_examples_encode_byte_for_byte(codec):
    assert codec.encode_frame(1, b"Hello") == HELLO_UNMASKED
    assert codec.encode_frame(1, "Hello", mask=True, mask_key=KEY) == HELLO_MASKED
    assert codec.encode_message(1, "Hello", max_frame_size=3) == HELLO_FRAGMENTED
    assert codec.encode_frame(9, b"Hello") == PING_UNMASKED
    assert codec.encode_frame(10, b"Hello", mask=True, mask_key=KEY) == PONG_MASKED
    assert codec.encode_frame(2, bytes(256)) == bytes.fromhex("827e0100") + bytes(256)
    assert codec.encode_frame(2, bytes(65536)) == bytes.fromhex("827f0000000000010000") + bytes(65536)


def test_rfc_examples_parse(codec):
    client = codec.FrameParser(is_client=True)
    assert client.feed(HELLO_UNMASKED) == [codec.Frame(1, "Hello")]
    assert client.feed(HELLO_FRAGMENTED) == [codec.Frame(1, "Hello")]
    assert client.feed(PING_UNMASKED) == [codec.Frame(9, b"Hello")]
    server = codec.FrameParser()
    assert server.feed(HELLO_MASKED) == [codec.Frame(1, "Hello")]
    assert server.feed(PONG_MASKED) == [codec.Frame(10, b"Hello")]
    assert client.feed(bytes.fromhex("827e0100") + bytes(256)) == [codec.Frame(2, bytes(256))]
    big = bytes.fromhex("827f0000000000010000") + bytes(65536)
    assert client.feed(big) == [codec.Frame(2, bytes(65536))]


def test_frames_of_both_backends_compare_by_fields(codec):
    assert codec.Frame(1, "a") == selected_codec.Frame(1, "a")
    assert codec.Frame(1, "a") != codec.Frame(1, b"a")
    assert codec.Frame(2, b"a", fin=False) != codec.Frame(2, b"a")
    assert "payload=b'abc'" in repr(codec.Frame(2, b"abc"))


# -- masking ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 127, 128, 129, 1000, 4099])
def test_apply_mask_matches_reference(codec, size):
    data = os.urandom(size)
    expected = naive_mask(data, KEY)
    assert codec.apply_mask(data, KEY) == expected
    assert codec.apply_mask(bytearray(data), bytearray(KEY)) == expected
    assert codec.apply_mask(memoryview(data), KEY) == expected
    assert codec.apply_mask(expected, KEY) == data


def test_apply_mask_inplace(codec):
    data = os.urandom(1037)
    buffer = bytearray(data)
    codec.apply_mask_inplace(buffer, KEY)
    assert buffer == naive_mask(data, KEY)
    view = memoryview(buffer)[5:]
    codec.apply_mask_inplace(view, KEY)
    assert buffer[5:] == naive_mask(naive_mask(data, KEY)[5:], KEY)


def test_apply_mask_rejects_bad_arguments(codec):
    with pytest.raises(ValueError, match="mask must be 4 bytes"):
        codec.apply_mask(b"abc", b"xyz")
    with pytest.raises(TypeError, match="writable"):
        codec.apply_mask_inplace(b"immutable", KEY)


# -- incremental parsing ---------------------------------------------------


def test_one_byte_at_a_time(codec):
    stream = (
        client_frame(1, "héllo wörld".encode())
        + client_frame(2, bytes(300), fin=False)
        + client_frame(9, b"ping")
        + client_frame(0, bytes(70000))
        + client_frame(1, b"")
        + client_frame(8, build_close(1000, "bye"))
    )
    frames = feed_bytewise(codec.FrameParser(), stream)
    assert frames == [
        codec.Frame(1, "héllo wörld"),
        codec.Frame(9, b"ping"),
        codec.Frame(2, bytes(70300)),
        codec.Frame(1, ""),
        codec.Frame(8, build_close(1000, "bye")),
    ]


def test_ten_mebibytes_at_once(codec):
    payload = os.urandom(10 << 20)
    parser = codec.FrameParser(max_message_size=None)
    key = bytes((1, 2, 3, 4))  # masking itself is checked against a reference above
    frame = bytes((0x82, 0xFF)) + (10 << 20).to_bytes(8, "big") + key + codec.apply_mask(payload, key)
    assert parser.feed(frame) == [codec.Frame(2, payload)]
    assert parser.buffered == 0


def test_large_frame_in_64k_chunks(codec):
    payload = os.urandom(1 << 20)
    stream = client_frame(2, payload)
    parser = codec.FrameParser()
    frames = []
    for start in range(0, len(stream), 65536):
        frames += parser.feed(stream[start : start + 65536])
        if not frames:
            assert 0 < parser.buffered <= start + 65536
    assert frames == [codec.Frame(2, payload)]
    assert parser.buffered == 0


@pytest.mark.parametrize("assemble", [True, False])
@pytest.mark.parametrize("chunk", [1000, 65537, 333333])
def test_large_frames_in_odd_chunks(codec, assemble, chunk):
    """Large frames that arrive in pieces (the parser moves to the payload's
    own object once half of a frame is here): every mask phase at the move,
    a text message (kept in the buffer to be decoded), frames back to back."""
    binary, text = os.urandom(700001), "é" * 150001
    stream = client_frame(2, binary) + client_frame(1, text.encode()) + client_frame(2, binary[:99999])
    parser = codec.FrameParser(assemble=assemble)
    frames = []
    for start in range(0, len(stream), chunk):
        frames += parser.feed(stream[start : start + chunk])
    payload = text if assemble else text.encode()
    assert frames == [codec.Frame(2, binary), codec.Frame(1, payload), codec.Frame(2, binary[:99999])]
    assert parser.buffered == 0


@pytest.mark.parametrize("size", [1 << 20, (16 << 20) + 1])
def test_large_server_frames_to_a_client_in_chunks(codec, size):
    """A client takes a server's large frame into its payload object from the
    header on (up to 16 MiB; beyond, from half-way): a header announcing more
    than is sent yields nothing, and the message is whole however it arrives."""
    payload = os.urandom(size)
    header = bytes((0x82, 127)) + size.to_bytes(8, "big")
    parser = codec.FrameParser(is_client=True, max_message_size=None)
    assert parser.feed(header + payload[:10]) == []
    frames = []
    for start in range(10, size, 262144):
        frames += parser.feed(payload[start : start + 262144])
    assert frames == [codec.Frame(2, payload)]
    assert parser.buffered == 0


def test_payload_buffer_rules(codec):
    """Where a parser offers to take bytes straight into a payload: a client
    from a server frame's header on (up to 16 MiB), anyone once half a large
    frame is here or for a small one; never for text being validated, control
    frames, between frames or once failed."""
    size = 1 << 20
    big = bytes((0x82, 127)) + size.to_bytes(8, "big")
    client = codec.FrameParser(is_client=True)
    assert client.payload_buffer() is None  # between frames
    client.feed(big[:5])
    assert client.payload_buffer() is None  # a partial header
    client.feed(big[5:])
    assert len(client.payload_buffer()) == size
    huge = codec.FrameParser(is_client=True, max_message_size=None)
    huge.feed(bytes((0x82, 127)) + ((16 << 20) + 1).to_bytes(8, "big"))
    assert huge.payload_buffer() is None  # beyond what a client trusts its server with
    text = codec.FrameParser(is_client=True)
    text.feed(bytes((0x81, 127)) + size.to_bytes(8, "big"))
    assert text.payload_buffer() is None  # validated as it arrives: through feed()
    server = codec.FrameParser()
    stream = client_frame(2, bytes(size))
    server.feed(stream[: len(stream) // 2])
    assert server.payload_buffer() is None  # a header and less than half: no allocation
    server.feed(stream[len(stream) // 2 : len(stream) // 2 + 20])
    window = server.payload_buffer()
    assert len(window) == len(stream) - (len(stream) // 2 + 20)
    small = codec.FrameParser()
    small.feed(client_frame(2, bytes(1000))[:100])
    assert len(small.payload_buffer()) == 1000 - (100 - 8)
    ping = codec.FrameParser()
    ping.feed(client_frame(9, bytes(100))[:50])
    assert ping.payload_buffer() is None


def test_payload_received_unmasks_in_place_and_completes_the_frame(codec):
    payload = os.urandom(200003)
    stream = client_frame(2, payload) + client_frame(1, b"next")
    parser = codec.FrameParser()
    assert parser.feed(stream[:150001]) == []
    rest = memoryview(stream)[150001:]
    while True:
        window = parser.payload_buffer()
        if window is None:
            break
        size = min(len(window), 4999)  # odd sizes: every mask phase
        window[:size] = rest[:size]
        rest = rest[size:]
        frames = parser.payload_received(size)
    assert frames == [codec.Frame(2, payload)]
    assert parser.feed(rest) == [codec.Frame(1, "next")]


def test_payload_received_misuse(codec):
    parser = codec.FrameParser(is_client=True)
    with pytest.raises(ValueError, match="without a buffer"):
        parser.payload_received(0)
    parser.feed(bytes((0x82, 126, 0x10, 0)))
    window = parser.payload_buffer()
    with pytest.raises(ValueError, match="holds 4096 bytes"):
        parser.payload_received(4097)
    with pytest.raises(ValueError, match="holds 4096 bytes"):
        parser.payload_received(-1)
    with pytest.raises(TypeError, match="size must be an integer"):
        parser.payload_received(1.0)
    window[:2] = b"ab"
    assert parser.feed(b"") == []  # a feed() discards the buffer given out
    with pytest.raises(ValueError, match="without a buffer"):
        parser.payload_received(2)
    with pytest.raises(ProtocolError):
        parser.feed(bytes(4096) + b"\x83\x00")  # a reserved opcode: the parser fails
    assert parser.payload_buffer() is None
    with pytest.raises(ProtocolError):
        parser.payload_received(0)


def test_feed_accepts_any_buffer(codec):
    parser = codec.FrameParser()
    assert parser.feed(bytearray(HELLO_MASKED)) == [codec.Frame(1, "Hello")]
    assert parser.feed(memoryview(HELLO_MASKED)) == [codec.Frame(1, "Hello")]


def test_feed_parses_the_first_size_bytes_of_a_reused_buffer(codec):
    """An I/O layer reads into one large buffer and passes how much it read:
    only those bytes are parsed, and a partial frame is kept by the parser,
    not by reference to a buffer that the next read overwrites."""
    stream = client_frame(2, b"abc") + client_frame(1, b"hello") + client_frame(9, b"p")
    buffer = bytearray(64)
    parser, frames = codec.FrameParser(), []
    for start, stop in ((0, 9), (9, 14), (14, len(stream))):
        buffer[:] = bytes(64)  # what a read does not fill is stale: zero it to show it is not parsed
        buffer[: stop - start] = stream[start:stop]
        frames += parser.feed(memoryview(buffer), stop - start)
    assert frames == [codec.Frame(2, b"abc"), codec.Frame(1, "hello"), codec.Frame(9, b"p")]
    assert parser.buffered == 0
    assert parser.feed(stream, 0) == [] and parser.buffered == 0
    with pytest.raises(ValueError, match=r"size must be from 0 to 64 \(the bytes of data\), not 65"):
        parser.feed(buffer, 65)
    with pytest.raises(TypeError, match="size must be an integer"):
        parser.feed(buffer, 1.0)


@pytest.mark.parametrize("payload", [b"text: h\xc3\xa9llo " * 20, bytes(range(256)) * 400], ids=["text", "100 KiB"])
def test_feed_with_size_splits_anywhere_in_a_payload(codec, payload):
    """Reads that end inside a payload (text validated as it arrives, a large
    binary frame read in place on its way) give the same message."""
    opcode = 1 if payload.startswith(b"text") else 2
    stream = client_frame(opcode, payload)
    expected = codec.Frame(opcode, payload.decode() if opcode == 1 else payload)
    for cut in (7, len(stream) // 3, len(stream) - 1):
        parser, buffer, frames = codec.FrameParser(max_message_size=None), bytearray(len(stream) + 16), []
        for start, stop in ((0, cut), (cut, len(stream))):
            buffer[:] = b"\xff" * len(buffer)  # stale bytes past the read: a bad frame if parsed
            buffer[: stop - start] = stream[start:stop]
            frames += parser.feed(memoryview(buffer), stop - start)
        assert frames == [expected] and parser.buffered == 0


def test_control_frames_inside_fragmented_message(codec):
    stream = (
        client_frame(1, b"frag", fin=False)
        + client_frame(9, b"p1")
        + client_frame(0, b"men", fin=False)
        + client_frame(10, b"")
        + client_frame(0, b"ted")
    )
    assert codec.FrameParser().feed(stream) == [
        codec.Frame(9, b"p1"),
        codec.Frame(10, b""),
        codec.Frame(1, "fragmented"),
    ]


def test_frame_mode_hands_each_frame(codec):
    stream = client_frame(1, b"ab", fin=False) + client_frame(9, b"") + client_frame(0, b"c")
    stream += client_frame(2, b"xyz")
    parser = codec.FrameParser(assemble=False)
    assert parser.feed(stream) == [
        codec.Frame(1, b"ab", fin=False),
        codec.Frame(9, b""),
        codec.Frame(0, b"c"),
        codec.Frame(2, b"xyz"),
    ]
    assert feed_bytewise(codec.FrameParser(assemble=False), stream) == parser.feed(b"") + [
        codec.Frame(1, b"ab", fin=False),
        codec.Frame(9, b""),
        codec.Frame(0, b"c"),
        codec.Frame(2, b"xyz"),
    ]


def test_client_parser_reads_unmasked_server_frames(codec):
    stream = codec.encode_message(2, bytes(1000), max_frame_size=300) + codec.encode_frame(1, "ok")
    assert codec.FrameParser(is_client=True).feed(stream) == [codec.Frame(2, bytes(1000)), codec.Frame(1, "ok")]


def test_rsv1_allowed_when_negotiated(codec):
    parser = codec.FrameParser(rsv1_allowed=True)
    stream = client_frame(1, b"\xff\x00", fin=False, rsv=0x40) + client_frame(0, b"\x01")
    # A compressed text message is not UTF-8 yet: it comes out as bytes.
    assert parser.feed(stream) == [codec.Frame(1, b"\xff\x00\x01", rsv1=True)]


# -- protocol errors carry their close code --------------------------------

ERRORS_1002 = {
    "unmasked frame from a client": bytes.fromhex("810548656c6c6f"),
    "RSV1 set without a negotiated extension": client_frame(1, b"x", rsv=0x40),
    "reserved bits RSV2/RSV3 set": client_frame(1, b"x", rsv=0x20),
    "reserved opcode 3": client_frame(3, b"x"),
    "reserved opcode 11": client_frame(11, b"x"),
    "fragmented control frame": client_frame(9, b"x", fin=False),
    "control frame payload longer than 125 bytes": client_frame(9, bytes(126)),
    "continuation frame without a message to continue": client_frame(0, b"x"),
    "new data frame inside a fragmented message": client_frame(1, b"a", fin=False) + client_frame(2, b"b"),
    "close frame payload of 1 byte": client_frame(8, b"\x03"),
    "frame length with the most significant bit set": bytes.fromhex("82ff8000000000000000") + KEY,
}


@pytest.mark.parametrize("reason", sorted(ERRORS_1002))
def test_protocol_errors_are_1002(codec, reason):
    with pytest.raises(ProtocolError) as info:
        codec.FrameParser().feed(ERRORS_1002[reason])
    assert type(info.value) is ProtocolError
    assert info.value.code == 1002
    assert info.value.reason == reason


def test_masked_frame_from_server_is_1002(codec):
    with pytest.raises(ProtocolError, match="masked frame from a server") as info:
        codec.FrameParser(is_client=True).feed(HELLO_MASKED)
    assert info.value.code == 1002


def test_rsv1_on_control_or_continuation_is_1002_even_when_negotiated(codec):
    for stream in (client_frame(9, b"", rsv=0x40), client_frame(1, b"a", fin=False) + client_frame(0, b"b", rsv=0x40)):
        with pytest.raises(ProtocolError) as info:
            codec.FrameParser(rsv1_allowed=True).feed(stream)
        assert info.value.code == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_close_codes_that_may_not_be_sent_are_1002(codec, code):
    with pytest.raises(ProtocolError, match=f"invalid close code {code}") as info:
        codec.FrameParser().feed(client_frame(8, struct.pack("!H", code)))
    assert info.value.code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes_pass(codec, code):
    payload = struct.pack("!H", code) + b"why"
    assert codec.FrameParser().feed(client_frame(8, payload)) == [codec.Frame(8, payload)]


def test_invalid_utf8_is_1007(codec):
    cases = [
        client_frame(1, b"\xff"),
        client_frame(1, b"ok\xed\xa0\x80"),  # UTF-16 surrogate
        client_frame(1, b"\xe2\x82", fin=False) + client_frame(0, b""),  # truncated at the end
        client_frame(8, b"\x03\xe8\xc3\x28"),  # close reason
    ]
    for stream in cases:
        with pytest.raises(InvalidUTF8) as info:
            codec.FrameParser().feed(stream)
        assert info.value.code == 1007


def test_invalid_utf8_fails_on_the_bad_byte_not_at_the_end(codec):
    parser = codec.FrameParser()
    # A text frame announcing 1000 bytes; the 4th byte is invalid.
    head = bytes((0x81, 0x80 | 126)) + struct.pack("!H", 1000) + KEY
    body = naive_mask(b"abc\xff" + bytes(996), KEY)
    assert parser.feed(head + body[:3]) == []
    with pytest.raises(InvalidUTF8):
        parser.feed(body[3:4])


def test_invalid_utf8_across_fragments_fails_early(codec):
    parser = codec.FrameParser(assemble=False)
    assert parser.feed(client_frame(1, "ñ".encode()[:1], fin=False)) == [codec.Frame(1, b"\xc3", fin=False)]
    with pytest.raises(InvalidUTF8):
        parser.feed(client_frame(0, b"A", fin=False))


def test_split_code_point_across_fragments_is_valid(codec):
    text = "κόσμε".encode()
    stream = client_frame(1, text[:3], fin=False) + client_frame(0, text[3:])
    assert feed_bytewise(codec.FrameParser(), stream) == [codec.Frame(1, "κόσμε")]


def test_frame_over_limit_is_1009_from_the_header(codec):
    parser = codec.FrameParser(max_frame_size=100)
    with pytest.raises(MessageTooBig) as info:
        parser.feed(bytes((0x82, 0x80 | 126)) + struct.pack("!H", 101))  # no mask key, no payload yet
    assert info.value.code == 1009


def test_message_over_limit_across_fragments_is_1009(codec):
    parser = codec.FrameParser(max_message_size=1000)
    assert parser.feed(client_frame(2, bytes(600), fin=False)) == []
    with pytest.raises(MessageTooBig) as info:
        parser.feed(client_frame(0, bytes(600))[:4])
    assert info.value.code == 1009


def test_huge_length_header_allocates_nothing(codec):
    header = bytes((0x82, 0xFF)) + struct.pack("!Q", (1 << 63) - 1) + KEY
    with pytest.raises(MessageTooBig):
        codec.FrameParser().feed(header)
    unlimited = codec.FrameParser(max_message_size=None)
    tracemalloc.start()
    try:
        unlimited.feed(header + bytes(1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert unlimited.buffered <= 4096 + 1000


def c_heap_in_use() -> int:
    usage = heap_usage()
    assert usage is not None
    return usage.in_use


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="reads glibc's mallinfo2")
def test_parsers_between_messages_hold_no_buffers(codec):
    """An idle connection's parser keeps no scratch or assembly buffer from
    the messages it parsed: small and large text, a frame split across reads,
    a fragmented message (4 KiB each for 10,000 idle connections is 40 MB)."""
    small = client_frame(1, b"hello " * 50)
    large = client_frame(1, "\u00e9".encode() * 3000)
    split = client_frame(1, b"x" * 3000)
    fragmented = client_frame(1, b"a" * 700, fin=False) + client_frame(0, b"b" * 700)
    count = 400
    parsers = [codec.FrameParser() for _ in range(count)]
    gc.collect()
    heap = c_heap_in_use()
    tracemalloc.start()
    try:
        for parser in parsers:
            assert [f.payload for f in parser.feed(small)] == ["hello " * 50]
            assert len(parser.feed(large)[0].payload) == 3000
            assert parser.feed(split[:1000]) == [] and len(parser.feed(split[1000:])[0].payload) == 3000
            assert parser.feed(fragmented[:900]) == []
            assert parser.feed(fragmented[900:])[0].payload == "a" * 700 + "b" * 700
        gc.collect()
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = max(0, c_heap_in_use() - heap) + traced  # the C codec's buffers, the twin's objects
    assert held / count < 256, f"{held / count:.0f} bytes per idle parser"


def test_error_keeps_frames_decoded_before_it(codec):
    parser = codec.FrameParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(client_frame(1, b"first") + client_frame(2, b"second") + client_frame(3, b""))
    assert info.value.frames == [codec.Frame(1, "first"), codec.Frame(2, b"second")]
    assert parser.failed
    with pytest.raises(ProtocolError):
        parser.feed(client_frame(1, b"after"))


# -- encoding --------------------------------------------------------------


def test_default_max_frame_size():
    assert MAX_FRAME_SIZE == 1 << 20


def test_fragmentation_at_max_frame_size(codec):
    payload = os.urandom(262145)
    wire = codec.encode_message(2, payload, max_frame_size=131072)
    frames = codec.FrameParser(is_client=True, assemble=False).feed(wire)
    assert [(f.opcode, f.fin, len(f.payload)) for f in frames] == [(2, False, 131072), (0, False, 131072), (0, True, 1)]
    assert b"".join(f.payload for f in frames) == payload


def test_masked_message_round_trips_with_fresh_keys(codec):
    payload = os.urandom(5000)
    wire = codec.encode_message(2, payload, mask=True, max_frame_size=1000)
    keys = set()
    pos = 0
    while pos < len(wire):
        keys.add(wire[pos + 4 : pos + 8])
        pos += 4 + 4 + 1000
    assert len(keys) == 5
    assert codec.FrameParser().feed(wire) == [codec.Frame(2, payload)]


def test_text_payload_is_utf8(codec):
    assert codec.encode_frame(1, "é") == b"\x81\x02\xc3\xa9"
    assert codec.encode_frame(2, bytearray(b"ab")) == b"\x82\x02ab"


def test_encoder_rejects_invalid_frames(codec):
    with pytest.raises(ValueError, match="invalid opcode"):
        codec.encode_frame(3, b"")
    with pytest.raises(ValueError, match="longer than 125"):
        codec.encode_frame(9, bytes(126))
    with pytest.raises(ValueError, match="cannot be fragmented"):
        codec.encode_frame(8, b"", fin=False)
    with pytest.raises(ValueError, match="at least 1"):
        codec.encode_message(2, b"x", max_frame_size=0)
    # Control frames are never fragmented, whatever max_frame_size says.
    assert codec.encode_message(9, b"abcdef", max_frame_size=2) == b"\x89\x06abcdef"


# -- close payloads ---------------------------------------------------------


def test_build_and_parse_close():
    assert build_close(1000, "bye") == b"\x03\xe8bye"
    assert parse_close(b"\x03\xe8bye") == (1000, "bye")
    assert parse_close(b"") == (1005, "")
    assert build_close(None) == b""
    with pytest.raises(ValueError):
        build_close(1005)
    with pytest.raises(ValueError):
        build_close(1000, "x" * 124)
    with pytest.raises(ProtocolError):
        parse_close(b"\x03")
    with pytest.raises(ProtocolError):
        parse_close(b"\x03\xed")  # 1005
    with pytest.raises(InvalidUTF8):
        parse_close(b"\x03\xe8\xff")


def test_selected_backend():
    """FASTWS_CODEC=python forces the twin; otherwise the extension must be in use
    unless the build was told to skip it."""
    if os.environ.get("FASTWS_CODEC") == "python" or os.environ.get("FASTWS_NO_EXTENSIONS"):
        assert selected_codec.BACKEND == "python"
    else:
        assert selected_codec.BACKEND == "cython"


# -- arguments: one behaviour on both backends (fastws._rules) --------------


class Index:
    """An integer that is not an int (as numpy's are)."""

    def __index__(self) -> int:
        return 2


def test_frame_normalizes_its_arguments(codec):
    frame = codec.Frame(Index(), b"x", fin=2, rsv1=[])
    assert (type(frame.opcode), frame.opcode, frame.fin, frame.rsv1) == (int, 2, True, False)
    assert type(codec.Frame(True, b"").opcode) is int  # a bool is an int
    frame.fin, frame.rsv1 = 0, "yes"  # assignments follow the same rules
    assert frame.fin is False and frame.rsv1 is True
    with pytest.raises(TypeError, match="^opcode must be an integer, not float$"):
        codec.Frame(1.0, b"")
    with pytest.raises(ValueError, match="^invalid opcode 3$"):
        codec.Frame(3, b"")
    with pytest.raises(ValueError, match=f"^invalid opcode {2**64}$"):
        codec.Frame(2**64, b"")
    with pytest.raises(ValueError, match="^invalid opcode 16$"):
        frame.opcode = 16
    assert frame.opcode == 2


def test_parser_normalizes_its_arguments(codec):
    parser = codec.FrameParser(
        is_client=1, max_message_size=Index(), max_frame_size=2**70, assemble=0, rsv1_allowed="yes"
    )
    assert (parser.is_client, parser.assemble, parser.rsv1_allowed) == (True, False, True)
    assert parser.is_client is True and type(parser.max_message_size) is int
    assert parser.max_frame_size == 2**70  # beyond any frame (RFC 6455 §5.2): no limit
    assert parser.feed(b"\x02\x02ab") == [codec.Frame(2, b"ab", fin=False)]
    with pytest.raises(MessageTooBig):
        parser.feed(b"\x80\x01c")  # the message would exceed 2 bytes
    with pytest.raises(AttributeError):
        parser.is_client = False  # read-only: fixed at construction
    with pytest.raises(ValueError, match="^max_message_size must be None or at least 0, not -1$"):
        codec.FrameParser(max_message_size=-1)
    with pytest.raises(TypeError, match="^max_frame_size must be an integer, not str$"):
        codec.FrameParser(max_frame_size="1")
    assert codec.FrameParser(max_message_size=0).feed(b"\x82\x80abcd") == [codec.Frame(2, b"")]


def test_bytes_like_arguments(codec):
    """Any buffer counts by its bytes in C order; a str only as a payload; ints never
    (``bytes(3)`` would be three zero bytes)."""
    words = array.array("I", [0x01020304, 0x05060708])
    assert codec.apply_mask(words, KEY) == naive_mask(words.tobytes(), KEY)
    strided = memoryview(b"aXbXcXdX")[::2]
    assert codec.apply_mask(strided, KEY) == naive_mask(b"abcd", KEY)
    assert codec.apply_mask(b"abcd", memoryview(KEY + KEY)[::2]) == naive_mask(b"abcd", KEY[::2] + KEY[::2])
    assert codec.encode_frame(2, strided) == b"\x82\x04abcd"
    assert codec.FrameParser(is_client=True).feed(memoryview(b"\x82X\x01Xa")[::2]) == [codec.Frame(2, b"a")]
    masked = codec.encode_frame(2, b"x", mask=True, mask_key=KEY)
    assert codec.encode_frame(2, b"x", mask=True, mask_key=bytearray(KEY)) == masked
    for bad in (3, [1], None):
        name = type(bad).__name__
        with pytest.raises(TypeError, match=f"^payload must be str or a bytes-like object, not {name}$"):
            codec.encode_frame(2, bad)
        with pytest.raises(TypeError, match=f"^payload must be str or a bytes-like object, not {name}$"):
            codec.encode_message(2, bad)
        with pytest.raises(TypeError, match=f"^data must be a bytes-like object, not {name}$"):
            codec.apply_mask(bad, KEY)
        with pytest.raises(TypeError, match=f"^data must be a bytes-like object, not {name}$"):
            codec.FrameParser().feed(bad)
    with pytest.raises(TypeError, match="^data must be a bytes-like object, not str$"):
        codec.FrameParser().feed("\x81")
    with pytest.raises(TypeError, match="^mask must be a bytes-like object, not str$"):
        codec.apply_mask(b"", "abcd")
    with pytest.raises(TypeError, match="^mask_key must be a bytes-like object, not int$"):
        codec.encode_frame(2, b"", mask=True, mask_key=1234)
    with pytest.raises(ValueError, match="^mask_key must be 4 bytes$"):
        codec.encode_message(2, b"", mask=True, mask_key=b"abc")
    assert codec.encode_frame(2, b"", mask_key="unused") == b"\x82\x00"  # only read with mask=True


def test_apply_mask_inplace_needs_a_writable_contiguous_buffer(codec):
    for buffer in (b"abcd", memoryview(bytearray(8))[::2]):
        with pytest.raises(TypeError, match="^apply_mask_inplace needs a writable, C-contiguous buffer$"):
            codec.apply_mask_inplace(buffer, KEY)
    with pytest.raises(TypeError, match="^buffer must be a bytes-like object, not str$"):
        codec.apply_mask_inplace("abcd", KEY)
    words = array.array("H", [1, 2, 3])
    codec.apply_mask_inplace(words, KEY)
    assert words.tobytes() == naive_mask(array.array("H", [1, 2, 3]).tobytes(), KEY)


def test_encode_message_max_frame_size(codec):
    assert codec.encode_message(2, b"abc", max_frame_size=2**80) == b"\x82\x03abc"
    assert codec.encode_message(2, b"abc", max_frame_size=Index()) == b"\x02\x02ab\x80\x01c"
    with pytest.raises(TypeError, match="^max_frame_size must be an integer, not float$"):
        codec.encode_message(2, b"abc", max_frame_size=1.5)
    with pytest.raises(ValueError, match="^max_frame_size must be at least 1$"):
        codec.encode_message(2, b"abc", max_frame_size=-(2**70))


def test_arguments_are_checked_in_signature_order(codec):
    """Several bad arguments: the first in the signature is reported, then the
    rules that combine arguments (RFC 6455 §5.5), then the masking key."""
    with pytest.raises(TypeError, match="^opcode"):
        codec.encode_frame(None, None, mask=True, mask_key=1)
    with pytest.raises(TypeError, match="^payload"):
        codec.encode_frame(1, None, mask=True, mask_key=1)
    with pytest.raises(ValueError, match="cannot be fragmented"):
        codec.encode_frame(9, b"", fin=False, mask=True, mask_key=1)
    with pytest.raises(TypeError, match="^max_frame_size"):
        codec.encode_message(1, b"", max_frame_size=None, mask=True, mask_key=1)
    with pytest.raises(ValueError, match="cannot set RSV1"):
        codec.encode_message(9, b"", rsv1=True, mask=True, mask_key=1)
    with pytest.raises(TypeError, match="^data"):
        codec.apply_mask(None, None)
    with pytest.raises(TypeError, match="^buffer"):
        codec.apply_mask_inplace(None, None)
    with pytest.raises(TypeError, match="^max_message_size"):
        codec.FrameParser(max_message_size="x", max_frame_size="y")


def test_codes_and_opcodes_follow_the_shared_rules(codec):
    """Both backends apply fastws._rules: every close code on the wire, every opcode."""
    accepted = []
    for code in range(1 << 16):
        try:
            codec.FrameParser(is_client=True).feed(b"\x88\x02" + code.to_bytes(2, "big"))
            accepted.append(code)
        except ProtocolError:
            pass
    assert accepted == [code for code in range(1 << 16) if _rules.is_valid_close_code(code)]
    for opcode in range(16):
        known = _rules.is_known_opcode(opcode)
        try:
            opening = b"\x01\x00" if opcode == 0 else b""  # a continuation needs a message
            codec.FrameParser(is_client=True).feed(opening + bytes([0x80 | opcode, 0]))
        except ProtocolError as exc:
            assert not known and str(exc) == f"reserved opcode {opcode}"
        else:
            assert known
        assert (codec.encode_frame(opcode, b"")[0] == 0x80 | opcode) if known else True
