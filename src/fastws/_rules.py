"""The codec's rules, written once: opcodes, size limits and which close codes
may be sent (RFC 6455 §5.2, §5.5, §7.4).

``frames`` re-exports them for users; the pure-Python codec uses them directly;
the compiled codec reads them at import into C variables and tables (see
``_codec.pyx``), so neither backend restates a number or a rule. This module
imports nothing from fastws, so any layer can use it.
"""

from __future__ import annotations

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
    "is_known_opcode",
    "is_control",
    "is_valid_close_code",
]

# RFC 6455 §5.2: the 4-bit opcode. 3-7 and 11-15 are reserved.
OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
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
