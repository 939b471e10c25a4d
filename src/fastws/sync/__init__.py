"""Threaded WebSocket client and server on blocking sockets, no asyncio.

    from fastws.sync import connect, serve

    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 8765) as server:
        server.serve_forever()

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

    for ws in reconnect("ws://127.0.0.1:8765/"):   # a new connection after each drop
        ...

The same sans-I/O core, limits, defaults and keywords as ``fastws.asyncio``;
hooks and handlers are plain functions.
"""

from .client import ClientConnection, connect, reconnect, unix_connect
from .connection import Pong, WebSocket
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Pong",
    "Server",
    "ServerConnection",
    "WebSocket",
    "connect",
    "reconnect",
    "serve",
    "unix_connect",
    "unix_serve",
]
