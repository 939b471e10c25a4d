"""picows.websockets echo server: websockets' asyncio API reimplemented on
picows (``async for message in ws``), the same code as websockets_echo.py."""

from __future__ import annotations

import _common
from picows.websockets import ConnectionClosed, serve


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:  # the client closed while a message was being echoed
        pass


async def start(args):
    server = await serve(echo, args.host, args.port, compression=None, max_size=None, ping_interval=None)

    async def stop():
        server.close()
        await server.wait_closed()

    return stop


if __name__ == "__main__":
    _common.run("picows.websockets", start)
