"""fastws against an independent implementation: the ``websockets`` library's sans-I/O
protocol. Random valid client-to-server streams (text and binary messages,
fragmented at random sizes, control frames between fragments, an optional close
frame), encoded by websockets and cut into random chunks, must give the same
messages and control frames through both fastws codec backends (message and frame
mode), fastws's sans-I/O ``Connection`` and websockets' ``Protocol``; the replies
(pongs, the close echo) must be the same bytes.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastws.connection import Connection

from .support.codecs import all_codecs

websockets_frames = pytest.importorskip("websockets.frames")
websockets_protocol = pytest.importorskip("websockets.protocol")
WsFrame, WsOpcode = websockets_frames.Frame, websockets_frames.Opcode
Protocol, SERVER = websockets_protocol.Protocol, websockets_protocol.SERVER

CODECS = all_codecs()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lengths around the 7-bit / 16-bit / 64-bit header boundaries, and small ones.
sizes = st.one_of(st.integers(0, 300), st.sampled_from([125, 126, 127, 65535, 65536, 70000]))
binary_payloads = st.builds(lambda n, seed: random.Random(seed).randbytes(n), sizes, st.integers(0, 1 << 30))
text_payloads = st.one_of(
    st.text(max_size=200),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.sampled_from([20000, 40000])),
)
control_frames = st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125))


@st.composite
def data_messages(draw):
    kind = draw(st.sampled_from(["text", "binary"]))
    payload = draw(text_payloads if kind == "text" else binary_payloads)
    raw = payload.encode("utf-8") if kind == "text" else payload
    # Fragment boundaries at arbitrary bytes (also inside a UTF-8 sequence);
    # repeated cuts give empty fragments.
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    pieces = [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]
    # Control frames before each fragment after the first, i.e. mid-message.
    between = [draw(st.lists(control_frames, max_size=2)) if i else [] for i in range(len(pieces))]
    return kind, payload, pieces, between


closes = st.one_of(
    st.none(),
    st.just((None, "")),
    st.tuples(st.sampled_from([1000, 1001, 1003, 1011, 3000, 4999]), st.text(max_size=30)),
)
streams = st.tuples(st.lists(st.one_of(data_messages(), control_frames), max_size=10), closes)


def encode(items, close) -> tuple[bytes, list]:
    """The wire bytes (encoded by websockets, masked) and the expected events."""
    frames, expected = [], []
    for item in items:
        if item[0] in ("ping", "pong"):
            frames.append(WsFrame(WsOpcode.PING if item[0] == "ping" else WsOpcode.PONG, item[1]))
            expected.append(item)
            continue
        kind, payload, pieces, between = item
        for index, (piece, controls) in enumerate(zip(pieces, between)):
            for control in controls:
                frames.append(WsFrame(WsOpcode.PING if control[0] == "ping" else WsOpcode.PONG, control[1]))
                expected.append(control)
            opcode = WsOpcode.CONT if index else (WsOpcode.TEXT if kind == "text" else WsOpcode.BINARY)
            frames.append(WsFrame(opcode, piece, fin=index == len(pieces) - 1))
        expected.append((kind, payload))
    if close is not None:
        code, reason = close
        data = b"" if code is None else code.to_bytes(2, "big") + reason.encode("utf-8")
        frames.append(WsFrame(WsOpcode.CLOSE, data))
        expected.append(("close", data))
    return b"".join(frame.serialize(mask=True) for frame in frames), expected


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


NAMES = {1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def fastws_messages(codec, pieces) -> list:
    parser = codec.FrameParser(is_client=False, max_message_size=None)
    events = []
    for piece in pieces:
        events += [(NAMES[f.opcode], f.payload) for f in parser.feed(piece)]
    assert parser.buffered == 0
    return events


def fastws_frames_reassembled(codec, pieces) -> list:
    """Frame mode, reassembled here: the same messages must come out."""
    parser = codec.FrameParser(is_client=False, max_message_size=None, assemble=False)
    events, opcode, parts = [], None, []
    for piece in pieces:
        for frame in parser.feed(piece):
            if frame.opcode >= 8:
                events.append((NAMES[frame.opcode], frame.payload))
                continue
            if frame.opcode:
                opcode, parts = frame.opcode, []
            parts.append(frame.payload)
            if frame.fin:
                data = b"".join(parts)
                events.append((NAMES[opcode], data.decode("utf-8") if opcode == 1 else data))
    return events


def fastws_connection(codec, pieces) -> tuple[list, bytes]:
    connection = Connection(is_client=False, max_message_size=None, codec=codec)
    events, out = [], b""
    for piece in pieces:
        events += [(NAMES[f.opcode], f.payload) for f in connection.receive_data(piece)]
        out += connection.data_to_send()
    return events, out


def websockets_messages(pieces) -> tuple[list, bytes]:
    """websockets gives one event per frame: reassemble messages as its docs say
    (a TEXT or BINARY frame starts a message, CONT frames continue it, FIN ends it)."""
    protocol = Protocol(SERVER, max_size=None)
    events, opcode, parts, out = [], None, [], b""
    for piece in pieces:
        protocol.receive_data(piece)
        assert protocol.parser_exc is None, protocol.parser_exc
        for frame in protocol.events_received():
            if frame.opcode in (WsOpcode.PING, WsOpcode.PONG, WsOpcode.CLOSE):
                events.append((frame.opcode.name.lower(), bytes(frame.data)))
                continue
            if frame.opcode is not WsOpcode.CONT:
                opcode, parts = frame.opcode, []
            parts.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(parts)
                events.append(("text", data.decode("utf-8")) if opcode is WsOpcode.TEXT else ("binary", data))
        out += b"".join(protocol.data_to_send())
    return events, out


@SETTINGS
@given(stream=streams, cuts=st.lists(st.integers(0, 1 << 20), max_size=30))
def test_same_messages_as_websockets(stream, cuts):
    wire, expected = encode(*stream)
    pieces = chunked(wire, cuts)
    reference, reference_out = websockets_messages(pieces)
    assert reference == expected
    for codec in CODECS:
        assert fastws_messages(codec, pieces) == expected, codec.__name__
        assert fastws_frames_reassembled(codec, pieces) == expected, codec.__name__
        events, out = fastws_connection(codec, pieces)
        assert events == expected, codec.__name__
        # The automatic replies: pongs echoing each ping, the close echoed.
        assert out == reference_out, codec.__name__


@SETTINGS
@given(stream=streams, size=st.integers(1, 64))
def test_same_messages_fed_in_fixed_small_chunks(stream, size):
    wire, expected = encode(*stream)
    if len(wire) > 20000:
        size *= 1024  # keep byte-at-a-time feeding to small streams
    pieces = [wire[i : i + size] for i in range(0, len(wire), size)]
    assert websockets_messages(pieces)[0] == expected
    for codec in CODECS:
        assert fastws_messages(codec, pieces) == expected, codec.__name__


def test_websockets_and_fastws_agree_on_a_hand_written_stream():
    """A fixed stream, so a failure of the generated tests has a simple twin."""
    items = [
        ("text", "héllo", [b"h", "é".encode()[:1], "é".encode()[1:] + b"llo"], [[], [("ping", b"1")], []]),
        ("ping", b""),
        ("binary", b"", [b""], [[]]),
        ("binary", bytes(70000), [bytes(70000)], [[]]),
    ]
    wire, expected = encode(items, (1000, "bye"))
    for size in (1, 7, len(wire)):
        pieces = [wire[i : i + size] for i in range(0, len(wire), size)]
        assert websockets_messages(pieces)[0] == expected
        for codec in CODECS:
            assert fastws_messages(codec, pieces) == expected
            assert fastws_connection(codec, pieces)[1] == websockets_messages(pieces)[1]
