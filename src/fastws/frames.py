"""Opcodes, close codes, limits and close-frame payloads (RFC 6455 §5, §7.4).

The public face of the codec's rules: the numbers and the close-code rule are
defined once in ``_rules`` (shared with both codec backends) and re-exported
here, with the enums and the close-payload helpers. ``OP_*`` are the opcodes as
plain ints, for hot paths where an enum member would cost a lookup.
"""

from __future__ import annotations

import enum
import struct

from ._rules import (
    MAX_CONTROL_PAYLOAD,
    MAX_FRAME_SIZE,
    MAX_MESSAGE_SIZE,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    is_valid_close_code,
)
from .exceptions import InvalidUTF8, ProtocolError

__all__ = [
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
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

    CONTINUATION = OP_CONT
    TEXT = OP_TEXT
    BINARY = OP_BINARY
    CLOSE = OP_CLOSE
    PING = OP_PING
    PONG = OP_PONG


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry)."""

    def __str__(self) -> str:
        return str(int(self))  # "1006" on every Python (before 3.11, str() of an IntEnum was its name)

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


_CLOSE_CODE = struct.Struct("!H")


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
