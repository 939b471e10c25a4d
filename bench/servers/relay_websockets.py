"""websockets pub/sub relay for bench/bench_fanout.py: the asyncio server, a dict
topic → set of connections, and ``websockets.broadcast`` to the other subscribers
of the topic for every message received (the way websockets' docs broadcast)."""

from __future__ import annotations

import _common
from websockets import broadcast
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

TOPICS: dict[str, set] = {}


async def relay(ws):
    topic = ws.request.path.lstrip("/")
    subscribers = TOPICS.setdefault(topic, set())
    subscribers.add(ws)
    try:
        async for message in ws:
            broadcast((c for c in subscribers if c is not ws), message)
    except ConnectionClosed:
        pass
    finally:
        subscribers.discard(ws)
        if not subscribers:
            TOPICS.pop(topic, None)


async def start(args):
    server = await serve(relay, args.host, args.port, compression=None, max_size=None, ping_interval=None)

    async def stop():
        server.close()
        await server.wait_closed()

    return stop


if __name__ == "__main__":
    _common.run("websockets", start, kind="relay")
