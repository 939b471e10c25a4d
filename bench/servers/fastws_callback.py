"""fastws echo server, callback API (``Listener.on_message`` + ``send_nowait``)."""

from __future__ import annotations

import _common

import fastws
import fastws.codec


class EchoListener(fastws.Listener):
    def on_message(self, ws, message):
        ws.send_nowait(message)


async def start(args):
    server = await fastws.serve(
        host=args.host,
        port=args.port,
        listener=EchoListener,
        compression=None,
        max_message_size=None,
        ping_interval=None,
    )
    return server.close


if __name__ == "__main__":
    _common.run(f"fastws callback ({fastws.codec.BACKEND} codec)", start)
