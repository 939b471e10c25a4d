"""fastws against an independent implementation: the ``websockets`` library's sans-I/O
protocol. Random valid client-to-server streams (text and binary messages,
fragmented at random sizes, control frames between fragments, an optional close
frame), encoded by websockets and cut into random chunks, must give the same
messages and control frames through both fastws codec backends (message and frame
mode), fastws's sans-I/O ``Connection`` and websockets' ``Protocol``; the replies
(pongs, the close echo) must be the same bytes.

The last part holds the two backends to one another on arguments: random values
of every kind (ints in and out of range, int-likes, bools, floats, str, buffers of
every shape, objects whose truth value raises) passed to every constructor,
setter, encoder and masking function must give equal results or the same
exception type with the same message on both.
"""

from __future__ import annotations

import array
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


# -- arguments: both backends accept, convert and reject alike ---------------


class IntLike:
    """An integer that is not an int (as numpy's are)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"IntLike({self.value})"


class NoTruth:
    """An object whose truth value cannot be taken."""

    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")

    def __repr__(self) -> str:
        return "NoTruth()"


class Fresh:
    """A recipe for an argument: mutable values are made anew for each backend."""

    def __init__(self, kind: str, data: bytes) -> None:
        self.kind, self.data = kind, data

    def make(self):
        data = self.data
        return {
            "bytearray": lambda: bytearray(data),
            "view": lambda: memoryview(bytearray(data)),
            "strided": lambda: memoryview(bytearray(data))[::2],
            "readonly strided": lambda: memoryview(data)[::2],
            "2d": lambda: memoryview(bytearray(data[: len(data) // 2 * 2])).cast("B", shape=[2, len(data) // 2]),
            "u16": lambda: array.array("H", data[: len(data) // 2 * 2]),
        }[self.kind]()

    def __repr__(self) -> str:
        return f"Fresh({self.kind!r}, {self.data!r})"


def make(value):
    return value.make() if isinstance(value, Fresh) else value


integers = st.one_of(
    st.integers(-3, 20),
    st.sampled_from([125, 126, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]),
    st.booleans(),
    st.builds(IntLike, st.integers(-2, 20)),
)
buffers = st.one_of(
    st.binary(max_size=12),
    st.builds(
        Fresh,
        st.sampled_from(["bytearray", "view", "strided", "readonly strided", "2d", "u16"]),
        st.binary(max_size=12),
    ),
)
anything = st.one_of(
    integers,
    buffers,
    st.none(),
    st.just(NoTruth()),
    st.floats(allow_nan=False, width=16),
    st.text(max_size=4),
    st.lists(st.integers(0, 255), max_size=4),
)
opcodes = st.one_of(st.sampled_from([0, 1, 2, 8, 9, 10]), anything)
payloads = st.one_of(st.text(max_size=8), st.binary(max_size=140), buffers, anything)
mask_keys = st.one_of(st.binary(min_size=4, max_size=4), buffers, anything)
flags = st.one_of(st.booleans(), anything)
limits = st.one_of(st.none(), st.integers(0, 8), anything)
# Masked and unmasked frames for the parser's options to act on.
STREAMS = [
    b"\x82\x03abc",
    b"\x82\x83abcd\x00\x00\x00",
    b"\x01\x02ab\x89\x00\x80\x01c",
    b"\xc1\x01x",
    b"\x82\x7e\x00\x01z",
]


def unmasked(wire: bytes) -> list:
    """Frames as (first byte, payload), unmasked: random keys differ between backends."""
    frames, pos = [], 0
    while pos < len(wire):
        first, second = wire[pos], wire[pos + 1]
        length, pos = second & 0x7F, pos + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length, pos = int.from_bytes(wire[pos : pos + size], "big"), pos + size
        key = b"\0\0\0\0"
        if second & 0x80:
            key, pos = wire[pos : pos + 4], pos + 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(wire[pos : pos + length]))
        frames.append((first, second & 0x80, payload))
        pos += length
    return frames


def observed(value):
    """What a result shows, comparable across backends (frames by field and type)."""
    if isinstance(value, list):
        return [observed(item) for item in value]
    if hasattr(value, "opcode"):
        fields = (value.opcode, value.payload, value.fin, value.rsv1)
        return tuple((type(field).__name__, field) for field in fields)
    if hasattr(value, "is_client"):
        names = ("is_client", "max_message_size", "max_frame_size", "assemble", "rsv1_allowed")
        return tuple((type(getattr(value, n)).__name__, getattr(value, n)) for n in names)
    return value


def outcome(call):
    try:
        return ("ok", observed(call()))
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


def agree(call, normalize=None) -> None:
    """``call(codec)`` on both backends: equal results, or the same error and message."""
    outcomes = []
    for codec in CODECS:
        result = outcome(lambda codec=codec: call(codec))
        if normalize is not None and result[0] == "ok":
            result = ("ok", normalize(result[1]))
        outcomes.append(result)
    assert all(o == outcomes[0] for o in outcomes), dict(zip([c.__name__ for c in CODECS], outcomes))


ARGS_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ARGS_SETTINGS
@given(
    opcode=opcodes,
    payload=payloads,
    fin=flags,
    rsv1=flags,
    attribute=st.sampled_from(["opcode", "fin", "rsv1"]),
    value=anything,
)
def test_frame_arguments_agree(opcode, payload, fin, rsv1, attribute, value):
    agree(lambda codec: codec.Frame(make(opcode), make(payload), make(fin), make(rsv1)))

    def assign(codec):
        frame = codec.Frame(2, b"")
        setattr(frame, attribute, make(value))
        return frame

    agree(assign)


@ARGS_SETTINGS
@given(
    options=st.fixed_dictionaries(
        {},
        optional={
            "is_client": flags,
            "max_message_size": limits,
            "max_frame_size": limits,
            "assemble": flags,
            "rsv1_allowed": flags,
        },
    ),
    stream=st.sampled_from(STREAMS),
    data=st.one_of(st.just(None), buffers, anything),
)
def test_parser_arguments_agree(options, stream, data):
    def parse(codec):
        parser = codec.FrameParser(**{name: make(value) for name, value in options.items()})
        return [observed(parser), outcome(lambda: parser.feed(stream if data is None else make(data)))]

    agree(parse)


@ARGS_SETTINGS
@given(
    stream=st.sampled_from(STREAMS),
    data=st.one_of(st.just(None), buffers, anything),
    size=st.one_of(st.integers(-2, 14), anything),
)
def test_feed_size_arguments_agree(stream, data, size):
    """feed(data, size): the same frames, or the same error, for every kind of
    ``data`` (strided, 2-D, not a buffer) and of ``size`` (out of range, not an int)."""

    def parse(codec):
        parser = codec.FrameParser(max_message_size=None)
        return [outcome(lambda: parser.feed(stream if data is None else make(data), make(size))), observed(parser)]

    agree(parse)


@ARGS_SETTINGS
@given(
    opcode=opcodes,
    payload=payloads,
    fin=flags,
    rsv1=flags,
    mask=flags,
    mask_key=mask_keys,
    max_frame_size=st.one_of(st.integers(-1, 200), anything),  # 0 and -1: the refusals must agree too
)
def test_encoder_arguments_agree(opcode, payload, fin, rsv1, mask, mask_key, max_frame_size):
    agree(
        lambda codec: codec.encode_frame(
            make(opcode), make(payload), fin=make(fin), rsv1=make(rsv1), mask=make(mask), mask_key=make(mask_key)
        ),
        unmasked,
    )
    agree(
        lambda codec: codec.encode_message(
            make(opcode),
            make(payload),
            mask=make(mask),
            max_frame_size=make(max_frame_size),
            rsv1=make(rsv1),
            mask_key=make(mask_key),
        ),
        unmasked,
    )


@ARGS_SETTINGS
@given(data=payloads, mask=mask_keys)
def test_masking_arguments_agree(data, mask):
    agree(lambda codec: codec.apply_mask(make(data), make(mask)))

    def in_place(codec):
        buffer = make(data)
        codec.apply_mask_inplace(buffer, make(mask))
        return bytes(memoryview(buffer).tobytes())

    agree(in_place)
