"""Shared pieces of the fastws fuzz harnesses (not a harness itself).

Every harness decodes its options from the first bytes of the input with
``Options.decode`` (a fixed layout, so seeds are easy to build), feeds the rest
in the chunking those bytes describe, and runs under ``main()``, which accepts
two options of its own besides libFuzzer's ``-flags``:

``--backend=cython|python``  codec backend (default: ``$FASTWS_FUZZ_BACKEND`` or cython)
``--corpus=DIR``             write the harness's seed inputs into DIR and fuzz with it
"""

from __future__ import annotations

import array
import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Callable, NamedTuple, Optional

HEADER_SIZE = 6


class Options(NamedTuple):
    """Parser options and chunking, from the first ``HEADER_SIZE`` bytes (plus chunk sizes).

    byte 0: bit0 is_client, bit1 assemble, bit2 rsv1_allowed,
            bits3-4 max_message_size mode (None, u16, default 1 MiB, u8),
            bits5-6 max_frame_size mode (None, u16, u8, None),
            bit7 feed bytearray instead of bytes
    bytes 1-2, 3-4: max_message_size / max_frame_size (big-endian)
    byte 5: bits0-2 number of chunk sizes that follow (one byte each), bit3 feed
            memoryviews, bit7 free for a harness's own use
    """

    is_client: bool
    assemble: bool
    rsv1_allowed: bool
    max_message_size: Optional[int]
    max_frame_size: Optional[int]
    input_type: str
    chunk_sizes: tuple
    extra_bit: bool

    @classmethod
    def decode(cls, data: bytes) -> tuple[Options, bytes]:
        head = data[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0")
        flags = head[0]
        u16_message = int.from_bytes(head[1:3], "big")
        u16_frame = int.from_bytes(head[3:5], "big")
        message_mode = (flags >> 3) & 3
        max_message_size = [None, u16_message, 1 << 20, u16_message & 0xFF][message_mode]
        frame_mode = (flags >> 5) & 3
        max_frame_size = [None, u16_frame, u16_frame & 0xFF, None][frame_mode]
        count = head[5] & 7
        sizes = tuple(data[HEADER_SIZE : HEADER_SIZE + count])
        input_type = "bytearray" if flags & 0x80 else "memoryview" if head[5] & 8 else "bytes"
        options = cls(
            is_client=bool(flags & 1),
            assemble=bool(flags & 2),
            rsv1_allowed=bool(flags & 4),
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            input_type=input_type,
            chunk_sizes=sizes,
            extra_bit=bool(head[5] & 0x80),
        )
        return options, data[HEADER_SIZE + count :]

    @staticmethod
    def encode(
        *,
        is_client: bool = False,
        assemble: bool = True,
        rsv1_allowed: bool = False,
        max_message: tuple[int, int] = (0, 0),
        max_frame: tuple[int, int] = (0, 0),
        input_type: str = "bytes",
        chunk_sizes: Iterable[int] = (),
        extra_bit: bool = False,
    ) -> bytes:
        """The header for these options; ``max_message`` / ``max_frame`` are (mode, value)."""
        sizes = bytes(chunk_sizes)
        assert len(sizes) <= 7
        flags = is_client | assemble << 1 | rsv1_allowed << 2 | max_message[0] << 3 | max_frame[0] << 5
        flags |= 0x80 if input_type == "bytearray" else 0
        last = len(sizes) | (8 if input_type == "memoryview" else 0) | (0x80 if extra_bit else 0)
        return (
            bytes([flags]) + max_message[1].to_bytes(2, "big") + max_frame[1].to_bytes(2, "big") + bytes([last]) + sizes
        )

    def parser_kwargs(self) -> dict:
        return dict(
            is_client=self.is_client,
            assemble=self.assemble,
            rsv1_allowed=self.rsv1_allowed,
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
        )

    def chunks(self, stream: bytes) -> list:
        """Split ``stream`` cycling through the chunk sizes (0 is an empty feed)."""
        convert = {"bytes": bytes, "bytearray": bytearray, "memoryview": lambda b: memoryview(bytearray(b))}
        make = convert[self.input_type]
        if not any(self.chunk_sizes):
            return [make(stream)] + ([make(b"")] if self.chunk_sizes else [])
        pieces, pos, index = [], 0, 0
        while pos < len(stream):
            size = self.chunk_sizes[index % len(self.chunk_sizes)]
            index += 1
            pieces.append(make(stream[pos : pos + size]))
            pos += size
        return pieces


def plain(frame) -> tuple:
    """A frame as a tuple that compares across backends."""
    return (frame.opcode, frame.fin, frame.rsv1, type(frame.payload).__name__, frame.payload)


def error_key(exc: BaseException) -> tuple:
    return (type(exc).__name__, getattr(exc, "code", None), getattr(exc, "reason", str(exc)))


def codec_module(backend: str):
    if backend == "python":
        from fastws import _codec_py

        return _codec_py
    if backend == "cython":
        from fastws import _codec

        return _codec
    raise SystemExit(f"unknown backend {backend!r}: use cython or python")


def pop_option(argv: list, name: str, default: Optional[str] = None) -> Optional[str]:
    """Remove ``--name=value`` from argv (libFuzzer would take it as a corpus path)."""
    prefix = f"--{name}="
    for arg in list(argv):
        if arg.startswith(prefix):
            argv.remove(arg)
            return arg[len(prefix) :]
    return default


def backend_from_argv(argv: list) -> str:
    return pop_option(argv, "backend", os.environ.get("FASTWS_FUZZ_BACKEND", "cython")) or "cython"


def instrumented():
    """Instrument fastws's Python modules imported inside this block (if atheris is
    installed; without it the harnesses still import, for replaying inputs in tests)."""
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["fastws"])


def main(test_one_input: Callable[[bytes], None], seeds: Iterable[bytes], argv: list) -> None:
    import atheris

    corpus = pop_option(argv, "corpus")
    if corpus:
        directory = Path(corpus)
        directory.mkdir(parents=True, exist_ok=True)
        for index, seed in enumerate(seeds):
            path = directory / f"seed-{index:03d}"
            if not path.exists():
                path.write_bytes(seed)
        argv.append(str(directory))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def replay(test_one_input: Callable[[bytes], None], paths: Iterable[str]) -> None:
    """Run inputs once, without libFuzzer (for debugging a crash file)."""
    for path in paths:
        test_one_input(Path(path).read_bytes())
        print(f"{path}: ok", file=sys.stderr)


# -- argument values of every kind, for differential fuzzing of the codec API --


class IntLike:
    """An integer that is not an int (as numpy's are)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"IntLike({self.value})"

    def __eq__(self, other: object) -> bool:  # each backend gets its own instance
        return isinstance(other, IntLike) and other.value == self.value


class NoTruth:
    """An object whose truth value cannot be taken."""

    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")

    def __repr__(self) -> str:
        return "NoTruth()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoTruth)


BIG_INTS = (2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30, 125, 126, 65536)


class Arguments:
    """Picks argument values from fuzz input bytes: the valid value offered, or an
    int in or out of range, an int-like, a bool, None, a float, a str, bytes, a
    bytearray, a (strided, 2-D, read-only) memoryview, an array, a list, an object
    without a truth value. ``pick`` returns a function making a fresh value, so
    that each backend gets its own copy of a mutable buffer."""

    KINDS = 17

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def blob(self) -> bytes:
        size = self.byte() % 16
        blob = self.data[self.pos : self.pos + size]
        self.pos += size
        return blob

    def pick(self, valid: object) -> Callable[[], object]:
        kind, n = self.byte() % self.KINDS, self.byte()
        blob = self.blob() if kind >= 8 else b""
        even = blob[: len(blob) // 2 * 2]
        makers: list = [
            lambda: bytearray(valid) if isinstance(valid, bytearray) else valid,
            lambda: n - 3,
            lambda: BIG_INTS[n % len(BIG_INTS)],
            lambda: bool(n & 1),
            lambda: IntLike(n - 2),
            lambda: None,
            lambda: n / 7,
            lambda: NoTruth(),
            lambda: blob.decode("utf-8", "replace"),
            lambda: blob,
            lambda: bytearray(blob),
            lambda: memoryview(bytearray(blob)),
            lambda: memoryview(bytearray(blob))[::2],
            lambda: memoryview(blob)[::2],
            lambda: memoryview(bytearray(even)).cast("B", shape=[2, len(even) // 2]),
            lambda: array.array("H", even),
            lambda: list(blob[:4]),
        ]
        return makers[kind]


def unmask_frames(wire: bytes) -> list:
    """Encoded frames as (first byte, mask bit, unmasked payload): random masking
    keys differ between backends, what they mask must not."""
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
