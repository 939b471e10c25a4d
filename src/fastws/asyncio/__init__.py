"""asyncio server and client on top of the sans-I/O core: the only part of
fastws that imports asyncio."""

from .broadcast import BroadcastResult, broadcast
from .client import ClientConnection, connect, unix_connect
from .protocol import Limits, Listener, WebSocket
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "BroadcastResult",
    "ClientConnection",
    "Limits",
    "Listener",
    "Server",
    "ServerConnection",
    "WebSocket",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]
