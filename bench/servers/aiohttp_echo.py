"""aiohttp echo server: ``web.WebSocketResponse`` and ``async for msg in ws``."""

from __future__ import annotations

import _common
from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=0, compress=False, autoping=True, heartbeat=None)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def start(args):
    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    return runner.cleanup


if __name__ == "__main__":
    _common.run("aiohttp", start)
