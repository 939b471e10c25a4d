"""A websockets-style client, type-checked by tests/test_typing_programs.py (never run).

``# N:`` comments are the notes mypy --strict must print on that line; any
other diagnostic fails the test. Types are written as mypy 2 prints them
(the test normalizes mypy 1's spelling).
"""

from __future__ import annotations

import asyncio
from typing import Union

from typing_extensions import assert_type, reveal_type

import fastws
from fastws import ClientConnection, ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus


async def awaited() -> None:
    ws = await fastws.connect("ws://localhost:8765/", subprotocols=["chat"], max_message_size=2**20)
    reveal_type(ws)  # N: Revealed type is "fastws.asyncio.client.ClientConnection"
    assert_type(ws, ClientConnection)
    await ws.send("hello")
    await ws.send(b"\x00\x01")
    message = await ws.recv()
    reveal_type(message)  # N: Revealed type is "str | bytes"
    assert_type(message, Union[str, bytes])
    assert_type(ws.subprotocol, Union[str, None])
    assert_type(await ws.ping(), float)
    await ws.close(1000, "bye")


async def context_manager() -> None:
    async with fastws.connect("ws://localhost:8765/", extra_headers=[("Authorization", "Bearer x")]) as ws:
        reveal_type(ws)  # N: Revealed type is "fastws.asyncio.client.ClientConnection"
        assert_type(ws, ClientConnection)
        async for message in ws:
            reveal_type(message)  # N: Revealed type is "str | bytes"
            assert_type(message, Union[str, bytes])
            if isinstance(message, str):
                await ws.send(message.upper())
            else:
                await ws.send(message[::-1])


async def errors() -> None:
    try:
        async with fastws.connect("ws://localhost:8765/", open_timeout=5, ping_interval=None) as ws:
            text = await asyncio.wait_for(ws.recv(), timeout=10)
            assert_type(text, Union[str, bytes])
    except ConnectionClosedOK:
        pass
    except ConnectionClosed as exc:
        assert_type(exc.code, int)
        assert_type(exc.reason, str)
    except InvalidStatus as exc:
        assert_type(exc.status, int)
    except InvalidHandshake as exc:
        assert_type(exc.reason, str)
