"""fastws: a fast, correct WebSocket (RFC 6455) library with a compiled codec.

The asyncio names (``serve``, ``connect``, ``WebSocket``...) load
``fastws.asyncio`` on first use (PEP 562), so ``import fastws.codec`` or the
sans-I/O ``fastws.connection`` never import asyncio.
"""

from typing import TYPE_CHECKING, Any

from .connection import Connection, PreparedMessage, State
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidRedirect,
    InvalidStatus,
    InvalidURI,
    InvalidUTF8,
    MessageTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .frames import CloseCode, Opcode
from .handshake import Headers, Request, Response

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them
    from .asyncio import (
        ClientConnection,
        Limits,
        Listener,
        Server,
        ServerConnection,
        WebSocket,
        connect,
        serve,
        unix_connect,
        unix_serve,
    )
    from .asyncio.broadcast import BroadcastResult, broadcast

_ASYNCIO_NAMES = frozenset(
    ["ClientConnection", "Limits", "Listener", "Server", "ServerConnection", "WebSocket"]
    + ["BroadcastResult", "broadcast", "connect", "serve", "unix_connect", "unix_serve"]
)


def __getattr__(name: str) -> Any:
    """Resolve the asyncio names lazily (PEP 562) and cache them in the module."""
    if name in _ASYNCIO_NAMES:
        from . import asyncio as _asyncio

        value = getattr(_asyncio, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ASYNCIO_NAMES)


__version__ = "0.1.0"

__all__ = [
    "BroadcastResult",
    "ClientConnection",
    "CloseCode",
    "Connection",
    "Headers",
    "Limits",
    "Listener",
    "PreparedMessage",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "State",
    "WebSocket",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidRedirect",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUTF8",
    "MessageTooBig",
    "Opcode",
    "ProtocolError",
    "ProxyError",
    "WebSocketError",
]
