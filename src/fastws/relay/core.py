"""Topics and fan-out: encode a message once, send the same frames to every subscriber.

Every frame goes through the subscriber's connection (``WebSocket.send_soon``
and its sans-I/O ``Connection``), which batches writes per loop iteration.
A subscriber that cannot keep up gets a bounded backlog instead of holding the
topic back: the relay never awaits a subscriber. A backlog holds references to
the one shared ``PreparedMessage``, so it costs a pointer per message, whatever
the number of subscribers.

History and recovery: with ``history=N`` each published message gets a
per-topic ``offset`` (1, 2, ...) in an ``epoch`` (a random string that changes
when the topic's history is lost: a new process without Redis, a topic whose
history expired, Redis losing its data). The last ``N`` messages of a topic,
no older than ``history_ttl`` seconds, are kept; a subscriber that gives the
last offset it saw (``since``, and the ``epoch``) receives what it missed, in
order and once, then live messages, or is told that the history no longer
reaches back. Memory: an entry holds the message, its frame (about its size
again) and about 250 bytes of bookkeeping; an envelope frame is added once an
envelope subscriber asked for it, and the compressed copy of each frame once a
subscriber with permessage-deflate got it (a third to a fifth of the size for
JSON). With a ``RedisBackplane`` the history lives in
Redis Streams instead (see ``fastws.relay.backplane``).

Notices and envelopes (JSON text, for connections that ask for them)::

    {"subscribed": "prices", "epoch": "9f2c...", "offset": 42, "recovered": true}
    {"topic": "prices", "offset": 43, "data": "..."}        (binary: "data_b64")
    {"gap": "prices", "epoch": "9f2c...", "offset": 97, "reason": "history gone"}

``subscribed`` comes first, then the missed messages (offsets ``since + 1``
to ``offset``), then live ones; ``recovered`` is there when ``since`` was
given: false (with a ``reason``) if the history does not reach back, and the
deliveries resume after ``offset``. A ``gap`` says that messages up to
``offset`` could not be delivered (Redis lost them).

Raw subscribers get no JSON in their stream (a client could not tell a notice
from data), so a gap is told to them by closing: one that subscribed with
``since`` (it counts offsets) is closed with ``GAP_CLOSE_CODE`` (4002, "gap:
reconnect with since") when messages it cannot be given are found, before any
message after them; it reconnects with the offset it counted, and the
``subscribed`` notice says whether the missed messages were recovered. This
happens when the backplane finds a jump in offsets (``gap()``) and when its
backlog is full under the drop-oldest or drop-newest policy (dropping would
silently break its count). Raw subscribers without ``since`` are not told.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import enum
import json
import logging
import os
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

__all__ = ["GAP_CLOSE_CODE", "Publication", "Recovery", "Relay", "SlowConsumerPolicy"]

Message = Union[str, bytes]

logger = logging.getLogger("fastws.relay")

# Kinds of frames a subscriber takes. Compression is not a kind of its own: a
# PreparedMessage carries its compressed copy too (made once, on first use by a
# connection that negotiated permessage-deflate), and each connection's
# send_prepared picks the copy it can take, so compressed and plain
# subscribers of a topic are fanned out together.
RAW, ENVELOPE = 0, 1

GAP_CLOSE_CODE = 4002
"""The close code of a raw subscriber that subscribed with ``since`` when
messages it cannot be given are found: reconnect with the last offset counted
(``?since=``); the ``subscribed`` notice says whether they were recovered. In
4000-4999 (RFC 6455 §7.4.2: for applications), distinct from 1013 (the
slow-consumer close) and 4001 (token expired)."""
GAP_CLOSE_REASON = "gap: reconnect with since"


def new_epoch() -> str:
    return os.urandom(6).hex()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SlowConsumerPolicy(str, enum.Enum):
    """What happens when a subscriber's backlog is full."""

    DROP_OLDEST = "drop-oldest"  # make room: the subscriber skips ahead to newer messages
    DROP_NEWEST = "drop-newest"  # the new message is not queued for this subscriber
    CLOSE = "close"  # close the subscriber (1013 by default): it reconnects and knows it missed data


class Publication:
    """One published message: its topic, offset (None without history) and the
    frames of each kind (raw, envelope), encoded once when first needed; each
    ``PreparedMessage`` also makes its compressed copy once, when a subscriber
    with permessage-deflate first needs it."""

    __slots__ = ("topic", "message", "offset", "time", "frames", "codec")

    def __init__(
        self, topic: str, message: Message, offset: Optional[int] = None, codec: ModuleType = default_codec
    ) -> None:
        self.topic = topic
        self.message = message
        self.offset = offset
        self.time = time.monotonic()
        self.codec = codec
        self.frames: list[Optional[PreparedMessage]] = [None, None]

    def prepared(self, kind: int) -> PreparedMessage:
        prepared = self.frames[kind]
        if prepared is None:
            prepared = self.frames[kind] = PreparedMessage(self.envelope() if kind else self.message, self.codec)
        return prepared

    def envelope(self) -> str:
        message = self.message
        if isinstance(message, str):
            return _json({"topic": self.topic, "offset": self.offset, "data": message})
        return _json({"topic": self.topic, "offset": self.offset, "data_b64": base64.b64encode(message).decode()})


class Recovery:
    """What a subscription with ``since`` found: the position and what was missed."""

    __slots__ = ("topic", "epoch", "offset", "recovered", "reason", "missed")

    def __init__(
        self,
        topic: str,
        epoch: Optional[str],
        offset: Optional[int],
        recovered: Optional[bool],
        reason: str = "",
        missed: Optional[list[Publication]] = None,
    ) -> None:
        self.topic = topic
        self.epoch = epoch
        self.offset = offset  # the last offset delivered by the recovery; live messages follow it
        self.recovered = recovered  # None: no since was given
        self.reason = reason
        self.missed = missed or []

    def notice(self) -> str:
        data: dict[str, Any] = {"subscribed": self.topic, "epoch": self.epoch, "offset": self.offset}
        if self.recovered is not None:
            data["recovered"] = self.recovered
            if not self.recovered:
                data["reason"] = self.reason
        return _json(data)


def recover(
    topic: str,
    epoch: Optional[str],
    last: int,
    first: Optional[int],
    since: Optional[int],
    since_epoch: Optional[str],
    entries: list[Publication],
) -> Recovery:
    """Decide a recovery: the topic's ``epoch`` and ``last`` offset, the
    ``first`` offset its history still holds (None: empty), and what the
    subscriber gave. ``entries`` are the publications after ``since``."""
    if since is None:
        return Recovery(topic, epoch, last, None)
    if epoch is None:
        return Recovery(topic, None, last, False, "no history")
    if since_epoch is not None and since_epoch != epoch:
        return Recovery(topic, epoch, last, False, "epoch changed")
    if since > last:
        return Recovery(topic, epoch, last, False, "offset ahead of history")
    if since < last and (first is None or first > since + 1):
        return Recovery(topic, epoch, last, False, "history gone")
    missed = [entry for entry in entries if entry.offset is not None and entry.offset > since]
    return Recovery(topic, epoch, missed[-1].offset if missed else since, True, missed=missed)


class TopicHistory:
    """The recent publications of one topic, with its epoch and last offset."""

    __slots__ = ("epoch", "offset", "entries")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: collections.deque[Publication] = collections.deque(maxlen=size)

    def expire(self, oldest: float) -> None:
        entries = self.entries
        while entries and entries[0].time < oldest:
            entries.popleft()


class _Subscriber:
    """One connection's subscriptions, and its backlog while it cannot be written to."""

    __slots__ = ("ws", "topics", "backlog", "draining", "kind", "recovering", "counting")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.topics: set[str] = set()
        self.backlog: list[PreparedMessage] = []  # held while writing is paused or a fragmented message is sent
        self.draining: Optional[asyncio.Task] = None  # waits until the connection can be written to
        self.kind = RAW
        self.counting = False  # raw, subscribed with since: told of gaps by GAP_CLOSE_CODE
        # Topics being recovered from Redis: live publications wait in a list,
        # then an int: the last offset replayed (live ones up to it are skipped).
        self.recovering: Optional[dict[str, Union[list[Publication], int]]] = None


class Relay:
    """Publish/subscribe between WebSocket connections.

    ``subscribe(ws, topic)``, ``unsubscribe(ws, topic=None)``, ``publish(topic,
    message)``. Writes are gathered per event-loop iteration, so a burst of
    messages reaches each subscriber in one write. Each subscriber may have at
    most ``max_backlog`` messages waiting while its peer is not reading; then
    ``policy`` applies (``close_code`` for ``SlowConsumerPolicy.CLOSE``).
    With a ``backplane`` (see ``fastws.relay.RedisBackplane``), messages also
    reach subscribers of the same topics in other processes.

    ``history`` (0: none) messages per topic are kept for ``history_ttl``
    seconds at most, for subscribers that recover with ``since`` (see the
    module's documentation); with a backplane, they are kept in Redis.
    """

    def __init__(
        self,
        *,
        max_backlog: int = 1024,
        policy: Union[SlowConsumerPolicy, str] = SlowConsumerPolicy.CLOSE,
        close_code: int = CloseCode.TRY_AGAIN_LATER,
        backplane: Any = None,
        codec: ModuleType = default_codec,
        history: int = 0,
        history_ttl: Optional[float] = 3600.0,
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        if history < 0 or (history_ttl is not None and history_ttl <= 0):
            raise ValueError("history must be >= 0 and history_ttl > 0 (or None)")
        self.max_backlog = max_backlog
        self.policy = SlowConsumerPolicy(policy)
        self.close_code = close_code
        self.codec = codec
        self.backplane = backplane
        self.history_size = history
        self.history_ttl = history_ttl
        self._history: dict[str, TopicHistory] = {}
        self._topics: dict[str, set[_Subscriber]] = {}
        self._subscribers: dict[WebSocket, _Subscriber] = {}
        self._recoveries: set[asyncio.Task] = set()
        self.stats = RelayStats(self)
        if backplane is not None:
            backplane.attach(self)

    @property
    def shared_history(self) -> bool:
        """The history is the backplane's (Redis Streams), not this process's."""
        return self.backplane is not None and getattr(self.backplane, "history", 0) > 0

    # -- subscriptions -------------------------------------------------------

    def subscribe(
        self,
        ws: WebSocket,
        topic: str,
        *,
        since: Optional[int] = None,
        epoch: Optional[str] = None,
        envelope: bool = False,
    ) -> None:
        """Subscribe ``ws`` to ``topic``. ``envelope``: this connection takes
        JSON envelopes (with offsets) and a ``subscribed`` notice per topic.
        ``since`` (the last offset seen, 0: none) and ``epoch`` recover what
        was missed; the ``subscribed`` notice then comes first, even on a raw
        connection. With a shared history the recovery finishes later (live
        messages wait for it)."""
        if ws.connection is None:
            raise RuntimeError("subscribe a connection once its handshake is done")
        if since is not None and (not isinstance(since, int) or since < 0):
            raise ValueError("since must be an offset >= 0")
        subscriber = self._subscribers.get(ws)
        if subscriber is None:
            subscriber = self._subscribers[ws] = _Subscriber(ws)
        if envelope:
            subscriber.kind = ENVELOPE
        elif since is not None:
            subscriber.counting = True
        subscriber.topics.add(topic)
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = set()
            if self.backplane is not None:
                self.backplane.topics_changed()
        members.add(subscriber)
        if since is None and not envelope:
            return
        if self.shared_history:
            if subscriber.recovering is None:
                subscriber.recovering = {}
            subscriber.recovering[topic] = []
            task = asyncio.get_running_loop().create_task(self._recover_shared(subscriber, topic, since, epoch))
            self._recoveries.add(task)
            task.add_done_callback(self._recoveries.discard)
            return
        recovery = self.recovery(topic, since, epoch)
        self._send(subscriber, PreparedMessage(recovery.notice(), self.codec))
        for publication in recovery.missed:
            self._send(subscriber, publication.prepared(subscriber.kind))
        self.stats.recovered += len(recovery.missed)

    def recovery(self, topic: str, since: Optional[int], epoch: Optional[str]) -> Recovery:
        """What a subscriber of ``topic`` that saw ``since`` in ``epoch`` missed (this process's history)."""
        history = self._history.get(topic)
        if history is None:
            if not self.history_size:
                return recover(topic, None, 0, None, since, epoch, [])
            history = self._history[topic] = TopicHistory(self.history_size)
        if self.history_ttl is not None:
            history.expire(time.monotonic() - self.history_ttl)
        entries = history.entries
        first = entries[0].offset if entries else None
        missed = list(entries) if since is not None and since < history.offset else []
        return recover(topic, history.epoch, history.offset, first, since, epoch, missed)

    async def _recover_shared(
        self, subscriber: _Subscriber, topic: str, since: Optional[int], epoch: Optional[str]
    ) -> None:
        try:
            recovery = await self.backplane.recover(topic, since, epoch)
        except Exception as exc:
            logger.warning("recovery of %r from the backplane failed: %s", topic, exc)
            recovery = Recovery(topic, None, None, None if since is None else False, "history unavailable")
        recovering = subscriber.recovering
        if recovering is None or self._subscribers.get(subscriber.ws) is not subscriber:
            return  # unsubscribed meanwhile
        if topic not in subscriber.topics:
            return
        pending = recovering.pop(topic, [])
        if not isinstance(pending, list):
            pending = []
        self._send(subscriber, PreparedMessage(recovery.notice(), self.codec))
        for publication in recovery.missed:
            self._send(subscriber, publication.prepared(subscriber.kind))
        self.stats.recovered += len(recovery.missed)
        last = recovery.offset
        for publication in pending:  # live ones received meanwhile, after the history
            if last is None or publication.offset is None or publication.offset > last:
                self._send(subscriber, publication.prepared(subscriber.kind))
                if publication.offset is not None:
                    last = publication.offset
        if last is not None:
            recovering[topic] = last  # live ones the history already had are skipped
        elif not recovering:
            subscriber.recovering = None

    def unsubscribe(self, ws: WebSocket, topic: Optional[str] = None) -> None:
        """Leave ``topic``, or every topic (call this when a connection closes)."""
        subscriber = self._subscribers.get(ws)
        if subscriber is None:
            return
        for name in [topic] if topic is not None else list(subscriber.topics):
            subscriber.topics.discard(name)
            if subscriber.recovering is not None:
                subscriber.recovering.pop(name, None)
                if not subscriber.recovering:
                    subscriber.recovering = None
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

    def expire_history(self) -> None:
        """Drop expired entries, and the histories of topics with none left
        and no subscribers (their next message starts a new epoch)."""
        if self.history_ttl is None:
            return
        oldest = time.monotonic() - self.history_ttl
        for topic, history in list(self._history.items()):
            history.expire(oldest)
            if not history.entries and topic not in self._topics:
                del self._history[topic]

    # -- publishing ----------------------------------------------------------

    def publish(self, topic: str, message: Message, *, exclude: Optional[WebSocket] = None) -> int:
        """Deliver ``message`` to the subscribers of ``topic`` (except ``exclude``,
        typically the sender) here and, through the backplane, in other
        processes. Returns the number of local subscribers it was queued for
        (0 with a shared history: Redis gives it its offset, then it is delivered)."""
        self.stats.messages_in += 1
        backplane = self.backplane
        if backplane is not None:
            if self.shared_history:
                backplane.publish(topic, message, exclude)
                return 0
            backplane.publish(topic, message)
        if self.history_size:
            history = self._history.get(topic)
            if history is None:
                history = self._history[topic] = TopicHistory(self.history_size)
            history.offset += 1
            publication = Publication(topic, message, history.offset, self.codec)
            history.entries.append(publication)
            if self.history_ttl is not None:
                history.expire(publication.time - self.history_ttl)
        elif topic not in self._topics:
            return 0
        else:
            publication = Publication(topic, message, None, self.codec)
        return self.deliver(publication, exclude)

    def deliver(self, publication: Union[Publication, PreparedMessage, str], *args: Any) -> int:
        """Send a publication to the local subscribers of its topic (``exclude``
        one connection). ``deliver(topic, prepared, exclude)`` also works."""
        if not isinstance(publication, Publication):
            topic, prepared = publication, args[0]
            assert isinstance(topic, str) and isinstance(prepared, PreparedMessage)
            publication = Publication(topic, prepared.message, None, self.codec)
            publication.frames[RAW] = prepared
            args = args[1:]
        exclude: Optional[WebSocket] = args[0] if args else None
        members = self._topics.get(publication.topic)
        if not members:
            return 0
        raw: list[WebSocket] = []
        other: Optional[list[_Subscriber]] = None
        for subscriber in members:
            ws = subscriber.ws
            if ws is exclude:
                continue
            if not (subscriber.kind or subscriber.backlog or ws.writing_paused or subscriber.recovering):
                raw.append(ws)
            elif other is None:
                other = [subscriber]
            else:
                other.append(subscriber)
        queued = 0
        if other is not None:
            envelopes: list[WebSocket] = []
            for subscriber in other:
                recovering = subscriber.recovering
                if recovering is not None and publication.topic in recovering:
                    floor = recovering[publication.topic]
                    if isinstance(floor, list):
                        floor.append(publication)  # sent when the recovery is done
                        continue
                    if publication.offset is not None and publication.offset <= floor:
                        continue  # the recovery sent it already
                    del recovering[publication.topic]
                    if not recovering:
                        subscriber.recovering = None
                if subscriber.backlog or subscriber.ws.writing_paused:
                    queued += self._hold(subscriber, publication.prepared(subscriber.kind))
                elif subscriber.kind == ENVELOPE:
                    envelopes.append(subscriber.ws)
                else:
                    raw.append(subscriber.ws)
            if envelopes:
                queued += self._fan_out(envelopes, publication.prepared(ENVELOPE))
        if raw:
            queued += self._fan_out(raw, publication.prepared(RAW))
        self.stats.messages_out += queued
        return queued

    def gap(self, topic: str, epoch: Optional[str], offset: Optional[int], reason: str) -> None:
        """Tell the envelope subscribers of ``topic`` that messages up to
        ``offset`` could not be delivered; close the raw ones that subscribed
        with ``since`` with ``GAP_CLOSE_CODE`` (other raw subscribers are not told)."""
        members = self._topics.get(topic)
        if not members:
            return
        notice = PreparedMessage(_json({"gap": topic, "epoch": epoch, "offset": offset, "reason": reason}), self.codec)
        for subscriber in list(members):
            if subscriber.kind == ENVELOPE:
                self._send(subscriber, notice)
            elif subscriber.counting:
                self._close_for_gap(subscriber, reason)
        self.stats.gaps += 1

    def _close_for_gap(self, subscriber: _Subscriber, why: str) -> None:
        ws = subscriber.ws
        if not ws.open or ws.closed:
            return
        self.stats.closed_gap += 1
        logger.info("%s missed messages (%s); closing (%d) to reconnect with since", ws.peer, why, GAP_CLOSE_CODE)
        subscriber.backlog.clear()  # nothing after the gap
        ws.close_nowait(GAP_CLOSE_CODE, GAP_CLOSE_REASON)

    def _fan_out(self, websockets: list[WebSocket], prepared: PreparedMessage) -> int:
        queued = len(websockets)
        for ws, refusal in fan_out(websockets, prepared):
            queued -= 1
            if isinstance(refusal, ConnectionClosed):
                self.unsubscribe(ws)
            else:  # a fragmented message is being sent (RFC 6455 §5.4): wait for its end
                queued += self._hold(self._subscribers[ws], prepared)
        return queued

    def _send(self, subscriber: _Subscriber, prepared: PreparedMessage) -> bool:
        """One message to one subscriber, after its backlog."""
        if subscriber.backlog or subscriber.ws.writing_paused:
            return self._hold(subscriber, prepared)
        return self._fan_out([subscriber.ws], prepared) == 1

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
            if subscriber.counting and self.policy is not SlowConsumerPolicy.CLOSE:
                self._close_for_gap(subscriber, "backlog full")  # a drop would break its count
                return False
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
        self.recovered = 0  # missed messages sent to subscribers that came back with since
        self.gaps = 0  # gap notices (messages the backplane lost)
        self.closed_gap = 0  # raw subscribers with since closed with GAP_CLOSE_CODE
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
            "recovered": self.recovered,
            "gaps": self.gaps,
            "closed_gap": self.closed_gap,
        }
        if relay.history_size and not relay.shared_history:
            data["history"] = {
                "topics": len(relay._history),
                "entries": sum(len(h.entries) for h in relay._history.values()),
            }
        if relay.backplane is not None:
            data["backplane"] = relay.backplane.snapshot()
        return data
