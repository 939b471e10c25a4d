"""The frame codec, from whichever backend is available.

The compiled ``_codec`` extension is used unless it was not built or the
environment sets ``FASTWS_CODEC=python``; then the pure-Python twin
``_codec_py`` provides the same names with the same behaviour. ``BACKEND``
says which one is in use ("cython" or "python"). Type checkers see the names
as declared in ``_codec.pyi``, the interface both backends implement.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

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
