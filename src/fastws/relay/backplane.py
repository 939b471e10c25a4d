"""Share topics between relay processes through Redis pub/sub.

Each process publishes what its own clients send to the Redis channel
``<prefix><topic>`` and subscribes to the channels of the topics that have
local subscribers. A message on Redis is ``origin (8 bytes) + opcode (1 byte)
+ payload``: the origin lets a process skip its own messages (it delivered
them locally already, without waiting for Redis), the opcode keeps text and
binary apart. Any program can publish to a topic with ``pack(message)``.

Order: one connection publishes, in order, so messages from one publisher
reach every process in the order they were sent (Redis keeps per-connection
order on delivery). If Redis is unreachable, local delivery goes on; messages
published meanwhile reach only their own process (counted as ``lost``) and
nothing is replayed after the reconnection: Redis pub/sub keeps no history.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
from typing import TYPE_CHECKING, Any, Optional, Union

from ..connection import PreparedMessage
from ..frames import Opcode

if TYPE_CHECKING:
    from .core import Relay

__all__ = ["RedisBackplane", "pack", "unpack"]

logger = logging.getLogger("fastws.relay")

ORIGIN_SIZE = 8
EXTERNAL_ORIGIN = bytes(ORIGIN_SIZE)  # what pack() uses by default: never one of ours


def pack(message: Union[str, bytes], origin: bytes = EXTERNAL_ORIGIN) -> bytes:
    """The Redis message that delivers ``message`` (text if ``str``) to a topic's subscribers."""
    if isinstance(message, str):
        return origin + b"\x01" + message.encode("utf-8")
    return origin + b"\x02" + bytes(message)


def unpack(data: bytes) -> tuple[bytes, Union[str, bytes]]:
    """``(origin, message)`` from a Redis message; ValueError if it is not one."""
    if len(data) <= ORIGIN_SIZE:
        raise ValueError("too short")
    origin, kind, payload = data[:ORIGIN_SIZE], data[ORIGIN_SIZE], data[ORIGIN_SIZE + 1 :]
    if kind == Opcode.TEXT:
        return origin, payload.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if kind == Opcode.BINARY:
        return origin, payload
    raise ValueError(f"unknown message kind {kind}")


class RedisBackplane:
    """Redis pub/sub between relay processes (needs the ``redis`` package: ``pip install fastws[redis]``).

    ``url`` is a Redis URL (``redis://host:port/db``). The connection is kept
    by a background task started with ``start()``; it reconnects with
    exponential backoff (``reconnect_min`` doubling up to ``reconnect_max``
    seconds) and logs every change of state. At most ``max_outbox`` messages
    wait to be published; beyond that (Redis slower than the clients), new
    ones are counted as ``lost``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "fastws:",
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        max_outbox: int = 10000,
    ) -> None:
        import redis.asyncio  # noqa: F401  (fail now, not in the background, if redis is missing)

        self.url = url
        self.prefix = prefix
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.max_outbox = max_outbox
        self.origin = os.urandom(ORIGIN_SIZE)
        self.state = "stopped"  # stopped, connecting, connected, disconnected
        self.published = 0  # sent to Redis
        self.received = 0  # delivered here from other processes
        self.lost = 0  # published here while Redis was unreachable or too slow
        self.reconnects = 0
        self.subscribed: set[str] = set()  # topics subscribed on the current Redis connection
        self._relay: Optional[Relay] = None
        self._outbox: collections.deque[bytes] = collections.deque()  # channel, data, channel, data, ...
        # Events are made in start(), inside the running loop.
        self._outbox_ready: Optional[asyncio.Event] = None
        self._topics_changed: Optional[asyncio.Event] = None
        self._connected: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    def attach(self, relay: Relay) -> None:
        self._relay = relay

    # -- called by the relay ---------------------------------------------------

    def publish(self, topic: str, message: Union[str, bytes]) -> None:
        """Queue a message for the other processes (never waits)."""
        if self.state != "connected" or len(self._outbox) >= 2 * self.max_outbox:
            self.lost += 1
            return
        self._outbox.append((self.prefix + topic).encode("utf-8"))
        self._outbox.append(pack(message, self.origin))
        assert self._outbox_ready is not None
        self._outbox_ready.set()

    def topics_changed(self) -> None:
        if self._topics_changed is not None:
            self._topics_changed.set()

    # -- lifecycle -------------------------------------------------------------

    async def start(self, timeout: Optional[float] = 5.0) -> None:
        """Start the connection task and wait up to ``timeout`` seconds for the
        first connection (it keeps trying in the background after that)."""
        if self._task is None:
            self._outbox_ready = asyncio.Event()
            self._topics_changed = asyncio.Event()
            self._connected = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await self.wait_connected(timeout)
        except asyncio.TimeoutError:
            pass

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        assert self._connected is not None, "start() first"
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._set_state("stopped")

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": self.state,
            "published": self.published,
            "received": self.received,
            "lost": self.lost,
            "reconnects": self.reconnects,
            "subscribed": sorted(self.subscribed),
        }

    def _set_state(self, state: str, detail: str = "") -> None:
        if state == self.state:
            return
        self.state = state
        if self._connected is not None:
            if state == "connected":
                self._connected.set()
            else:
                self._connected.clear()
        log = logger.warning if state == "disconnected" else logger.info
        log("redis backplane %s: %s%s", self.url, state, f" ({detail})" if detail else "")

    async def _run(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        delay = self.reconnect_min
        while True:
            self._set_state("connecting")
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5.0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            tasks: list[asyncio.Task] = []
            try:
                await client.ping()
                # A channel of our own keeps the subscriber connection in
                # subscribed mode even while no topic has local subscribers.
                await pubsub.subscribe(self.prefix + "\x00" + self.origin.hex())
                self.subscribed = set()
                self._outbox.clear()
                self._set_state("connected")
                delay = self.reconnect_min
                loop = asyncio.get_running_loop()
                tasks = [
                    loop.create_task(self._publish_loop(client)),
                    loop.create_task(self._receive_loop(pubsub)),
                    loop.create_task(self._subscription_loop(pubsub)),
                ]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises what ended it
                raise ConnectionError("backplane task ended")
            except (RedisError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
                self.lost += len(self._outbox) // 2
                self._outbox.clear()
                self.subscribed = set()
                self._set_state("disconnected", f"{type(exc).__name__}: {exc}; retrying in {delay:.2f}s")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await _quietly(pubsub.aclose())
                await _quietly(client.aclose())
            self.reconnects += 1
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: do not reconnect in lockstep
            delay = min(delay * 2, self.reconnect_max)

    async def _publish_loop(self, client: Any) -> None:
        outbox, ready = self._outbox, self._outbox_ready
        assert ready is not None
        while True:
            await ready.wait()
            ready.clear()
            while outbox:
                batch = list(outbox)
                outbox.clear()
                pipe = client.pipeline(transaction=False)
                for i in range(0, len(batch), 2):
                    pipe.publish(batch[i], batch[i + 1])
                try:
                    await pipe.execute()
                except BaseException:
                    self.lost += len(batch) // 2
                    raise
                self.published += len(batch) // 2

    async def _subscription_loop(self, pubsub: Any) -> None:
        """Keep the Redis subscriptions equal to the topics with local subscribers."""
        changed = self._topics_changed
        assert changed is not None
        while True:
            changed.clear()
            wanted = set(self._relay.topics()) if self._relay is not None else set()
            added, removed = wanted - self.subscribed, self.subscribed - wanted
            if added:
                await pubsub.subscribe(*(self.prefix + topic for topic in added))
                self.subscribed |= added
            if removed:
                await pubsub.unsubscribe(*(self.prefix + topic for topic in removed))
                self.subscribed -= removed
            if not changed.is_set():
                await changed.wait()

    async def _receive_loop(self, pubsub: Any) -> None:
        prefix = len(self.prefix)
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            try:
                origin, payload = unpack(message["data"])
            except ValueError as exc:
                logger.warning("redis backplane: ignoring a malformed message on %r: %s", message["channel"], exc)
                continue
            if origin == self.origin or self._relay is None:
                continue  # ours: delivered locally when it was published
            self.received += 1
            topic = message["channel"][prefix:].decode("utf-8", "replace")
            self._relay.deliver(topic, PreparedMessage(payload, self._relay.codec))


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception:
        pass
