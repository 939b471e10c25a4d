"""A websockets-style server, type-checked by tests/test_typing_programs.py (never run).

``# N:`` comments are the notes mypy --strict must print on that line; any
other diagnostic fails the test.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Optional, Union

from typing_extensions import assert_type, reveal_type

import fastws
from fastws import Request, Response, Server, ServerConnection


async def handler(ws: ServerConnection) -> None:
    async for message in ws:
        reveal_type(message)  # N: Revealed type is "str | bytes"
        assert_type(message, Union[str, bytes])
        await ws.send(message)
    assert_type(await ws.recv(), Union[str, bytes])
    assert_type(ws.path, str)
    assert_type(ws.request, Optional[Request])


def process_request(ws: ServerConnection, request: Request) -> Optional[Response]:
    if request.path == "/healthz":
        return Response(200, fastws.Headers([("Content-Type", "text/plain")]), b"OK\n")
    return None


async def awaited() -> None:
    server = await fastws.serve(handler, "localhost", 8765, process_request=process_request, max_queue=32)
    reveal_type(server)  # N: Revealed type is "fastws.asyncio.server.Server"
    assert_type(server, Server)
    sockets: Sequence[socket.socket] = server.sockets
    assert_type(server.sockets[0], socket.socket)
    assert_type(server.port, int)
    await server.close()
    del sockets


async def context_manager() -> None:
    async with fastws.serve(handler, "localhost", 8765) as server:
        reveal_type(server)  # N: Revealed type is "fastws.asyncio.server.Server"
        assert_type(server, Server)
        for sock in server.sockets:
            assert_type(sock, socket.socket)
        result = fastws.broadcast(server.connections, "to everyone")
        assert_type(result.sent, int)
        await server.serve_forever()


async def lambda_handler() -> None:
    # The handler's parameter is inferred from serve()'s signature.
    async with fastws.serve(lambda ws: ws.send(assert_type(ws, ServerConnection).path)):
        await asyncio.Future()
