"""Opcodes, close codes, limits and close-frame payloads (RFC 6455 §5, §7.4).

Pure constants and small helpers shared by both codec backends and by the
connection layer.
"""

from __future__ import annotations

import enum
import struct

from .exceptions import InvalidUTF8, ProtocolError

__all__ = [
    "Opcode",
    "CloseCode",
    "MAX_FRAME_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_CONTROL_PAYLOAD",
    "is_valid_close_code",
    "build_close",
    "parse_close",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2). 3-7 and 11-15 are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: "the close frame had no code"
    ABNORMAL = 1006  # never on the wire: "no close frame at all"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


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

_CLOSE_CODE = struct.Struct("!H")


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (RFC 6455 §7.4).

    1000-1003 and 1007-1014 are defined; 3000-3999 are registered for libraries
    and frameworks, 4000-4999 are private. 1004-1006 and 1015 are reserved and
    must never be sent; everything else below 5000 is unassigned.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def build_close(code: int | None = 1000, reason: str = "") -> bytes:
    """Build a close frame payload: a 2-byte code and a UTF-8 reason.

    ``code=None`` builds the empty payload (the peer will see 1005). The whole
    payload must fit a control frame, so the reason is limited to 123 bytes.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason requires a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        raise ValueError("close reason is longer than 123 bytes")
    return _CLOSE_CODE.pack(code) + encoded


def parse_close(payload: bytes) -> tuple[int, str]:
    """Parse a close frame payload into ``(code, reason)``.

    An empty payload gives ``(1005, "")`` (RFC 6455 §7.1.5). A 1-byte payload or
    a code that may not be sent raises ProtocolError (1002); a reason that is
    not UTF-8 raises InvalidUTF8 (1007).
    """
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte")
    (code,) = _CLOSE_CODE.unpack_from(payload)
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8("invalid UTF-8 in close reason") from None
    return code, reason
