"""Share topics between relay processes through Redis: pub/sub, and Streams for history.

Each process publishes what its own clients send to the Redis channel
``<prefix><topic>`` and subscribes to the channels of the topics that have
local subscribers. A message on Redis is ``origin (8 bytes) + opcode (1 byte)
+ payload``: the origin lets a process skip its own messages (it delivered
them locally already, without waiting for Redis), the opcode keeps text and
binary apart. Any program can publish to a topic with ``pack(message)``.

Order: one connection publishes, in order, so messages from one publisher
reach every process in the order they were sent (Redis keeps per-connection
order on delivery). If Redis is unreachable, local delivery goes on; up to
``max_outbox`` messages published meanwhile wait in this process and are
sent, in order, once it is back (what exceeds the bound is counted as
``lost``). Without history, a process that was disconnected from Redis misses
what others published meanwhile: Redis pub/sub keeps nothing.

With history (``Relay(history=N, backplane=RedisBackplane(...))``), every
message goes through one Lua script that gives it the topic's next offset
(``HINCRBY`` on the hash ``<prefix>meta:<topic>``, which also holds the epoch),
appends it to the stream ``<prefix>stream:<topic>`` (``XADD`` with the offset
as the entry ID, ``MAXLEN ~ N``) and publishes it with its epoch and offset.
Every process, the publisher's too, delivers it from Redis, so all see one
order per topic. A process notices a jump in the offsets (it was disconnected
from Redis) and fills it from the stream before going on; if the stream no
longer has them, the envelope subscribers get a ``gap`` notice. Subscribers
recover with ``since`` from the stream, shared by every process and kept
across a relay restart (and a Redis restart, if Redis persists its data).
The keys expire ``history_ttl`` seconds after the topic's last message.
Delivery to Redis is at least once: a batch that fails with the connection is
sent again after the reconnection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any, Optional, Union

from ..connection import PreparedMessage
from ..frames import Opcode
from .core import Publication, Recovery, new_epoch, recover

if TYPE_CHECKING:
    from ..asyncio.protocol import WebSocket
    from .core import Relay

__all__ = ["RedisBackplane", "pack", "unpack"]

logger = logging.getLogger("fastws.relay")

ORIGIN_SIZE = 8
EXTERNAL_ORIGIN = bytes(ORIGIN_SIZE)  # what pack() uses by default: never one of ours
HISTORY_MARK = b"\xff"  # a message with an epoch and offset; no origin starts with it
SEQ_SIZE = 8

# KEYS: meta hash, stream, channel; ARGV: message, maxlen, a new epoch, ttl (s, 0: none)
PUBLISH_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('DEL', KEYS[2])
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local now = redis.call('TIME')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'm', ARGV[1], 't', now[1])
if tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH', KEYS[3], '\\255' .. epoch .. ':' .. offset .. ':' .. ARGV[1])
return offset
"""


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


def unpack_history(data: bytes) -> tuple[str, int, bytes, int, Union[str, bytes]]:
    """``(epoch, offset, origin, seq, message)`` from a message the script published."""
    epoch, offset, rest = data[1:].split(b":", 2)
    origin, seq, message = _unpack_stored(rest)
    return epoch.decode("ascii"), int(offset), origin, seq, message


def _unpack_stored(data: bytes) -> tuple[bytes, int, Union[str, bytes]]:
    """A stream entry's message: ``origin + seq (8 bytes) + pack()``'s opcode and payload."""
    origin = data[:ORIGIN_SIZE]
    seq = int.from_bytes(data[ORIGIN_SIZE : ORIGIN_SIZE + SEQ_SIZE], "big")
    _, message = unpack(origin + data[ORIGIN_SIZE + SEQ_SIZE :])
    return origin, seq, message


class RedisBackplane:
    """Redis between relay processes (needs the ``redis`` package: ``pip install fastws[redis]``).

    ``url`` is a Redis URL (``redis://host:port/db``). The connection is kept
    by a background task started with ``start()``; it reconnects with
    exponential backoff (``reconnect_min`` doubling up to ``reconnect_max``
    seconds) and logs every change of state. At most ``max_outbox`` messages
    wait to be sent to Redis (while it is down or slower than the clients);
    beyond that, new ones are counted as ``lost``. History is on when the
    relay has ``history`` (see the module's documentation).
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

        if max_outbox < 1:
            raise ValueError("max_outbox must be at least 1")
        self.url = url
        self.prefix = prefix
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.max_outbox = max_outbox
        self.origin = bytes([os.urandom(1)[0] & 0x7F]) + os.urandom(ORIGIN_SIZE - 1)  # never HISTORY_MARK
        self.history = 0  # entries per topic kept in Redis (the relay's history); 0: pub/sub only
        self.history_ttl: Optional[float] = None
        self.state = "stopped"  # stopped, connecting, connected, disconnected
        self.published = 0  # sent to Redis
        self.received = 0  # delivered here from other processes (with history: every message)
        self.lost = 0  # published here while the outbox was full
        self.filled = 0  # messages fetched from the stream to fill a jump in the offsets
        self.gaps = 0  # jumps that could not be filled
        self.reconnects = 0
        self.subscribed: set[str] = set()  # topics subscribed on the current Redis connection
        self.positions: dict[str, tuple[str, int]] = {}  # topic: (epoch, offset) last delivered here
        self._relay: Optional[Relay] = None
        self._outbox: collections.deque[tuple[str, Union[str, bytes], int]] = collections.deque()
        self._seq = 0
        self._excluded: dict[int, WebSocket] = {}  # seq of a message here: the connection that sent it
        self._client: Any = None
        self._script: Any = None
        # Events are made in start(), inside the running loop.
        self._outbox_ready: Optional[asyncio.Event] = None
        self._topics_changed: Optional[asyncio.Event] = None
        self._connected: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    def attach(self, relay: Relay) -> None:
        self._relay = relay
        self.history = relay.history_size
        self.history_ttl = relay.history_ttl

    # -- called by the relay ---------------------------------------------------

    def publish(self, topic: str, message: Union[str, bytes], exclude: Optional[WebSocket] = None) -> None:
        """Queue a message for Redis (never waits); ``exclude``: not delivered
        back to this connection (with history, where delivery comes from Redis)."""
        if len(self._outbox) >= self.max_outbox:
            self.lost += 1
            return
        self._seq += 1
        if exclude is not None and self.history:
            self._excluded[self._seq] = exclude
        self._outbox.append((topic, message, self._seq))
        if self._outbox_ready is not None:
            self._outbox_ready.set()

    def topics_changed(self) -> None:
        if self._topics_changed is not None:
            self._topics_changed.set()

    async def recover(self, topic: str, since: Optional[int], epoch: Optional[str]) -> Recovery:
        """The topic's position in Redis and, from ``since``, what its stream still holds."""
        client = self._client
        if client is None or self.state != "connected":
            raise ConnectionError("Redis is not connected")
        meta, stream = self._keys(topic)
        pipe = client.pipeline(transaction=True)
        pipe.hsetnx(meta, "epoch", new_epoch())
        pipe.hmget(meta, "epoch", "offset")
        if since is not None:
            pipe.xrange(stream, min=f"{since + 1}-0", max="+")
        results = await pipe.execute()
        current = results[1][0].decode("ascii")
        last = int(results[1][1] or 0)
        entries = self._publications(topic, results[2]) if since is not None else []
        first = entries[0].offset if entries else None
        return recover(topic, current, last, first, since, epoch, entries)

    def _keys(self, topic: str) -> tuple[str, str]:
        return f"{self.prefix}meta:{topic}", f"{self.prefix}stream:{topic}"

    def _publications(self, topic: str, entries: list) -> list[Publication]:
        """Stream entries as publications, the expired ones (older than history_ttl) left out."""
        assert self._relay is not None
        oldest = time.time() - self.history_ttl if self.history_ttl is not None else None
        publications = []
        for entry_id, fields in entries:
            if oldest is not None and int(fields.get(b"t", 0)) < oldest:
                continue
            try:
                _, _, message = _unpack_stored(fields[b"m"])
            except (KeyError, ValueError):
                continue
            offset = int(entry_id.split(b"-")[0])
            publications.append(Publication(topic, message, offset, self._relay.codec))
        return publications

    # -- lifecycle -------------------------------------------------------------

    async def start(self, timeout: Optional[float] = 5.0) -> None:
        """Start the connection task and wait up to ``timeout`` seconds for the
        first connection (it keeps trying in the background after that)."""
        if self._task is None:
            self._outbox_ready = asyncio.Event()
            self._topics_changed = asyncio.Event()
            self._connected = asyncio.Event()
            if self._outbox:
                self._outbox_ready.set()
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
            "history": self.history,
            "published": self.published,
            "received": self.received,
            "buffered": len(self._outbox),
            "lost": self.lost,
            "filled": self.filled,
            "gaps": self.gaps,
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
                self._client = client
                self._script = client.register_script(PUBLISH_SCRIPT)
                self._set_state("connected")
                delay = self.reconnect_min
                loop = asyncio.get_running_loop()
                tasks = [
                    loop.create_task(self._publish_loop(client)),
                    loop.create_task(self._receive_loop(pubsub, client)),
                    loop.create_task(self._subscription_loop(pubsub)),
                ]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises what ended it
                raise ConnectionError("backplane task ended")
            except (RedisError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
                self.subscribed = set()
                self._set_state("disconnected", f"{type(exc).__name__}: {exc}; retrying in {delay:.2f}s")
            finally:
                self._client = None
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
                for topic, message, seq in batch:
                    if self.history:
                        meta, stream = self._keys(topic)
                        stored = self.origin + seq.to_bytes(SEQ_SIZE, "big") + pack(message)[ORIGIN_SIZE:]
                        ttl = 0 if self.history_ttl is None else max(1, round(self.history_ttl))
                        await self._script(  # queued in the pipeline (EVALSHA; loaded if Redis lacks it)
                            keys=[meta, stream, self.prefix + topic],
                            args=[stored, self.history, new_epoch(), ttl],
                            client=pipe,
                        )
                    else:
                        pipe.publish((self.prefix + topic).encode("utf-8"), pack(message, self.origin))
                try:
                    await pipe.execute()
                except BaseException:
                    # Not sent (or not known to be): first in line after the reconnection.
                    outbox.extendleft(reversed(batch))
                    while len(outbox) > self.max_outbox:
                        self._excluded.pop(outbox.pop()[2], None)
                        self.lost += 1
                    raise
                self.published += len(batch)

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
                for topic in removed:
                    self.positions.pop(topic, None)  # nobody here follows it any more
            if not changed.is_set():
                await changed.wait()

    async def _receive_loop(self, pubsub: Any, client: Any) -> None:
        prefix = len(self.prefix)
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            topic = message["channel"][prefix:].decode("utf-8", "replace")
            relay = self._relay
            try:
                if data[:1] == HISTORY_MARK:
                    epoch, offset, origin, seq, payload = unpack_history(data)
                else:
                    origin, payload = unpack(data)
                    epoch, offset, seq = "", 0, 0
            except ValueError as exc:
                logger.warning("redis backplane: ignoring a malformed message on %r: %s", message["channel"], exc)
                continue
            if relay is None:
                continue
            if not epoch:  # pub/sub only: ours was delivered when it was published
                if origin == self.origin:
                    continue
                self.received += 1
                relay.deliver(topic, PreparedMessage(payload, relay.codec))
                continue
            exclude = self._excluded.pop(seq, None) if origin == self.origin else None
            await self._in_order(client, topic, epoch, offset)
            position = self.positions.get(topic)
            if position is not None and position[0] == epoch and offset <= position[1]:
                continue  # filled from the stream already
            self.positions[topic] = (epoch, offset)
            self.received += 1
            relay.deliver(Publication(topic, payload, offset, relay.codec), exclude)

    async def _in_order(self, client: Any, topic: str, epoch: str, offset: int) -> None:
        """Before ``offset``: deliver what this process missed of the topic, or tell of the gap."""
        position = self.positions.get(topic)
        if position is None or (position[0] == epoch and offset <= position[1] + 1):
            return
        relay = self._relay
        assert relay is not None
        if position[0] != epoch:
            self.gaps += 1
            self.positions[topic] = (epoch, offset - 1)
            relay.gap(topic, epoch, offset - 1, "epoch changed")
            return
        _, stream = self._keys(topic)
        entries = self._publications(
            topic, await client.xrange(stream, min=f"{position[1] + 1}-0", max=f"{offset - 1}-0")
        )
        if [p.offset for p in entries] != list(range(position[1] + 1, offset)):
            self.gaps += 1
            self.positions[topic] = (epoch, offset - 1)
            relay.gap(topic, epoch, offset - 1, "history gone")
            return
        for publication in entries:
            self.filled += 1
            relay.deliver(publication)
        self.positions[topic] = (epoch, offset - 1)


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception:
        pass
