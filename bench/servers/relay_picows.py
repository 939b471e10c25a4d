"""picows pub/sub relay for bench/bench_fanout.py: a listener per connection, a
dict topic → set of transports, and for every message a send loop
(``transport.send`` per subscriber) over the topic's other subscribers, as a
picows user would write it. Fragmented messages are reassembled first."""

from __future__ import annotations

import _common
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

BINARY, TEXT, CONTINUATION, CLOSE, PING = (
    WSMsgType.BINARY,
    WSMsgType.TEXT,
    WSMsgType.CONTINUATION,
    WSMsgType.CLOSE,
    WSMsgType.PING,
)
TOPICS: dict[str, set] = {}


class RelayListener(WSListener):
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.subscribers: set = set()
        self.parts: list[bytes] = []  # a fragmented message so far
        self.kind = BINARY

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.subscribers = TOPICS.setdefault(self.topic, set())
        self.subscribers.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == BINARY or kind == TEXT:
            if not frame.fin:
                self.kind, self.parts = kind, [frame.get_payload_as_bytes()]
                return
            payload = frame.get_payload_as_bytes()
        elif kind == CONTINUATION:
            self.parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            kind, payload, self.parts = self.kind, b"".join(self.parts), []
        elif kind == CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        else:
            return  # pings are answered by picows (auto pong); pongs ignored
        for subscriber in self.subscribers:
            if subscriber is not transport:
                subscriber.send(kind, payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.subscribers.discard(transport)
        if not self.subscribers:
            TOPICS.pop(self.topic, None)


async def start(args):
    server = await ws_create_server(
        lambda request: RelayListener(request.path.decode().lstrip("/")),  # picows gives the path as bytes
        args.host,
        args.port,
        max_frame_size=64 * 1024 * 1024,
        enable_auto_ping=False,
    )

    async def stop():
        server.close()

    return stop


if __name__ == "__main__":
    _common.run("picows", start, kind="relay")
