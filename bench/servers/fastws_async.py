"""fastws echo server, high-level API (``async for message in ws: await ws.send(message)``).

With ``FASTWS_CODEC=python`` in the environment it runs on the pure-Python codec.
"""

from __future__ import annotations

import _common

import fastws
import fastws.codec


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def start(args):
    server = await fastws.serve(
        echo,
        args.host,
        args.port,
        compression=None,
        max_message_size=None,
        ping_interval=None,
    )
    return server.close


if __name__ == "__main__":
    _common.run(f"fastws async-for ({fastws.codec.BACKEND} codec)", start)
