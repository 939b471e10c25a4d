"""Topics and fan-out: encode a message once, write the same bytes to every subscriber.

A subscriber that cannot keep up gets a bounded backlog instead of holding
the topic back: the relay never awaits a subscriber. Frames waiting for a
subscriber are references to the one shared ``bytes`` object, so a backlog
costs a pointer per message, whatever the number of subscribers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Union

from .. import codec as default_codec
from ..connection import State
from ..exceptions import ConnectionClosed
from ..frames import CloseCode, Opcode

if TYPE_CHECKING:
    from ..asyncio.protocol import WebSocket

__all__ = ["Relay", "SlowConsumerPolicy", "broadcast", "encode"]

Message = Union[str, bytes]

logger = logging.getLogger("fastws.relay")


class SlowConsumerPolicy(str, enum.Enum):
    """What happens when a subscriber's backlog is full."""

    DROP_OLDEST = "drop-oldest"  # make room: the subscriber skips ahead to newer messages
    DROP_NEWEST = "drop-newest"  # the new message is not queued for this subscriber
    CLOSE = "close"  # close the subscriber (1013 by default): it reconnects and knows it missed data


def encode(message: Message, codec: ModuleType = default_codec) -> bytes:
    """The server-side (unmasked) frames of one message, fragmented at MAX_FRAME_SIZE."""
    opcode = Opcode.TEXT if isinstance(message, str) else Opcode.BINARY
    return codec.encode_message(opcode, message)


def broadcast(connections: Iterable[WebSocket], message: Message, codec: ModuleType = default_codec) -> int:
    """Send ``message`` to every open connection, encoding it once.

    Never waits: a connection's write buffer may grow past ``write_limit``
    (its ``write_timeout`` drops a peer that stops reading). Connections that
    are not open are skipped. Returns how many connections it was written to.
    """
    frame = encode(message, codec)
    sent = 0
    for ws in connections:
        if ws.open:
            ws.write_frame_bytes(frame)
            sent += 1
    return sent


class _Subscriber:
    """One connection's subscriptions and the frames not yet written to it."""

    __slots__ = ("ws", "topics", "pending", "draining")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.topics: set[str] = set()
        self.pending: list[bytes] = []  # frames for the next flush; the backlog while writing is paused
        self.draining: Optional[asyncio.Task] = None  # waits for the write buffer to drain


class Relay:
    """Publish/subscribe between WebSocket connections.

    ``subscribe(ws, topic)``, ``unsubscribe(ws, topic=None)``, ``publish(topic,
    message)``. Writes are gathered per event-loop iteration, so a burst of
    messages reaches each subscriber in one write. Each subscriber may have at
    most ``max_backlog`` messages waiting while its peer is not reading; then
    ``policy`` applies (``close_code`` for ``SlowConsumerPolicy.CLOSE``).
    With a ``backplane`` (see ``fastws.relay.RedisBackplane``), messages also
    reach subscribers of the same topics in other processes.
    """

    def __init__(
        self,
        *,
        max_backlog: int = 1024,
        policy: Union[SlowConsumerPolicy, str] = SlowConsumerPolicy.CLOSE,
        close_code: int = CloseCode.TRY_AGAIN_LATER,
        backplane: Any = None,
        codec: ModuleType = default_codec,
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.max_backlog = max_backlog
        self.policy = SlowConsumerPolicy(policy)
        self.close_code = close_code
        self.codec = codec
        self.backplane = backplane
        self._topics: dict[str, set[_Subscriber]] = {}
        self._subscribers: dict[WebSocket, _Subscriber] = {}
        self._dirty: list[_Subscriber] = []  # subscribers with pending frames, flushed once per loop iteration
        self.stats = RelayStats(self)
        if backplane is not None:
            backplane.attach(self)

    # -- subscriptions -------------------------------------------------------

    def subscribe(self, ws: WebSocket, topic: str) -> None:
        if ws.connection is None:
            raise RuntimeError("subscribe a connection once its handshake is done")
        subscriber = self._subscribers.get(ws)
        if subscriber is None:
            subscriber = self._subscribers[ws] = _Subscriber(ws)
        subscriber.topics.add(topic)
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = set()
            if self.backplane is not None:
                self.backplane.topics_changed()
        members.add(subscriber)

    def unsubscribe(self, ws: WebSocket, topic: Optional[str] = None) -> None:
        """Leave ``topic``, or every topic (call this when a connection closes)."""
        subscriber = self._subscribers.get(ws)
        if subscriber is None:
            return
        for name in [topic] if topic is not None else list(subscriber.topics):
            subscriber.topics.discard(name)
            members = self._topics.get(name)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._topics[name]
                    if self.backplane is not None:
                        self.backplane.topics_changed()
        if not subscriber.topics:
            del self._subscribers[ws]
            subscriber.pending.clear()

    @property
    def subscriber_count(self) -> int:
        """Connections subscribed to at least one topic."""
        return len(self._subscribers)

    def topics(self) -> dict[str, int]:
        """Subscribers per topic."""
        return {name: len(members) for name, members in self._topics.items()}

    # -- publishing ----------------------------------------------------------

    def publish(self, topic: str, message: Message, *, exclude: Optional[WebSocket] = None) -> int:
        """Deliver ``message`` to the subscribers of ``topic`` (except ``exclude``,
        typically the sender) here and, through the backplane, in other
        processes. Returns the number of local subscribers it was queued for."""
        self.stats.messages_in += 1
        if self.backplane is not None:
            self.backplane.publish(topic, message)
        members = self._topics.get(topic)
        if not members:
            return 0
        return self.deliver(topic, encode(message, self.codec), exclude)

    def deliver(self, topic: str, frame: bytes, exclude: Optional[WebSocket] = None) -> int:
        """Queue an encoded frame for the local subscribers of ``topic``."""
        members = self._topics.get(topic)
        if not members:
            return 0
        dirty = self._dirty
        if not dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        queued = 0
        max_backlog = self.max_backlog
        for subscriber in members:
            if subscriber.ws is exclude:
                continue
            pending = subscriber.pending
            if not pending:
                dirty.append(subscriber)
            elif len(pending) >= max_backlog and not self._make_room(subscriber):
                continue
            pending.append(frame)
            queued += 1
        self.stats.messages_out += queued
        return queued

    def _make_room(self, subscriber: _Subscriber) -> bool:
        """The backlog is full: write it out if the peer is reading, else apply
        the slow-consumer policy. True if the new frame may still be queued.
        Never unsubscribes (the caller is iterating over a topic)."""
        ws = subscriber.ws
        if not ws.open:
            return False  # closing: it is unsubscribed at the next flush
        pending = subscriber.pending
        if not ws.writing_paused:  # a burst within one loop iteration, not a slow peer
            ws.write_frame_bytes(b"".join(pending))
            pending.clear()
            return True
        self.stats.dropped += 1
        if self.policy is SlowConsumerPolicy.DROP_OLDEST:
            del pending[0]
            return True
        if self.policy is SlowConsumerPolicy.CLOSE:
            self.stats.closed_slow += 1
            logger.warning(
                "%s slow consumer: %d messages waiting; closing (%d)", ws.remote_address, len(pending), self.close_code
            )
            ws.close_nowait(self.close_code, "slow consumer")
        return False

    def _flush(self) -> None:
        """Write each subscriber's pending frames in one write, unless its peer is behind."""
        dirty, self._dirty = self._dirty, []
        for subscriber in dirty:
            pending = subscriber.pending
            if not pending:
                continue
            ws = subscriber.ws
            # The common case inline, on the connection's internals: this runs
            # once per subscriber per loop iteration (half the cost of the
            # public write_frame_bytes path, measured).
            if ws._writing_paused or ws.connection.state is not State.OPEN:  # type: ignore[union-attr]
                self._write_pending(subscriber)
                continue
            ws._write(pending[0] if len(pending) == 1 else b"".join(pending))
            pending.clear()

    def _write_pending(self, subscriber: _Subscriber) -> None:
        ws = subscriber.ws
        pending = subscriber.pending
        if not pending:
            return
        if not ws.open:
            self.unsubscribe(ws)
            return
        if ws.writing_paused:
            # The backlog stays here (bounded by max_backlog), not in the
            # transport, until the peer reads; then it is written at once.
            if subscriber.draining is None:
                subscriber.draining = asyncio.get_running_loop().create_task(self._drain(subscriber))
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        try:
            ws.write_frame_bytes(data)
        except ConnectionClosed:
            self.unsubscribe(ws)

    async def _drain(self, subscriber: _Subscriber) -> None:
        try:
            await subscriber.ws.drain()
        except ConnectionClosed:
            self.unsubscribe(subscriber.ws)
            return
        finally:
            subscriber.draining = None
        self._write_pending(subscriber)


class RelayStats:
    """Counters and rates: what ``/stats`` serves and the relay logs."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.messages_in = 0  # published (locally or through the backplane)
        self.messages_out = 0  # deliveries queued to subscribers
        self.dropped = 0  # deliveries lost to full backlogs
        self.closed_slow = 0  # subscribers closed by SlowConsumerPolicy.CLOSE
        self.started = time.monotonic()
        self._last = (self.started, 0, 0)
        self.rate_in = 0.0
        self.rate_out = 0.0

    def sample(self) -> None:
        """Update the rates from the counters since the previous sample."""
        now = time.monotonic()
        then, messages_in, messages_out = self._last
        elapsed = now - then
        if elapsed > 0:
            self.rate_in = (self.messages_in - messages_in) / elapsed
            self.rate_out = (self.messages_out - messages_out) / elapsed
        self._last = (now, self.messages_in, self.messages_out)

    def snapshot(self) -> dict[str, Any]:
        relay = self.relay
        data: dict[str, Any] = {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "subscribers": relay.subscriber_count,
            "topics": relay.topics(),
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "messages_in_per_s": round(self.rate_in, 1),
            "messages_out_per_s": round(self.rate_out, 1),
            "dropped": self.dropped,
            "closed_slow": self.closed_slow,
        }
        if relay.backplane is not None:
            data["backplane"] = relay.backplane.snapshot()
        return data
