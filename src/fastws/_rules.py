"""The codec's rules, written once: opcodes, size limits and which close codes
may be sent (RFC 6455 §5.2, §5.5, §7.4).

``frames`` re-exports them for users; the pure-Python codec uses them directly;
the compiled codec reads them at import into C variables and tables (see
``_codec.pyx``), so neither backend restates a number or a rule. This module
imports nothing from fastws, so any layer can use it.
"""

from __future__ import annotations

import operator
import struct

__all__ = [
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OPCODES",
    "MAX_FRAME_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_CONTROL_PAYLOAD",
    "DIRECT_PAYLOAD_BYTES",
    "TRUSTED_PAYLOAD_BYTES",
    "payload_goes_direct",
    "frame_header",
    "is_known_opcode",
    "is_control",
    "is_valid_close_code",
    "bytes_arg",
    "frame_size_arg",
    "index_arg",
    "limit_arg",
    "mask_arg",
    "opcode_arg",
    "payload_arg",
    "writable_arg",
]

# RFC 6455 §5.2: the 4-bit opcode. 3-7 and 11-15 are reserved.
OP_CONT = 0x0
"""Continuation frame: the next fragment of a message (RFC 6455 §5.4)."""
OP_TEXT = 0x1
"""Text frame: UTF-8 (RFC 6455 §5.6)."""
OP_BINARY = 0x2
"""Binary frame."""
OP_CLOSE = 0x8
"""Close frame: an optional code and reason (RFC 6455 §5.5.1)."""
OP_PING = 0x9
"""Ping: answered by a pong with the same payload (RFC 6455 §5.5.2)."""
OP_PONG = 0xA
"""Pong (RFC 6455 §5.5.3)."""
OPCODES = (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)

MAX_FRAME_SIZE = 1 << 20
"""Outbound fragmentation threshold: payloads above it are split into frames
of this size. 1 MiB keeps typical messages in one frame (one header, no copy)
while bounding how long a control frame can wait behind a huge message."""

MAX_MESSAGE_SIZE = 1 << 20
"""Default limit on an incoming message (after reassembly): 1 MiB, as in the
websockets library. Large enough for ordinary traffic, small enough that a
hostile peer cannot make a server buffer gigabytes. ``None`` disables it."""

MAX_CONTROL_PAYLOAD = 125
"""RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented."""

DIRECT_PAYLOAD_BYTES = 65536
"""A partly arrived frame goes straight into its payload object (one copy, and
``FrameParser.payload_buffer()`` offers the rest) when it is this small, or
once half of it is here: a header alone never makes a parser allocate more
than twice what the peer sent..."""

TRUSTED_PAYLOAD_BYTES = 1 << 24
"""... except a client, for an (unmasked) frame from its server up to this
size: it trusts the server it chose with that much, and a large message then
costs one copy instead of two."""


def payload_goes_direct(masked: bool, received: int, remaining: int) -> bool:
    """The rule above, for a frame delivered as one object of which ``received``
    bytes have arrived and ``remaining`` are to come."""
    total = received + remaining
    return total <= DIRECT_PAYLOAD_BYTES or remaining <= received or (not masked and total <= TRUSTED_PAYLOAD_BYTES)


_LENGTH16 = struct.Struct("!BBH")
_LENGTH64 = struct.Struct("!BBQ")


def frame_header(first: int, length: int, mask_bit: int = 0) -> bytes:
    """A frame's header up to its masking key (RFC 6455 §5.2): ``first`` (FIN,
    RSV1-3, opcode), then the mask bit (0x80 or 0) with the payload length in
    7 bits, or 126 and 16 bits, or 127 and 64 bits: always the shortest form."""
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 65536:
        return _LENGTH16.pack(first, mask_bit | 126, length)
    return _LENGTH64.pack(first, mask_bit | 127, length)


def is_known_opcode(opcode: int) -> bool:
    """Whether ``opcode`` is one of the six opcodes RFC 6455 defines."""
    return opcode in OPCODES


def is_control(opcode: int) -> bool:
    """RFC 6455 §5.5: opcodes from 0x8 up (close, ping, pong) are control frames."""
    return opcode >= OP_CLOSE


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (RFC 6455 §7.4).

    1000-1003 and 1007-1014 are defined; 3000-3999 are registered for libraries
    and frameworks, 4000-4999 are private. 1004-1006 and 1015 are reserved and
    must never be sent; everything else below 5000 is unassigned.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# -- arguments ---------------------------------------------------------------
#
# How both codec backends coerce and reject arguments. The Python twin calls
# these on every call; the compiled codec handles the common exact types
# (bytes, str, small int) in C and calls these for everything else, so the
# two raise the same exception with the same message. Each function checks
# its arguments in signature order, each for its type and then its range;
# flags are taken by truth value (like ``if flag:``) and become bools.


def _type_name(value: object) -> str:
    return type(value).__name__


def index_arg(value: object, name: str) -> int:
    """An integer argument: an int or anything with ``__index__`` (not a float or str)."""
    try:
        return int(operator.index(value))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {_type_name(value)}") from None


def opcode_arg(opcode: object) -> int:
    """An opcode argument: one of the six defined opcodes (RFC 6455 §5.2)."""
    value = index_arg(opcode, "opcode")
    if not is_known_opcode(value):
        raise ValueError(f"invalid opcode {value}")
    return value


def limit_arg(value: object, name: str) -> int | None:
    """A size limit of the parser: ``None`` (no limit) or an integer >= 0."""
    if value is None:
        return None
    size = index_arg(value, name)
    if size < 0:
        raise ValueError(f"{name} must be None or at least 0, not {size}")
    return size


def prefix_size_arg(value: object, available: int) -> int:
    """``feed(data, size)``'s ``size``: how many of the ``available`` bytes of
    ``data`` to parse, an integer from 0 to ``available``."""
    size = index_arg(value, "size")
    if size < 0 or size > available:
        raise ValueError(f"size must be from 0 to {available} (the bytes of data), not {size}")
    return size


def frame_size_arg(value: object) -> int:
    """The message encoder's ``max_frame_size``: an integer >= 1."""
    size = index_arg(value, "max_frame_size")
    if size < 1:
        raise ValueError("max_frame_size must be at least 1")
    return size


def bytes_arg(value: object, name: str) -> bytes:
    """The bytes of a bytes-like argument (any buffer, in C order, copied when
    not contiguous). ``str`` and ints are refused: they are not bytes."""
    if type(value) is bytes:
        return value
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not {_type_name(value)}") from None
    with view:
        return view.tobytes()


def bytes_prefix_arg(value: object, size: object) -> bytes:
    """The first ``size`` bytes of a bytes-like argument ``data``
    (``feed(data, size)``: a read into a larger buffer)."""
    if (
        type(value) is memoryview  # an I/O layer's read buffer: copy only what was read
        and type(size) is int
        and value.ndim == 1
        and value.format == "B"
        and 0 <= size <= len(value)
    ):
        return value[:size].tobytes()
    data = bytes_arg(value, "data")
    return data[: prefix_size_arg(size, len(data))]


def payload_arg(payload: object) -> bytes:
    """A payload to encode: ``str`` (encoded as UTF-8) or a bytes-like object."""
    if isinstance(payload, str):
        return str.encode(payload, "utf-8")
    if type(payload) is bytes:
        return payload
    try:
        view = memoryview(payload)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"payload must be str or a bytes-like object, not {_type_name(payload)}") from None
    with view:
        return view.tobytes()


def mask_arg(mask: object, name: str) -> bytes:
    """A masking key: a bytes-like object of exactly 4 bytes (RFC 6455 §5.3)."""
    key = bytes_arg(mask, name)
    if len(key) != 4:
        raise ValueError(f"{name} must be 4 bytes")
    return key


def writable_arg(buffer: object) -> memoryview:
    """``apply_mask_inplace``'s buffer: writable and C-contiguous, as a byte view."""
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"buffer must be a bytes-like object, not {_type_name(buffer)}") from None
    if view.readonly or not view.c_contiguous:
        view.release()
        raise TypeError("apply_mask_inplace needs a writable, C-contiguous buffer")
    return view.cast("B")
