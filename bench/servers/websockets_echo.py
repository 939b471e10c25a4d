"""websockets echo server (the asyncio implementation, ``async for message in ws``)."""

from __future__ import annotations

import _common
from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def start(args):
    server = await serve(echo, args.host, args.port, compression=None, max_size=None, ping_interval=None)

    async def stop():
        server.close()
        await server.wait_closed()

    return stop


if __name__ == "__main__":
    _common.run("websockets", start)
