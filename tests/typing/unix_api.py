"""Unix sockets as in websockets (unix_serve / unix_connect). Type-checked by
tests/test_typing_programs.py (never run); ``# N:`` as in client_api.py.
"""

from __future__ import annotations

from typing import Union

from typing_extensions import assert_type, reveal_type

from fastws import ClientConnection, Server, ServerConnection, unix_connect, unix_serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def server_and_client() -> None:
    async with unix_serve(echo, "/run/app.sock", max_message_size=None) as server:
        reveal_type(server)  # N: Revealed type is "fastws.asyncio.server.Server"
        assert_type(server, Server)
        async with unix_connect("/run/app.sock") as ws:
            reveal_type(ws)  # N: Revealed type is "fastws.asyncio.client.ClientConnection"
            assert_type(ws, ClientConnection)
            await ws.send("hello")
            assert_type(await ws.recv(), Union[str, bytes])
    server = await unix_serve(echo, "/run/app.sock")
    assert_type(server, Server)
    ws = await unix_connect("/run/app.sock", "ws://localhost/chat")
    assert_type(ws, ClientConnection)
