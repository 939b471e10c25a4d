"""The frame codec, from whichever backend is available.

The compiled ``_codec`` extension is used unless it was not built or the
environment sets ``FASTWS_CODEC=python``; then the pure-Python twin
``_codec_py`` provides the same names with the same behaviour. ``BACKEND``
says which one is in use ("cython" or "python"). Type checkers see the names
as declared in ``_codec.pyi``, the interface both backends implement.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from ._rules import OP_BINARY, OP_CONT, OP_TEXT, frame_header, frame_size_arg
from .frames import MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, Opcode, build_close, parse_close

__all__ = [
    "BACKEND",
    "MAX_FRAME_SIZE",
    "MAX_MESSAGE_SIZE",
    "Opcode",
    "Frame",
    "FrameParser",
    "apply_mask",
    "apply_mask_inplace",
    "encode_frame",
    "encode_message",
    "build_close",
    "parse_close",
    "frame_buffers",
]

_requested = os.environ.get("FASTWS_CODEC", "").lower()
if _requested not in ("", "python", "cython"):
    raise ImportError(f"FASTWS_CODEC must be 'python' or 'cython', not {_requested!r}")

if TYPE_CHECKING:
    # Both backends implement _codec.pyi: type-check against it, whichever runs.
    from ._codec import Frame, FrameParser, apply_mask, apply_mask_inplace, encode_frame, encode_message

    BACKEND: Literal["cython", "python"]
    """Which backend is in use: "cython" (the compiled codec) or "python" (the twin)."""
else:
    if _requested == "python":
        from . import _codec_py as _backend
    else:
        try:
            from . import _codec as _backend
        except ImportError:
            if _requested == "cython":
                raise
            from . import _codec_py as _backend

    BACKEND = "python" if _backend.__name__.endswith("_codec_py") else "cython"
    Frame = _backend.Frame
    FrameParser = _backend.FrameParser
    apply_mask = _backend.apply_mask
    apply_mask_inplace = _backend.apply_mask_inplace
    encode_frame = _backend.encode_frame
    encode_message = _backend.encode_message


def backend_module(name: str) -> ModuleType:
    """The module of the backend in use for a part of fastws written once in
    Python (``fastws.{name}_py``) and also built by Cython from that source
    (``fastws.{name}_c``: the sans-I/O ``Connection``, ``"_connection"``, and
    the asyncio per-message path, ``"asyncio._core"``): the compiled one with
    the compiled codec, the source itself with the Python twin. As for the
    codec, ``FASTWS_CODEC=cython`` makes a missing build an error."""
    if BACKEND == "cython":
        try:
            return importlib.import_module(f"fastws.{name}_c")
        except ImportError:
            if _requested == "cython":
                raise
    return importlib.import_module(f"fastws.{name}_py")


def frame_buffers(
    opcode: int, payload: bytes, *, max_frame_size: int = MAX_FRAME_SIZE, rsv1: bool = False
) -> list[bytes | memoryview]:
    """An unmasked (server's) text or binary message as buffers to write in
    order with ``writelines`` or ``sendmsg``: each frame's header, then its
    part of ``payload`` by reference (``payload`` itself, or a slice of it per
    frame when it is split at ``max_frame_size``).

    Joined, they are the bytes ``encode_message()`` returns for the same
    arguments; the payload is never copied, which matters at megabytes (a
    copy, and fresh pages from the OS for it, each time). ``payload`` must be
    ``bytes``: the buffers refer to it until the transport has written them,
    and a ``bytearray`` could change meanwhile."""
    if opcode != OP_TEXT and opcode != OP_BINARY:
        raise ValueError(f"frame_buffers() sends text or binary messages, not opcode {opcode!r}")
    if type(payload) is not bytes:
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    max_frame_size = frame_size_arg(max_frame_size)
    rsv1_bit = 0x40 if rsv1 else 0
    length = len(payload)
    if length <= max_frame_size:
        return [frame_header(0x80 | rsv1_bit | opcode, length), payload]
    view = memoryview(payload)
    buffers: list[bytes | memoryview] = []
    first = rsv1_bit | opcode  # RSV1 and the opcode on the first frame only (RFC 7692 §6.1, RFC 6455 §5.4)
    for start in range(0, length, max_frame_size):
        part = view[start : start + max_frame_size]
        fin = 0x80 if start + max_frame_size >= length else 0
        buffers += (frame_header(fin | first, len(part)), part)
        first = OP_CONT
    return buffers
