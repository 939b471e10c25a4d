"""Property tests: round trips in random chunkings, and the two backends agreeing
on random, mutated and malformed input (same frames, same errors)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastws import _codec_py
from fastws.codec import frame_buffers
from fastws.exceptions import ProtocolError

from .support.codecs import all_codecs
from .support.frames import naive_mask

CODECS = all_codecs()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text_messages = st.text(max_size=300).map(lambda s: (1, s))
binary_messages = st.binary(max_size=3000).map(lambda b: (2, b))
control_frames = st.tuples(st.sampled_from([9, 10]), st.binary(max_size=125))
items = st.lists(st.one_of(text_messages, binary_messages, control_frames), max_size=12)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def run(parser, pieces):
    """Feed pieces; return (frames, error, buffered-after-each-feed) comparable across backends."""
    frames, sizes = [], []
    for piece in pieces:
        try:
            frames += parser.feed(piece)
        except ProtocolError as exc:
            frames += exc.frames
            failure = (type(exc).__name__, exc.code, exc.reason, parser.failed, parser.buffered)
            return [_plain(f) for f in frames], failure, sizes
        sizes.append(parser.buffered)
    return [_plain(f) for f in frames], None, sizes


def _plain(frame):
    return (frame.opcode, frame.fin, frame.rsv1, type(frame.payload).__name__, frame.payload)


@SETTINGS
@given(
    items=items,
    mask=st.booleans(),
    max_frame_size=st.integers(1, 4000),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=20),
)
def test_encode_then_parse_round_trips(items, mask, max_frame_size, cuts):
    for codec in CODECS:
        wire = b"".join(codec.encode_message(op, data, mask=mask, max_frame_size=max_frame_size) for op, data in items)
        parser = codec.FrameParser(is_client=not mask, max_message_size=None)
        frames = []
        for piece in chunked(wire, cuts):
            frames += parser.feed(piece)
        assert [(f.opcode, f.payload) for f in frames] == [(op, data if op != 2 else bytes(data)) for op, data in items]
        assert parser.buffered == 0


@SETTINGS
@given(items=items, max_frame_size=st.integers(1, 500), cuts=st.lists(st.integers(0, 1 << 16), max_size=20))
def test_frame_mode_reassembles_to_the_same_messages(items, max_frame_size, cuts):
    for codec in CODECS:
        wire = b"".join(codec.encode_message(op, data, max_frame_size=max_frame_size) for op, data in items)
        parser = codec.FrameParser(is_client=True, assemble=False, max_message_size=None)
        frames = []
        for piece in chunked(wire, cuts):
            frames += parser.feed(piece)
        messages, pending = [], []
        for frame in frames:
            if frame.opcode >= 8:
                messages.append((frame.opcode, frame.payload))
                continue
            pending.append(frame)
            if frame.fin:
                data = b"".join(f.payload for f in pending)
                messages.append((pending[0].opcode, data.decode() if pending[0].opcode == 1 else data))
                pending = []
        assert messages == list(items)


def _both_agree(pieces, **options):
    results = [run(codec.FrameParser(**options), pieces) for codec in CODECS]
    assert all(result == results[0] for result in results[1:]), results


@SETTINGS
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    is_client=st.booleans(),
    assemble=st.booleans(),
    rsv1_allowed=st.booleans(),
    limit=st.sampled_from([None, 0, 10, 200]),
)
def test_backends_agree_on_random_bytes(data, cuts, is_client, assemble, rsv1_allowed, limit):
    _both_agree(
        chunked(data, cuts),
        is_client=is_client,
        assemble=assemble,
        rsv1_allowed=rsv1_allowed,
        max_message_size=limit,
    )


@st.composite
def mutated_streams(draw):
    """A valid client stream with a few bytes flipped, inserted or dropped."""
    parts = draw(
        st.lists(
            st.tuples(
                st.sampled_from([0, 1, 2, 8, 9, 10]),
                st.one_of(st.binary(max_size=200), st.text(max_size=60).map(str.encode)),
                st.booleans(),
            ),
            max_size=6,
        )
    )
    wire = bytearray()
    for opcode, payload, fin in parts:
        if opcode >= 8:
            payload = payload[:125]
            if opcode == 8 and payload:
                payload = struct.pack("!H", draw(st.sampled_from([1000, 1005, 1016, 3000, 999]))) + payload[:100]
        wire += _codec_py.encode_frame(opcode if opcode < 8 else opcode, payload, fin=fin or opcode >= 8, mask=True)
    for _ in range(draw(st.integers(0, 3))):
        if not wire:
            break
        index = draw(st.integers(0, len(wire) - 1))
        action = draw(st.sampled_from(["flip", "insert", "drop"]))
        if action == "flip":
            wire[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            wire.insert(index, draw(st.integers(0, 255)))
        else:
            del wire[index]
    return bytes(wire)


@SETTINGS
@given(data=mutated_streams(), cuts=st.lists(st.integers(0, 2000), max_size=10), assemble=st.booleans())
def test_backends_agree_on_mutated_streams(data, cuts, assemble):
    _both_agree(chunked(data, cuts), assemble=assemble, max_message_size=500)


utf8ish = st.lists(
    st.one_of(
        st.text(max_size=5).map(str.encode),
        st.sampled_from(
            [b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe0\x80", b"\xf0\x90", b"\x80", b"\xff"]
        ),
        st.binary(max_size=3),
    ),
    max_size=10,
).map(b"".join)


@SETTINGS
@given(text=utf8ish, cuts=st.lists(st.integers(0, 60), max_size=6), fragment=st.integers(1, 8))
def test_backends_agree_on_utf8_validity_and_timing(text, cuts, fragment):
    """Both backends accept exactly the valid UTF-8 and fail on the same chunk."""
    wire = _codec_py.encode_message(1, text, mask=True, max_frame_size=fragment)
    for assemble in (True, False):
        _both_agree(chunked(wire, cuts), assemble=assemble)
        frames, error, _ = run(CODECS[0].FrameParser(assemble=assemble), chunked(wire, cuts))
        try:
            text.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert (error is None) == valid
        if not valid:
            assert error[1] == 1007


@SETTINGS
@given(text=utf8ish)
def test_utf8_fails_on_the_first_impossible_byte(text):
    """Fed one byte at a time, the error comes at the first byte no valid text can follow."""
    wire = _codec_py.encode_frame(1, text, mask=True)
    header = len(wire) - len(text)
    for codec in CODECS:
        parser = codec.FrameParser()
        parser.feed(wire[:header])
        failed_at = None
        for i in range(len(text)):
            try:
                parser.feed(wire[header + i : header + i + 1])
            except ProtocolError:
                failed_at = i
                break
        first_bad = _first_invalid_index(text)
        if first_bad is None:
            assert failed_at is None
        elif first_bad < len(text):
            assert failed_at == first_bad, (codec, text, failed_at, first_bad)


def _first_invalid_index(data: bytes):
    """Index of the first byte that no valid UTF-8 continuation can accept,
    len(data) if only truncated at the end, None if valid."""
    for end in range(1, len(data) + 1):
        prefix = data[:end]
        if not any(_decodes(prefix + tail) for tail in _COMPLETIONS):
            return end - 1
    return None if _decodes(data) else len(data)


_COMPLETIONS = [b"", b"\x80", b"\x80\x80", b"\x80\x80\x80", b"\x90\x80\x80", b"\xa0\x80", b"\xbf", b"\xbf\xbf"]


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def run_with_windows(parser, pieces):
    """Feed pieces as an I/O layer reading into ``payload_buffer()`` would: as
    much of each piece as the offered buffer holds goes through it, the rest
    through feed(). Returns (frames, error, the buffer sizes offered)."""
    frames, offered = [], []
    try:
        for piece in pieces:
            while piece:
                window = parser.payload_buffer()
                if window is None:
                    offered.append(None)
                    frames += parser.feed(piece)
                    break
                offered.append(len(window))
                size = min(len(window), len(piece))
                window[:size] = piece[:size]
                window.release()
                frames += parser.payload_received(size)
                piece = piece[size:]
    except ProtocolError as exc:
        frames += exc.frames
        return [_plain(f) for f in frames], (type(exc).__name__, exc.code, exc.reason), offered
    return [_plain(f) for f in frames], None, offered


@SETTINGS
@given(
    messages=st.lists(st.one_of(text_messages, binary_messages, control_frames), max_size=8),
    mask=st.booleans(),
    max_frame_size=st.integers(1, 4000),
    cuts=st.lists(st.integers(0, 1 << 15), max_size=20),
    assemble=st.booleans(),
    flips=st.lists(st.integers(0, 1 << 15), max_size=2),
)
def test_reading_into_payload_buffers_is_feeding(messages, mask, max_frame_size, cuts, assemble, flips):
    """payload_buffer()/payload_received() give the frames and errors feed()
    gives, and both backends offer a buffer at the same points."""
    wire = bytearray()
    for opcode, payload in messages:
        wire += _codec_py.encode_message(opcode, payload, mask=mask, max_frame_size=max_frame_size)
    for flip in flips:  # a damaged stream: the errors must match too
        if wire:
            wire[flip % len(wire)] ^= 0x80
    pieces = chunked(bytes(wire), cuts)
    results = []
    for codec in all_codecs():
        options = dict(is_client=not mask, assemble=assemble)
        through_windows = run_with_windows(codec.FrameParser(**options), pieces)
        frames, error, _ = run(codec.FrameParser(**options), pieces)
        assert through_windows[:2] == (frames, error and error[:3])
        results.append(through_windows)
    assert all(result == results[0] for result in results)


@given(
    opcode=st.sampled_from([1, 2]),
    payload=st.binary(max_size=3000),
    max_frame_size=st.integers(1, 4000),
    rsv1=st.booleans(),
)
def test_frame_buffers_join_to_the_encoded_message(opcode, payload, max_frame_size, rsv1):
    buffers = frame_buffers(opcode, payload, max_frame_size=max_frame_size, rsv1=rsv1)
    for codec in CODECS:
        assert b"".join(buffers) == codec.encode_message(opcode, payload, max_frame_size=max_frame_size, rsv1=rsv1)
    assert all(type(buffer) is bytes or buffer.obj is payload for buffer in buffers[1::2])


# -- the twin's two unmasking methods -------------------------------------
# Between 1.5 and 256 KiB the twin unmasks by strided bytes.translate or by
# big-integer chunks, whichever this CPU runs faster (timed at import); both
# are checked here, whichever was picked.


@SETTINGS
@given(size=st.integers(0, 300_000), seed=st.integers(), start=st.integers(0, 5), key=st.binary(min_size=4, max_size=4))
def test_the_twins_unmasking_methods_agree_with_the_reference(size, seed, start, key):
    payload = random.Random(seed).randbytes(size)
    data = bytes(start) + payload + b"after"
    expected = naive_mask(payload, key)
    assert _codec_py._xor_chunks(data, start, size, key) == expected
    if size:
        assert _codec_py._xor_translate(data, start, size, key) == expected


@pytest.mark.parametrize("translate", [True, False], ids=["translate", "big-integers"])
@pytest.mark.parametrize("size", [1536, 5000, 65536, 262144, 262145])
def test_the_twin_parses_large_masked_frames_by_either_method(translate, size, monkeypatch):
    monkeypatch.setattr(_codec_py, "_TRANSLATE_FASTER", translate)
    payload = random.Random(size).randbytes(size)
    wire = _codec_py.encode_frame(2, payload, mask=True)
    assert [frame.payload for frame in _codec_py.FrameParser().feed(wire)] == [payload]  # the fast path
    parser = _codec_py.FrameParser()
    pieces = [wire[:7], wire[7 : size // 3], wire[size // 3 :]]  # the general path, a key phase per piece
    assert [frame.payload for piece in pieces for frame in parser.feed(piece)] == [payload]
