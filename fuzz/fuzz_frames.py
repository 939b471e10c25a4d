"""Coverage-guided fuzzing of one codec backend's FrameParser.

    python fuzz/fuzz_frames.py --backend=python -max_total_time=60 --corpus=/tmp/corpus-frames

On the compiled backend, which atheris cannot instrument, the pure-Python twin
parses each input too (unchecked) so that its coverage guides the fuzzer.

The first input bytes choose the parser options and the chunking (see
``fuzzlib.Options``); the rest is the byte stream. A crash is any exception
other than a ProtocolError subclass, or a broken invariant: the same result in
every chunking, the error raised again after failure, limits respected,
``buffered`` bounded.
"""

from __future__ import annotations

import sys

from fuzzlib import instrumented

with instrumented():
    import fastws._codec_py  # noqa: F401
    import fastws.exceptions
    import fastws.frames

from fuzzlib import Options, backend_from_argv, codec_module, error_key, main, plain, replay
from fuzzseeds import frame_seeds

ProtocolError = fastws.exceptions.ProtocolError
PYTHON = fastws._codec_py
CODEC = None  # set in __main__ (or by a test)

# A partial header (at most 14 bytes) and a control frame (at most 125) can be
# held on top of a message that is at its limit.
SLACK = 14 + 125


def parse(codec, options: Options, pieces) -> tuple[list, object, list]:
    """Feed ``pieces``; return (frames, error key or None, buffered after each feed)."""
    parser = codec.FrameParser(**options.parser_kwargs())
    frames, sizes = [], []
    for piece in pieces:
        try:
            got = parser.feed(piece)
        except ProtocolError as exc:
            assert parser.failed, "failed is False after a ProtocolError"
            frames += [plain(f) for f in exc.frames]
            again = None
            try:
                parser.feed(b"x")
            except ProtocolError as second:
                again = second
            assert again is not None, "a failed parser accepted more data"
            assert error_key(again) == error_key(exc), (error_key(again), error_key(exc))
            assert again.frames == [], "a repeated error carries frames"
            return frames, error_key(exc), sizes
        assert isinstance(got, list)
        frames += [plain(f) for f in got]
        assert not parser.failed
        sizes.append(parser.buffered)
    return frames, None, sizes


def check_frames(options: Options, frames: list) -> None:
    limit_message = options.max_message_size
    limit_frame = options.max_frame_size
    for opcode, fin, rsv1, kind, payload in frames:
        assert opcode in (0, 1, 2, 8, 9, 10), opcode
        size = len(payload.encode("utf-8")) if kind == "str" else len(payload)
        if opcode >= 8:
            assert fin and not rsv1 and kind == "bytes" and size <= 125
            continue
        assert not rsv1 or options.rsv1_allowed
        if options.assemble:
            assert fin and opcode in (1, 2)
            assert kind == ("str" if opcode == 1 and not rsv1 else "bytes"), (opcode, rsv1, kind)
            if limit_message is not None:
                assert size <= limit_message, (size, limit_message)
        else:
            assert kind == "bytes"
            if limit_frame is not None:
                assert size <= limit_frame, (size, limit_frame)
            if limit_message is not None:
                assert size <= limit_message, (size, limit_message)


def check_buffered(options: Options, sizes: list) -> None:
    bound = options.max_message_size
    if options.max_frame_size is not None and not options.assemble:
        bound = options.max_frame_size if bound is None else min(bound, options.max_frame_size)
    for size in sizes:
        assert size >= 0
        if bound is not None:
            assert size <= bound + SLACK, (size, bound)


def test_one_input(data: bytes) -> None:
    options, stream = Options.decode(data)
    pieces = options.chunks(stream)
    if CODEC is not PYTHON:
        # atheris cannot see inside the compiled module: let the instrumented
        # twin walk the same input, so its coverage steers the corpus.
        parse(PYTHON, options, pieces)
    frames, error, sizes = parse(CODEC, options, pieces)
    check_frames(options, frames)
    check_buffered(options, sizes)
    # The chunking must not change what comes out.
    whole = parse(CODEC, options, [bytes(stream)])
    assert (frames, error) == whole[:2], ((frames, error), whole[:2])


if __name__ == "__main__":
    argv = list(sys.argv)
    CODEC = codec_module(backend_from_argv(argv))
    if "--replay" in argv:
        replay(test_one_input, argv[argv.index("--replay") + 1 :])
    else:
        main(test_one_input, list(frame_seeds()), argv)
