"""fastws: a fast, correct WebSocket (RFC 6455) library with a compiled codec."""

from .asyncio import ClientConnection, Limits, Listener, Server, ServerConnection, WebSocket, connect, serve
from .connection import Connection, State
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
from .handshake import Headers, Request, Response

__version__ = "0.1.0"

__all__ = [
    "ClientConnection",
    "CloseCode",
    "Connection",
    "Headers",
    "Limits",
    "Listener",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "State",
    "WebSocket",
    "connect",
    "serve",
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
