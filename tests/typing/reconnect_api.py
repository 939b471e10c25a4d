"""Reconnection as in websockets: ``async for ws in connect(uri)`` yields a new
connection after each failure. Type-checked by tests/test_typing_programs.py.
"""

from __future__ import annotations

from typing_extensions import assert_type, reveal_type

import fastws
from fastws import ClientConnection, ConnectionClosed


async def reconnecting() -> None:
    async for ws in fastws.connect("ws://localhost:8765/"):
        reveal_type(ws)  # N: Revealed type is "fastws.asyncio.client.ClientConnection"
        assert_type(ws, ClientConnection)
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            continue
