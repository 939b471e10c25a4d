"""A Starlette echo endpoint for bench/bench_uvicorn.py, served by uvicorn with
any ``--ws`` implementation:

    uvicorn uvicorn_echo:app --ws fastws.uvicorn:WebSocketProtocol

It echoes every text and binary message back, as an ordinary Starlette app
does, through Starlette's ``WebSocket`` (the ASGI events uvicorn's protocol
class produces and consumes are the part under test).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


app = Starlette(routes=[WebSocketRoute("/", echo)])
