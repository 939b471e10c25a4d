"""Topics and fan-out: encode a message once, send the same frames to every subscriber.

Every frame goes through the subscriber's connection (``WebSocket.send_soon``
and its sans-I/O ``Connection``), which batches writes per loop iteration.
A subscriber that cannot keep up gets a bounded backlog instead of holding the
topic back: the relay never awaits a subscriber. A backlog holds references to
the one shared ``PreparedMessage``, so it costs a pointer per message, whatever
the number of subscribers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Union

from .. import codec as default_codec
from ..asyncio.protocol import fan_out
from ..connection import PreparedMessage
from ..exceptions import ConnectionClosed
from ..frames import CloseCode

if TYPE_CHECKING:
    from ..asyncio.protocol import WebSocket

__all__ = ["Relay", "SlowConsumerPolicy"]

Message = Union[str, bytes]

logger = logging.getLogger("fastws.relay")


class SlowConsumerPolicy(str, enum.Enum):
    """What happens when a subscriber's backlog is full."""

    DROP_OLDEST = "drop-oldest"  # make room: the subscriber skips ahead to newer messages
    DROP_NEWEST = "drop-newest"  # the new message is not queued for this subscriber
    CLOSE = "close"  # close the subscriber (1013 by default): it reconnects and knows it missed data


class _Subscriber:
    """One connection's subscriptions, and its backlog while it cannot be written to."""

    __slots__ = ("ws", "topics", "backlog", "draining")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.topics: set[str] = set()
        self.backlog: list[PreparedMessage] = []  # held while writing is paused or a fragmented message is sent
        self.draining: Optional[asyncio.Task] = None  # waits until the connection can be written to


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
            subscriber.backlog.clear()
            draining = subscriber.draining
            if draining is not None and draining is not asyncio.current_task():
                draining.cancel()

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
        if topic not in self._topics:
            return 0
        return self.deliver(topic, PreparedMessage(message, self.codec), exclude)

    def deliver(self, topic: str, message: PreparedMessage, exclude: Optional[WebSocket] = None) -> int:
        """Send a prepared message to the local subscribers of ``topic``."""
        members = self._topics.get(topic)
        if not members:
            return 0
        ready = [s.ws for s in members if not s.backlog and not s.ws.writing_paused and s.ws is not exclude]
        queued = len(ready)
        behind = len(members) - queued
        if exclude is not None and self._subscribers.get(exclude) in members:
            behind -= 1
        if behind:  # their backlogs grow (or the slow-consumer policy applies)
            for subscriber in members:
                if subscriber.ws is not exclude and (subscriber.backlog or subscriber.ws.writing_paused):
                    queued += self._hold(subscriber, message)
        for ws, refusal in fan_out(ready, message):
            queued -= 1
            if isinstance(refusal, ConnectionClosed):
                self.unsubscribe(ws)
            else:  # a fragmented message is being sent (RFC 6455 §5.4): wait for its end
                queued += self._hold(self._subscribers[ws], message)
        self.stats.messages_out += queued
        return queued

    def _hold(self, subscriber: _Subscriber, message: PreparedMessage) -> bool:
        """The connection cannot take more now: keep ``message`` in the backlog,
        applying the slow-consumer policy when it is full. True if held.
        Never unsubscribes (the caller is iterating over a topic)."""
        ws = subscriber.ws
        if not ws.open or ws.closed:
            return False  # closing or lost: it is unsubscribed when its drain task ends
        backlog = subscriber.backlog
        if len(backlog) >= self.max_backlog:
            self.stats.dropped += 1
            if self.policy is SlowConsumerPolicy.DROP_OLDEST:
                del backlog[0]
            else:
                if self.policy is SlowConsumerPolicy.CLOSE:
                    self.stats.closed_slow += 1
                    logger.warning(
                        "%s slow consumer: %d messages waiting; closing (%d)",
                        ws.peer,
                        len(backlog),
                        self.close_code,
                    )
                    ws.close_nowait(self.close_code, "slow consumer")
                return False
        backlog.append(message)
        if subscriber.draining is None:
            subscriber.draining = asyncio.get_running_loop().create_task(self._drain(subscriber))
        return True

    async def _drain(self, subscriber: _Subscriber) -> None:
        """Write the backlog once the connection can take it (the peer read its
        buffer down, or the fragmented message being sent is complete)."""
        ws = subscriber.ws
        try:
            while subscriber.backlog:
                await ws.wait_sendable()
                backlog, subscriber.backlog = subscriber.backlog, []
                for message in backlog:
                    ws.send_soon(message)
        except ConnectionClosed:
            self.unsubscribe(ws)
        finally:
            subscriber.draining = None


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
