"""unix_serve and unix_connect check their keywords as serve and connect do.
Type-checked by tests/test_typing_programs.py (never run); ``# E:`` as in
wrong_keywords.py.
"""

from __future__ import annotations

from fastws import ServerConnection, unix_connect, unix_serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def mistakes() -> None:
    # E: Unexpected keyword argument "max_size" for "unix_serve"
    await unix_serve(echo, "/run/app.sock", max_size=2**20)
    # E: Unexpected keyword argument "max_mesage_size" for "unix_connect"
    await unix_connect("/run/app.sock", max_mesage_size=2**20)
    # E: Unexpected keyword argument "max_size" for "unix_connect"
    await unix_connect("/run/app.sock", "ws://localhost/chat", max_size=2**20)
