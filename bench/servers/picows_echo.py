"""picows echo server, as in picows' own examples/echo_server.py:
``transport.send(frame.msg_type, frame.get_payload_as_bytes())`` for every data frame."""

from __future__ import annotations

import _common
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class EchoListener(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type != WSMsgType.PONG:  # pings are answered by picows (auto pong)
            transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)


async def start(args):
    server = await ws_create_server(
        lambda request: EchoListener(),
        args.host,
        args.port,
        max_frame_size=64 * 1024 * 1024,
        enable_auto_ping=False,
    )

    async def stop():
        server.close()

    return stop


if __name__ == "__main__":
    _common.run("picows", start)
