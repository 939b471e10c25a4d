"""Mistakes mypy --strict must catch, type-checked by tests/test_typing_programs.py
(never run). A ``# E:`` comment names an error expected on its line (or, on a
line of its own, on the next line): the start of mypy's message. Nothing else
may be reported.
"""

from __future__ import annotations

import fastws
from fastws import ClientConnection


async def echo(ws: fastws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def client_handler(ws: ClientConnection) -> None:
    await ws.send("a handler is given a ServerConnection, not a ClientConnection")


async def misspelt() -> None:
    # E: Unexpected keyword argument "max_mesage_size" for "connect"
    await fastws.connect("ws://localhost/", max_mesage_size=2**20)
    # E: Unexpected keyword argument "max_mesage_size" for "serve"
    await fastws.serve(echo, "localhost", 8765, max_mesage_size=2**20)


async def websockets_names() -> None:
    # E: Unexpected keyword argument "max_size" for "connect"
    await fastws.connect("ws://localhost/", max_size=2**20)
    # E: Unexpected keyword argument "max_size" for "serve"
    await fastws.serve(echo, "localhost", 8765, max_size=None)
    # E: Unexpected keyword argument "additional_headers" for "connect"
    await fastws.connect("ws://localhost/", additional_headers={"X-Token": "1"})


async def wrong_types() -> None:
    # E: Argument "max_queue" to "connect" has incompatible type "str"; expected "int"
    await fastws.connect("ws://localhost/", max_queue="16")
    # E: Argument 1 to "serve" has incompatible type "Callable[[ClientConnection], Coroutine[Any, Any, None]]"
    await fastws.serve(client_handler)
    async with fastws.connect("ws://localhost/") as ws:
        message = await ws.recv()
        message.encode()  # E: Item "bytes" of "str | bytes" has no attribute "encode"
