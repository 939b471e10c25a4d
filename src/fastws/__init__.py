"""fastws: a fast, correct WebSocket (RFC 6455) library with a compiled codec."""

from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidUTF8,
    MessageTooBig,
    ProtocolError,
    WebSocketError,
)
from .frames import CloseCode, Opcode

__version__ = "0.1.0"

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidUTF8",
    "MessageTooBig",
    "Opcode",
    "ProtocolError",
    "WebSocketError",
]
