"""The relay server: ``ws://host:port/<topic>`` subscribes and publishes; ``/stats`` is JSON.

A connection to ``/<topic>`` (percent-decoded) is subscribed to that topic and
every message it sends is published there. A connection to ``/`` speaks a
small JSON control protocol in text messages::

    {"subscribe": ["prices", "news"]}
    {"unsubscribe": ["news"]}
    {"publish": "prices", "data": "42"}

It runs on the callback API (``Listener``): a message is fanned out inside
``data_received``, with no task or queue in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Optional, Union
from urllib.parse import unquote

from ..asyncio import Listener, Server, ServerConnection, WebSocket, serve
from ..frames import CloseCode
from ..handshake import Headers, Request, Response
from .core import Relay

__all__ = ["serve_relay", "RelayListener", "MAX_TOPIC_LENGTH"]

logger = logging.getLogger("fastws.relay")

MAX_TOPIC_LENGTH = 256


def topic_from_path(path: str) -> str:
    """``/a%20b?x=1`` → ``a b``; ``/`` → ``""`` (the control connection)."""
    return unquote(path.split("?", 1)[0].lstrip("/"))


class RelayListener(Listener):
    """One per connection: publishes what it receives, to its path's topic or by control message."""

    __slots__ = ("relay", "echo", "topic")

    def __init__(self, relay: Relay, echo: bool = False) -> None:
        self.relay = relay
        self.echo = echo
        self.topic = ""

    def on_open(self, ws: WebSocket) -> None:
        assert isinstance(ws, ServerConnection)
        self.topic = topic_from_path(ws.path)
        if len(self.topic) > MAX_TOPIC_LENGTH:
            ws.close_nowait(CloseCode.POLICY_VIOLATION, "topic name too long")
        elif self.topic:
            self.relay.subscribe(ws, self.topic)

    def on_message(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        if self.topic:
            self.relay.publish(self.topic, message, exclude=None if self.echo else ws)
        else:
            self.control(ws, message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.relay.unsubscribe(ws)

    def control(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        """Apply one JSON control message; anything else closes with 1003 or 1008."""
        if not isinstance(message, str):
            ws.close_nowait(CloseCode.UNSUPPORTED_DATA, "control messages are JSON text")
            return
        try:
            command = json.loads(message)
            if not isinstance(command, dict) or not command:
                raise ValueError("not a JSON object")
            for name, value in command.items():
                if name in ("subscribe", "unsubscribe"):
                    topics = [value] if isinstance(value, str) else value
                    if not isinstance(topics, list) or not all(_valid_topic(t) for t in topics):
                        raise ValueError(f"{name}: expected a topic or a list of topics")
                    for topic in topics:
                        (self.relay.subscribe if name == "subscribe" else self.relay.unsubscribe)(ws, topic)
                elif name == "publish":
                    data = command.get("data")
                    if not _valid_topic(value) or not isinstance(data, str):
                        raise ValueError('publish: expected {"publish": topic, "data": text}')
                    self.relay.publish(value, data, exclude=None if self.echo else ws)
                elif name != "data":
                    raise ValueError(f"unknown command {name!r}")
        except ValueError as exc:  # json.JSONDecodeError is one
            logger.info("%s bad control message: %s", ws.peer, exc)
            ws.close_nowait(CloseCode.POLICY_VIOLATION, f"bad control message: {exc}"[:120])


def _valid_topic(topic: Any) -> bool:
    return isinstance(topic, str) and 0 < len(topic) <= MAX_TOPIC_LENGTH


class serve_relay:
    """Run a relay: ``async with serve_relay("127.0.0.1", 3000) as server: ...``.

    ``relay`` (a ``Relay``; a new one by default) holds the topics and the
    slow-consumer settings, and the backplane if any (started and stopped
    here). ``echo`` sends publishers their own messages too. Rates are sampled
    every second and logged every ``log_interval`` seconds. Other keywords go
    to ``fastws.serve`` (limits, ``ssl``, ``reuse_port``, ...); compression is
    off by default, since one encoded frame is shared by all subscribers.
    """

    def __init__(
        self,
        host: Optional[str] = "127.0.0.1",
        port: int = 0,
        *,
        relay: Optional[Relay] = None,
        echo: bool = False,
        log_interval: Optional[float] = 10.0,
        **options: Any,
    ) -> None:
        self.relay = relay if relay is not None else Relay()
        self.log_interval = log_interval
        self._ticker: Optional[asyncio.TimerHandle] = None
        self._ticks = 0
        options.setdefault("compression", None)
        relay_ = self.relay
        self._serve = serve(
            host=host,
            port=port,
            listener=lambda: RelayListener(relay_, echo),
            process_request=self.process_request,
            **options,
        )

    def process_request(self, ws: ServerConnection, request: Request) -> Optional[Response]:
        """Plain HTTP: ``/stats`` is the JSON statistics, anything else a hint."""
        if "websocket" in request.headers.tokens("Upgrade"):
            return None
        if topic_from_path(request.path) == "stats":
            body = json.dumps(self.relay.stats.snapshot()).encode()
            return Response(200, Headers([("Content-Type", "application/json")]), body)
        hint = b"fastws relay: connect to ws://<host>/<topic>; statistics at /stats\n"
        return Response(200, Headers([("Content-Type", "text/plain; charset=utf-8")]), hint)

    def _tick(self) -> None:
        stats = self.relay.stats
        stats.sample()
        self._ticks += 1
        if self.log_interval and self._ticks % max(1, round(self.log_interval)) == 0:
            backplane = self.relay.backplane
            logger.info(
                "relay: %d subscribers, %d topics, in %.0f/s, out %.0f/s, dropped %d, closed slow %d%s",
                self.relay.subscriber_count,
                len(self.relay.topics()),
                stats.rate_in,
                stats.rate_out,
                stats.dropped,
                stats.closed_slow,
                f", redis {backplane.state}" if backplane is not None else "",
            )
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    async def __aenter__(self) -> Server:
        if self.relay.backplane is not None:
            await self.relay.backplane.start()
        server = await self._serve.__aenter__()
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)
        return server

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self._serve.__aexit__(*exc_info)
        if self.relay.backplane is not None:
            await self.relay.backplane.close()
