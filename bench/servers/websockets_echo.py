"""websockets echo server (the asyncio implementation, ``async for message in ws``)."""

from __future__ import annotations

import _common
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def starter(serve, closed: type[Exception]):
    """The echo server's ``start`` on ``serve``, websockets' API (websockets'
    own, or a reimplementation of it such as ``picows.websockets``)."""

    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except closed:  # the client closed while a message was being echoed
            pass

    async def start(args):
        server = await serve(echo, args.host, args.port, compression=None, max_size=None, ping_interval=None)

        async def stop():
            server.close()
            await server.wait_closed()

        return stop

    return start


start = starter(serve, ConnectionClosed)

if __name__ == "__main__":
    _common.run("websockets", start)
