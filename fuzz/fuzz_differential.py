"""Differential fuzzing: the compiled and pure-Python codecs, fed the same bytes
in the same chunking, must return the same frames, the same ``buffered`` after
each feed, and the same error (class, close code, reason); a mismatch is a crash.

    python fuzz/fuzz_differential.py -max_total_time=60 --corpus=/tmp/corpus-differential

Inputs whose option byte 5 has bit 7 set test the encoders instead: both must
produce the same bytes for ``encode_frame`` / ``encode_message`` /
``apply_mask`` (or raise the same exception type and message), and what they
encode must parse back to what was encoded. With bit 2 of byte 0 set as well,
the input picks arguments of every kind (``fuzzlib.Arguments``: ints in and out
of range, int-likes, floats, str, buffers of every shape...) for one of
``Frame`` (and its setters), ``FrameParser`` + ``feed``, the encoders and the
masking functions: both backends must give equal results or the same exception
type and message. Only the Python twin is instrumented; it steers
the corpus, and the compiled module is checked against it on every input.
"""

from __future__ import annotations

import sys

from fuzzlib import instrumented

with instrumented():
    import fastws._codec_py
    import fastws.exceptions
    import fastws.frames

from fuzzlib import Arguments, Options, error_key, main, plain, replay, unmask_frames
from fuzzseeds import frame_seeds

from fastws import _codec

ProtocolError = fastws.exceptions.ProtocolError
PYTHON = fastws._codec_py
CYTHON = _codec


def run(codec, options: Options, pieces) -> list:
    """Everything observable about parsing ``pieces``, as comparable values."""
    parser = codec.FrameParser(**options.parser_kwargs())
    events = []
    for piece in pieces:
        try:
            frames = parser.feed(piece)
        except ProtocolError as exc:
            events.append(("error", error_key(exc), [plain(f) for f in exc.frames], parser.failed))
            try:
                parser.feed(b"\x81")
            except ProtocolError as again:
                events.append(("again", error_key(again), list(again.frames)))
            return events
        except Exception as exc:  # a crash, but report both backends' behaviour first
            events.append(("CRASH", repr(exc)))
            return events
        events.append(("frames", [plain(f) for f in frames], parser.buffered, parser.failed))
    return events


def observed(value):
    """A result as comparable values: frames and parsers by their fields' types and values."""
    if isinstance(value, list):
        return [observed(item) for item in value]
    if hasattr(value, "opcode"):
        return tuple((type(field).__name__, field) for field in (value.opcode, value.payload, value.fin, value.rsv1))
    if hasattr(value, "is_client"):
        names = ("is_client", "max_message_size", "max_frame_size", "assemble", "rsv1_allowed")
        return tuple((type(getattr(value, name)).__name__, getattr(value, name)) for name in names)
    return value


def outcome(function, *args, **kwargs):
    try:
        return ("ok", observed(function(*args, **kwargs)))
    except Exception as exc:  # compared across backends: same type, same message
        return ("raised", type(exc).__name__, str(exc))


STREAMS = (b"\x82\x03abc", b"\x82\x83abcd\x00\x00\x00", b"\x01\x02ab\x89\x00\x80\x01c", b"\xc1\x01x")


def check_arguments(data: bytes) -> None:
    """One API call with arguments of any kind: both backends must agree."""
    picks = Arguments(data)
    target = picks.byte() % 6
    if target == 0:
        opcode, payload, fin, rsv1 = picks.pick(1), picks.pick(b"x"), picks.pick(True), picks.pick(False)
        attribute, value = ("opcode", "fin", "rsv1")[picks.byte() % 3], picks.pick(2)

        def call(codec):
            frame = codec.Frame(opcode(), payload(), fin(), rsv1())
            return [frame, outcome(setattr, frame, attribute, value()), frame]

    elif target == 1:
        names = ("is_client", "max_message_size", "max_frame_size", "assemble", "rsv1_allowed")
        options = {name: picks.pick(None if "size" in name else False) for name in names if picks.byte() & 1}
        stream, feed_data = STREAMS[picks.byte() % len(STREAMS)], picks.pick(None)

        def call(codec):
            parser = codec.FrameParser(**{name: make() for name, make in options.items()})
            chunk = feed_data()
            return [parser, outcome(parser.feed, stream if chunk is None else chunk)]

    elif target in (2, 3):
        opcode, payload = picks.pick(2), picks.pick(b"payload")
        flags = {name: picks.pick(False) for name in (("fin", "rsv1", "mask") if target == 2 else ("mask", "rsv1"))}
        mask_key, size = picks.pick(b"\x01\x02\x03\x04"), picks.pick(3)
        encode = "encode_frame" if target == 2 else "encode_message"

        def call(codec):
            kwargs = {name: make() for name, make in flags.items()}
            if target == 3:
                kwargs["max_frame_size"] = size()
            result = getattr(codec, encode)(opcode(), payload(), mask_key=mask_key(), **kwargs)
            return unmask_frames(result)  # random keys differ, what they mask must not

    else:
        buffer, mask = picks.pick(bytearray(b"buffer")), picks.pick(b"\x01\x02\x03\x04")

        def call(codec):
            if target == 4:
                return codec.apply_mask(buffer(), mask())
            target_buffer = buffer()
            codec.apply_mask_inplace(target_buffer, mask())
            return memoryview(target_buffer).tobytes()

    results = [outcome(call, codec) for codec in (PYTHON, CYTHON)]
    assert results[0] == results[1], f"backends differ:\npython {results[0]!r}\ncython {results[1]!r}"


def check_encoders(options: Options, data: bytes) -> None:
    if len(data) < 6:
        return
    control, mask_key, payload = data[0], data[1:5], data[5:]
    opcode = control & 0x0F
    fin, rsv1, mask = bool(control & 0x10), bool(control & 0x20), bool(control & 0x40)
    as_text = bool(control & 0x80)
    if as_text:
        payload = payload.decode("utf-8", "replace")
    key_choice = mask_key[: options.max_frame_size % 5] if options.max_frame_size is not None else mask_key
    size = options.max_message_size if options.max_message_size is not None else 1 << 20
    results = []
    for codec in (PYTHON, CYTHON):
        results.append(
            (
                outcome(codec.encode_frame, opcode, payload, fin=fin, rsv1=rsv1, mask=mask, mask_key=key_choice),
                outcome(
                    codec.encode_message,
                    opcode,
                    payload,
                    mask=mask,
                    max_frame_size=size,
                    rsv1=rsv1,
                    mask_key=key_choice,
                ),
                outcome(codec.apply_mask, payload.encode() if as_text else payload, key_choice),
            )
        )
    assert results[0] == results[1], results
    frame_result, message_result, _ = results[0]
    raw = payload.encode("utf-8") if as_text else payload
    if message_result[0] == "ok" and opcode in (1, 2) and not rsv1:
        # What was encoded parses back to the message, on both backends.
        for codec in (PYTHON, CYTHON):
            parser = codec.FrameParser(is_client=not mask, max_message_size=None)
            try:
                (got,) = parser.feed(message_result[1])
            except ProtocolError:
                assert opcode == 1 and not as_text, "valid text failed to parse back"
                continue
            expected = raw.decode("utf-8") if opcode == 1 else raw
            assert got.opcode == opcode and got.payload == expected
    if frame_result[0] == "ok":
        parser = PYTHON.FrameParser(is_client=not mask, max_message_size=None, assemble=False, rsv1_allowed=True)
        try:
            (got,) = parser.feed(frame_result[1])
        except ProtocolError:
            return  # e.g. a continuation frame alone, or invalid UTF-8: fine to refuse
        assert (got.opcode, got.fin, got.rsv1, got.payload) == (opcode, fin, rsv1, raw)


def test_one_input(data: bytes) -> None:
    options, stream = Options.decode(data)
    if options.extra_bit:
        if options.rsv1_allowed:
            check_arguments(stream)
        else:
            check_encoders(options, stream)
        return
    pieces = options.chunks(stream)
    python_events = run(PYTHON, options, pieces)
    cython_events = run(CYTHON, options, pieces)
    assert python_events == cython_events, f"backends differ:\npython {python_events!r}\ncython {cython_events!r}"
    assert not any(event[0] == "CRASH" for event in python_events), python_events


def seeds():
    yield from frame_seeds()
    encode = Options.encode(extra_bit=True, max_message=(1, 7), max_frame=(1, 4))
    for control in (0x11, 0x12, 0x52, 0x91, 0xD1, 0x19, 0x18, 0x08, 0x01, 0x33, 0x13):
        yield encode + bytes([control]) + b"\x01\x02\x03\x04" + "héllo wörld".encode()
    arguments = Options.encode(extra_bit=True, rsv1_allowed=True)
    for target in range(6):
        for kinds in (b"\x00\x00" * 6, b"\x01\x10\x02\x03\x04\x01\x06\x05", b"\x0c\x00\x06abcdef\x0f\x00\x04abcd"):
            yield arguments + bytes([target]) + kinds


if __name__ == "__main__":
    argv = list(sys.argv)
    if "--replay" in argv:
        replay(test_one_input, argv[argv.index("--replay") + 1 :])
    else:
        main(test_one_input, list(seeds()), argv)
