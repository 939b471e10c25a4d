"""Connection policy shared by every I/O layer, sans I/O: times and events in, actions out.

``Connection`` says what the protocol requires; this module says what a server
does around it — when to ping and when a silent peer is dead, when to stop
reading, and how to close TCP. The asyncio layer and the uvicorn class both run
these objects, so they cannot disagree. Nothing here does I/O or reads a clock:
the caller passes ``now`` (any monotonic clock, e.g. ``loop.time()``) and acts
on what it gets back.
"""

from __future__ import annotations

import enum
import os
import random
from typing import TYPE_CHECKING, NamedTuple, Optional, Union

from .connection import PASSTHROUGH_BYTES
from .exceptions import ConnectionClosed, InvalidStatus

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "Keepalive",
    "SendPing",
    "PeerDead",
    "ReadFlow",
    "TransportAction",
    "transport_action",
    "COALESCE_BYTES",
    "coalesce_writes",
    "SEPARATE_WRITES_PASSTHROUGH_BYTES",
    "passthrough_from",
    "unwritten",
    "Backoff",
    "retryable",
    "retry_after",
    "describe_ending",
]


class SendPing(NamedTuple):
    """Keepalive action: send a ping with this payload."""

    payload: bytes


class PeerDead(NamedTuple):
    """Keepalive action: no pong and no data for ``ping_timeout``: fail with 1011."""

    reason: str = "keepalive ping timeout"


class Keepalive:
    """Ping every ``interval`` seconds; declare the peer dead if neither its pong
    nor any other data arrives within ``timeout`` (RFC 6455 §5.5.2-5.5.3).

    Two cases are not a dead peer and only extend the wait: data received since
    the ping (a busy peer's pong may be queued behind its messages), and a timer
    that fires far later than asked (our event loop was stalled, so the pong may
    be sitting unread in the socket). ``interval=None`` disables keepalive;
    ``timeout=None`` pings without ever giving up.

    The I/O layer calls ``on_timer(now)`` at ``deadline``, ``data_received()`` for
    any bytes, ``pong_received(payload, now)`` for pongs, and re-arms its one
    timer at ``deadline`` after each of them.
    """

    __slots__ = ("interval", "timeout", "deadline", "payload", "sent_at", "data_seen", "latency")

    def __init__(self, interval: Optional[float], timeout: Optional[float], now: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.deadline: Optional[float] = None if interval is None else now + interval
        """When ``on_timer`` must run next; ``None``: no timer needed."""
        self.payload: Optional[bytes] = None  # of the ping awaiting its pong
        self.sent_at = 0.0
        self.data_seen = False  # any bytes since the ping was sent
        self.latency = 0.0  # round-trip time of the last answered keepalive ping

    def data_received(self) -> None:
        self.data_seen = True

    def on_timer(self, now: float) -> Union[SendPing, PeerDead, None]:
        """The deadline passed: time to ping, or to judge the peer."""
        interval, timeout = self.interval, self.timeout
        if interval is None:
            self.deadline = None
            return None
        if self.payload is None or timeout is None:
            self.payload = os.urandom(4)
            self.sent_at = now
            self.data_seen = False
            self.deadline = now + (interval if timeout is None else timeout)
            return SendPing(self.payload)
        assert self.deadline is not None
        stalled = now - self.deadline > timeout / 2
        if stalled or self.data_seen:
            self.data_seen = False
            self.deadline = now + (min(timeout, 1.0) if stalled else timeout)
            return None
        self.deadline = None
        return PeerDead()

    def pong_received(self, payload: bytes, now: float) -> bool:
        """A pong arrived; True if it answers the keepalive ping (the next ping
        is then due ``interval`` after the previous one was sent)."""
        if self.payload is None or payload != self.payload:
            return False  # RFC 6455 §5.5.3: unsolicited or stale pongs are ignored
        self.payload = None
        self.latency = now - self.sent_at
        if self.interval is not None:
            self.deadline = max(now, self.sent_at + self.interval)
        return True


class ReadFlow:
    """Stop reading while ``max_queue`` received messages wait for the
    application, resume once it has taken half of them: TCP then pushes back on
    the peer instead of memory growing, and the hysteresis avoids toggling the
    transport on every message. ``closing()`` lifts the limit for good: after
    our close frame, reading must go on to reach the peer's (RFC 6455 §7.1.1)."""

    __slots__ = ("max_queue", "paused", "closing_started")

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max(max_queue, 1)
        self.paused = False
        self.closing_started = False

    def after_put(self, queued: int) -> bool:
        """A message was queued (``queued`` now wait); True: pause reading now."""
        if queued >= self.max_queue and not self.paused and not self.closing_started:
            self.paused = True
            return True
        return False

    def after_get(self, queued: int) -> bool:
        """A message was taken; True: resume reading now."""
        if self.paused and queued <= self.max_queue // 2:
            self.paused = False
            return True
        return False

    def closing(self) -> bool:
        """We started closing; True: resume reading now."""
        self.closing_started = True
        if self.paused:
            self.paused = False
            return True
        return False

    def overflows(self, queued: int) -> bool:
        """Past close(), a message that does not fit the queue is dropped
        (reading goes on only to reach the peer's close frame)."""
        return self.closing_started and queued >= self.max_queue


class TransportAction(enum.Enum):
    """What to do with TCP once the WebSocket connection reached CLOSED."""

    CLOSE = "close"  # close it now
    LINGER = "linger"  # shut down our side, read until the peer hangs up or close_timeout passes
    WAIT = "wait"  # let the peer close it; close it ourselves after close_timeout


def transport_action(connection: Connection) -> TransportAction:
    """RFC 6455 §7.1.1: after the close handshake the server closes TCP first and
    the client waits for it. After failing the connection (§7.1.7) we linger:
    closing a socket with unread data sends a reset, which can destroy our
    close frame before the peer reads it. Whatever the action, a transport
    still there ``close_timeout`` later is aborted: closing waits for the write
    buffer to drain, and a peer that reads nothing would keep it pending."""
    if connection.error is not None and not connection.eof_received:
        return TransportAction.LINGER
    if connection.should_close_transport:
        return TransportAction.CLOSE
    return TransportAction.WAIT


COALESCE_BYTES = 65536
"""Frames written in one burst are joined into buffers of up to this size."""

SEPARATE_WRITES_PASSTHROUGH_BYTES = 256 * 1024
"""``passthrough_from()`` where each buffer is written on its own."""


def passthrough_from(writes_together: bool) -> int:
    """The message size from which an I/O layer should send a server's message
    with ``Connection.send_buffers()`` (payload by reference) rather than
    ``send()`` (copied into its frame).

    Where the layer writes a list of buffers with one syscall (``sendmsg``,
    uvloop's ``writelines``: ``writes_together``), from PASSTHROUGH_BYTES.
    Where each buffer is a write of its own (asyncio's own transports), only
    from SEPARATE_WRITES_PASSTHROUGH_BYTES: below that the header's separate
    ``send`` (a small TCP segment, a wake-up for the peer) costs more than the
    copy. Copy ÷ reference there, echo to picows' client on a 2-core AMD EPYC:
    100 KiB pipelined ahead in 9 runs of 10 (0.83-1.52x), round trips
    1.09-1.35x; 256 KiB pipelined 1.01-1.05x; 1 MiB 0.81-0.97x. On uvloop
    100 KiB pipelined the copy lost 3 runs of 4 (0.79-1.09x)."""
    return PASSTHROUGH_BYTES if writes_together else SEPARATE_WRITES_PASSTHROUGH_BYTES


def coalesce_writes(pending: list[Union[bytes, memoryview]]) -> list[Union[bytes, memoryview]]:
    """What to write for a burst of frames, in order: small ones joined into
    buffers of up to COALESCE_BYTES (a fan-out burst is hundreds of them: one
    write each would cost more than the copy), a large frame or payload passed
    as it is (a copy of megabytes also means fresh pages from the OS each
    time). For one ``writelines``/``sendmsg``, or a write each."""
    out: list[Union[bytes, memoryview]] = []
    chunk: list[Union[bytes, memoryview]] = []
    size = 0
    for data in pending:
        if len(data) >= COALESCE_BYTES:
            if chunk:
                out.append(b"".join(chunk))
                chunk, size = [], 0
            out.append(data)
            continue
        chunk.append(data)
        size += len(data)
        if size >= COALESCE_BYTES:
            out.append(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        out.append(b"".join(chunk))
    return out


def unwritten(buffers: list[Union[bytes, memoryview]], written: int) -> list[Union[bytes, memoryview]]:
    """What is left of ``buffers`` once ``written`` bytes of them have been
    written (``sendmsg`` may write part of a list): a new list, the first
    buffer cut where the write stopped."""
    index = 0
    while index < len(buffers) and written >= len(buffers[index]):
        written -= len(buffers[index])
        index += 1
    rest = buffers[index:]
    if written:
        rest[0] = memoryview(rest[0])[written:]
    return rest


class Backoff:
    """How long a reconnecting client waits before each attempt: exponential, jittered, bounded.

    The n-th consecutive failure waits a random time between half and all of
    ``min(maximum, initial * factor**n)``: never zero (no busy loop against a
    server that refuses at once), never more than ``maximum``, and clients that
    lost the same server do not come back in one wave. ``reset()`` after a
    connection that stayed open ``stable_after`` seconds starts again at
    ``initial``; a connection that drops sooner counts as a failure.
    """

    def __init__(
        self,
        initial: float = 1.0,
        factor: float = 1.618,
        maximum: float = 60.0,
        stable_after: float = 10.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        if not 0 < initial <= maximum or factor < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial, self.factor, self.maximum, self.stable_after = initial, factor, maximum, stable_after
        self.failures = 0
        self._random = rng.random if rng is not None else random.random

    def next_delay(self, at_least: float = 0.0) -> float:
        """The wait before the next attempt (``at_least``: a server's Retry-After, capped at ``maximum``)."""
        ceiling = min(self.maximum, self.initial * self.factor**self.failures)
        self.failures += 1
        delay = ceiling * (0.5 + 0.5 * self._random())
        return max(delay, min(at_least, self.maximum))

    def reset(self) -> None:
        self.failures = 0

    def after_disconnect(self, lasted: float) -> float:
        """The wait before reconnecting after a connection that stayed open
        ``lasted`` seconds: none (and a fresh start) if it was stable, else the
        next delay, as for a failed attempt."""
        if lasted >= self.stable_after:
            self.reset()
            return 0.0
        return self.next_delay()

    def __repr__(self) -> str:
        return f"Backoff(initial={self.initial}, factor={self.factor}, maximum={self.maximum})"


def retry_after(error: BaseException) -> float:
    """A 429/503's ``Retry-After`` in seconds (RFC 9110 §10.2.3), or 0; dates are ignored."""
    response = getattr(error, "response", None) if isinstance(error, InvalidStatus) else None
    value = (response.headers.get("Retry-After") or "") if response is not None else ""
    return float(value) if value.isascii() and value.isdigit() else 0.0


def retryable(error: BaseException) -> bool:
    """Whether a failed opening is worth another attempt (reconnection).

    Yes: network errors and timeouts (``OSError``, which includes proxy
    failures), a connection lost during the handshake, and answers that say
    "later": 5xx and 429 (RFC 6585 §4). No: every other refusal (4xx, a
    malformed 101, a redirect loop), which another attempt would only repeat.
    """
    if isinstance(error, InvalidStatus):
        return error.status >= 500 or error.status == 429
    return isinstance(error, (OSError, ConnectionClosed))


def describe_ending(error: BaseException) -> str:
    """How a reconnecting client logs why a connection or an attempt ended."""
    if isinstance(error, ConnectionClosed):
        return f"closed {error.code} {error.reason}".rstrip()
    return f"{type(error).__name__}: {error}"
