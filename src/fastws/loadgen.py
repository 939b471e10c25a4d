"""``fastws bench``: a WebSocket load generator, the "wrk" of WebSockets.

It opens ``connections`` client connections to any RFC 6455 echo server, sends
messages, checks that each one comes back, and reports throughput and a latency
distribution::

    fastws bench ws://127.0.0.1:3000/ -c 10 -d 10 -s 256,8192 --mode pipelined --window 32

Three ways to apply load:

- ``roundtrip`` (closed loop): each connection sends one message and waits for
  its echo before sending the next. Latency is the round-trip time.
- ``pipelined`` (closed loop): each connection keeps ``window`` messages in flight.
- ``rate`` (open loop): ``rate`` messages per second in all, scheduled at fixed
  times ``t0 + k / rate`` and spread round-robin over the connections. Latency is
  measured from the *scheduled* send time, not from when the message was
  actually written, so a stalled server (or a stalled client) shows up in the
  latency instead of silently lowering the load: no coordinated omission.

Latencies go into a log-linear histogram (HdrHistogram-like: 1 µs resolution,
relative error below 1/128, up to about 71 minutes), so recording costs a few
integer operations and percentiles are exact to the bucket.

Python API::

    result = await bench("ws://127.0.0.1:3000/", connections=10, duration=5)
    print(result.msgs_per_s, result.p99_us)
    print(result.to_json())

The client uses the callback-level API (``Listener`` + ``send_nowait``): no
task, future or queue per message, so the client costs as little as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import math
import os
import signal
import sys
import time
from typing import Any, Optional, TextIO, Union

from .asyncio import Listener, WebSocket, connect
from .exceptions import ConnectionClosed

__all__ = ["Histogram", "BenchResult", "Bench", "bench", "add_arguments", "run", "plot"]

MODES = ("roundtrip", "pipelined", "rate")

_perf = time.perf_counter

# A connection whose write buffer holds more than this stops taking scheduled
# messages (rate mode); they wait in a per-connection backlog, keeping their
# scheduled time, so a server that stops reading cannot make us buffer forever.
_BACKLOG_HIGH_WATER = 256 * 1024


# -- histogram ---------------------------------------------------------------


class Histogram:
    """Log-linear histogram of non-negative integers (microseconds here).

    Values below 256 have a bucket each. Above, every power-of-two range
    [2^k, 2^(k+1)) is split into 128 equal buckets, so a bucket is never wider
    than 1/128 of its values (relative error < 0.8%), as in HdrHistogram with
    two significant digits. Index of ``v``: with ``s = max(0, bitlen(v) - 8)``,
    ``(s << 7) + (v >> s)``. Values above ``highest`` are clamped to it.
    """

    SUB_BITS = 7  # 128 buckets per half-octave, 256 linear buckets at the bottom

    __slots__ = ("counts", "count", "total", "min", "max", "highest", "_top")

    def __init__(self, highest: int = (1 << 32) - 1) -> None:
        self.highest = highest
        self._top = self.index(highest)
        self.counts = [0] * (self._top + 1)
        self.count = 0
        self.total = 0  # sum of recorded values, for the exact mean
        self.min = 0
        self.max = 0

    @staticmethod
    def index(value: int) -> int:
        if value < 256:
            return value
        shift = value.bit_length() - 8
        return (shift << 7) + (value >> shift)

    @staticmethod
    def bucket_range(index: int) -> tuple[int, int]:
        """The lowest and highest values that land in bucket ``index``."""
        if index < 256:
            return index, index
        shift = (index >> 7) - 1
        low = (index - (shift << 7)) << shift
        return low, low + (1 << shift) - 1

    def record(self, value: int) -> None:
        if value < 0:
            value = 0
        elif value > self.highest:
            value = self.highest
        if value < 256:
            self.counts[value] += 1
        else:
            shift = value.bit_length() - 8
            self.counts[(shift << 7) + (value >> shift)] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def reset(self) -> None:
        self.counts = [0] * (self._top + 1)
        self.count = self.total = self.min = self.max = 0

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
            self.highest, self._top = other.highest, other._top
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def stdev(self) -> float:
        if not self.count:
            return 0.0
        mean = self.mean
        square = 0.0
        for i, n in enumerate(self.counts):
            if n:
                low, high = self.bucket_range(i)
                square += n * ((low + high) / 2 - mean) ** 2
        return math.sqrt(square / self.count)

    def value_at_percentile(self, percentile: float) -> int:
        """The smallest bucket value (its highest equivalent, as HdrHistogram
        reports it) at or below which ``percentile`` % of the values are;
        clamped to the exact recorded minimum and maximum."""
        if not self.count:
            return 0
        if percentile >= 100:
            return self.max
        wanted = max(1, math.ceil(percentile / 100 * self.count))
        seen = 0
        for i, n in enumerate(self.counts):
            if n:
                seen += n
                if seen >= wanted:
                    return max(self.min, min(self.bucket_range(i)[1], self.max))
        return self.max  # pragma: no cover - seen reaches count above

    def percentiles(self, percentiles: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[float, int]:
        """Several percentiles in one pass (``percentiles`` ascending)."""
        result: dict[float, int] = {}
        if not self.count:
            return {p: 0 for p in percentiles}
        wanted = [(p, max(1, math.ceil(p / 100 * self.count))) for p in percentiles]
        seen = 0
        position = 0
        for i, n in enumerate(self.counts):
            if not n:
                continue
            seen += n
            while position < len(wanted) and seen >= wanted[position][1]:
                p = wanted[position][0]
                result[p] = self.max if p >= 100 else max(self.min, min(self.bucket_range(i)[1], self.max))
                position += 1
            if position == len(wanted):
                break
        return result

    def buckets(self) -> list[tuple[int, int]]:
        """Non-empty buckets as (highest equivalent value, count), ascending."""
        return [(self.bucket_range(i)[1], n) for i, n in enumerate(self.counts) if n]

    def spectrum(self) -> list[tuple[float, int]]:
        """The percentile distribution: (fraction of values at or below, value) per bucket."""
        points: list[tuple[float, int]] = []
        seen = 0
        for value, n in self.buckets():
            seen += n
            points.append((seen / self.count, min(value, self.max)))
        return points


# -- result ----------------------------------------------------------------------


@dataclasses.dataclass
class BenchResult:
    """What one run measured. Latencies are in microseconds; ``mb_per_s`` counts
    echoed payload bytes (one direction) in 10^6 bytes per second."""

    uri: str
    mode: str
    connections: int
    connected: int
    sizes: list[int]
    binary: bool
    window: Optional[int]
    target_rate: Optional[float]
    duration_s: float
    messages: int  # echoes received and checked while measuring
    messages_sent: int
    bytes_sent: int
    bytes_received: int
    msgs_per_s: float
    mb_per_s: float
    min_us: int
    mean_us: float
    stdev_us: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int
    errors: int  # connect failures + echo mismatches + unsolicited messages
    error_details: dict[str, int]
    unexpected_closes: int
    close_codes: dict[int, int]
    lost: int  # messages in flight on connections that closed under us
    in_flight_at_end: int
    oldest_in_flight_us: int  # age at the end of the oldest unanswered message (0 if none)
    throughput: list[float]  # messages per second, one entry per second
    send_lag_p99_us: Optional[int] = None  # rate mode: how late sends were vs the schedule
    deflate: bool = False  # permessage-deflate was negotiated
    histogram: Histogram = dataclasses.field(default_factory=Histogram, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "histogram"}
        data["close_codes"] = {str(code): n for code, n in self.close_codes.items()}
        data["latency_histogram"] = [list(pair) for pair in self.histogram.buckets()]
        return data

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        kind = ("binary" if self.binary else "text") + " messages" + (", permessage-deflate" if self.deflate else "")
        sizes = ",".join(_format_size(s) for s in self.sizes)
        if self.mode == "pipelined":
            load = f"pipelined, window {self.window}"
        elif self.mode == "rate":
            load = f"rate {self.target_rate or 0:,.0f} msg/s"
        else:
            load = "roundtrip"
        lines = [
            f"fastws bench {self.uri}",
            f"  {self.connected} connection{'s' if self.connected != 1 else ''}, {load}, {sizes} {kind}",
        ]
        if self.messages:
            values = (self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us, self.mean_us, self.stdev_us)
            lines.append("  latency     p50       p90       p99     p99.9       max      mean     stdev")
            lines.append("         " + "".join(f"{_format_us(v):>10}" for v in values))
        else:
            lines.append("  no echo received")
        lines.append(
            f"  {self.messages:,} messages in {self.duration_s:.2f}s: "
            f"{self.msgs_per_s:,.0f} msg/s, {self.mb_per_s:,.2f} MB/s"
        )
        if self.oldest_in_flight_us > self.max_us:
            # An unanswered message older than every measured latency: the tail is worse than shown.
            lines.append(
                f"  warning: {self.in_flight_at_end:,} messages unanswered at the end, "
                f"the oldest for {_format_us(self.oldest_in_flight_us)}"
            )
        if self.throughput:
            lines.append(f"  per second: min {min(self.throughput):,.0f}  max {max(self.throughput):,.0f} msg/s")
        if self.send_lag_p99_us is not None:
            lines.append(f"  send lag behind schedule p99: {_format_us(self.send_lag_p99_us)}")
            if self.target_rate and self.msgs_per_s < 0.9 * self.target_rate:
                lines.append("  warning: achieved rate is below the target (server or client saturated)")
        problems = [f"errors {self.errors}", f"unexpected closes {self.unexpected_closes}"]
        if self.error_details:
            problems.append(", ".join(f"{k} {v}" for k, v in sorted(self.error_details.items())))
        if self.close_codes:
            problems.append("close codes " + ", ".join(f"{c}x{n}" for c, n in sorted(self.close_codes.items())))
        if self.lost:
            problems.append(f"lost {self.lost}")
        lines.append("  " + "; ".join(problems))
        return "\n".join(lines)


def _format_us(value: float) -> str:
    if value < 1000:
        return f"{value:.0f}us"
    if value < 1_000_000:
        return f"{value / 1000:.2f}ms"
    return f"{value / 1_000_000:.2f}s"


def _format_size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


# -- the load generator -----------------------------------------------------------


def _payloads(sizes: tuple[int, ...], binary: bool) -> list[Union[bytes, str]]:
    """The messages a connection sends, in a cycle: every size, in several
    variants, so a server that echoes the wrong message of the right size is
    caught by ``verify``."""
    count = len(sizes) * (7 if sum(sizes) * 7 <= 8 << 20 else 1)
    pattern = bytes(range(256))
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    payloads: list[Union[bytes, str]] = []
    for j in range(count):
        size = sizes[j % len(sizes)]
        shift = (j * 37) % 64
        if binary:
            data = (pattern[shift:] + pattern[:shift]) * (size // 256 + 1)
            payloads.append(data[:size])
        else:
            text = (letters[shift % len(letters) :] + letters[: shift % len(letters)]) * (size // len(letters) + 1)
            payloads.append(text[:size])
    return payloads


class _Client(Listener):
    """One connection's state; the callbacks are the hot path."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.ws: Optional[WebSocket] = None
        self.times: collections.deque[float] = collections.deque()  # send (or scheduled) times in flight
        self.backlog: collections.deque[float] = collections.deque()  # rate mode: scheduled, not written
        self.tx = 0  # messages written: picks the next payload
        self.rx = 0  # messages received: picks the expected payload
        self.skip = 0  # echoes still due for messages sent before measuring started
        self.pending: list[bytes] = []  # encoded frames not written yet (batching)
        self.pending_bytes = 0
        self.alive = False
        self.closing = False  # we started the close

    def on_open(self, ws: WebSocket) -> None:
        self.ws = ws
        self.alive = True

    def on_message(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        now = _perf()
        b = self.bench
        times = self.times
        if not times:
            b.error("unsolicited message")
            return
        sent = times.popleft()
        expected = b.payloads[self.rx % b.npayloads]
        self.rx += 1
        if type(message) is not type(expected) or len(message) != len(expected):
            b.error("echo mismatch")
        elif b.verify and message != expected:
            b.error("echo mismatch")
        b.inflight -= 1
        if self.skip:
            self.skip -= 1  # sent during the warmup
        elif b.recording:
            b.received += 1
            b.bytes_received += len(expected)
            b.hist.record(int((now - sent) * 1e6))
        if b.closed_loop and b.sending and self.send(now):
            return
        if b.budget == 0 and b.inflight == 0:
            b.finish()

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.bench.connection_closed(self, code)

    def _write(self, payload: Union[str, bytes]) -> None:
        """Write one message: at once (roundtrip), or queued and written with
        the others queued in the same event-loop iteration, one syscall per
        connection instead of one per message (pipelined and rate modes)."""
        b = self.bench
        if not b.batch:
            self.ws.send_nowait(payload)  # type: ignore[union-attr]
            return
        frame = self.ws.connection.send(payload)  # type: ignore[union-attr]
        if not self.pending:
            b.dirty.append(self)
            if not b.flush_scheduled:
                b.flush_scheduled = True
                b.loop.call_soon(b.flush)
        self.pending.append(frame)
        self.pending_bytes += len(frame)

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self.pending = []
        self.pending_bytes = 0
        try:
            self.ws.write_frame_bytes(data)  # type: ignore[union-attr]
        except ConnectionClosed:
            pass  # on_close has counted these messages as lost

    def send(self, stamp: float) -> bool:
        """Send the next message, stamped with ``stamp`` (closed-loop modes)."""
        b = self.bench
        if b.budget is not None:
            if b.budget <= 0:
                return False
            b.budget -= 1
        payload = b.payloads[self.tx % b.npayloads]
        try:
            self._write(payload)
        except ConnectionClosed:
            if b.budget is not None:
                b.budget += 1
            return False
        self.tx += 1
        self.times.append(stamp)
        b.inflight += 1
        if b.recording:
            b.sent += 1
            b.bytes_sent += len(payload)
        return True

    def schedule(self, scheduled: float, now: float) -> None:
        """Rate mode: send a message due at ``scheduled`` now, or backlog it."""
        self.bench.inflight += 1
        if self.backlog or self.ws.buffered_amount + self.pending_bytes > _BACKLOG_HIGH_WATER:  # type: ignore[union-attr]
            self.backlog.append(scheduled)
            self.bench.backlogged.add(self)
        else:
            self.write_scheduled(scheduled, now)

    def write_scheduled(self, scheduled: float, now: float) -> None:
        b = self.bench
        payload = b.payloads[self.tx % b.npayloads]
        try:
            self._write(payload)
        except ConnectionClosed:
            b.inflight -= 1
            b.lost += 1
            return
        self.tx += 1
        self.times.append(scheduled)
        if b.recording:
            b.sent += 1
            b.bytes_sent += len(payload)
            b.lag.record(int((now - scheduled) * 1e6))

    def flush_backlog(self, now: float) -> None:
        backlog = self.backlog
        ws = self.ws
        while backlog and ws.buffered_amount + self.pending_bytes <= _BACKLOG_HIGH_WATER:  # type: ignore[union-attr]
            self.write_scheduled(backlog.popleft(), now)
        if not backlog:
            self.bench.backlogged.discard(self)


class Bench:
    """One benchmark run; ``await Bench(uri, ...).run()`` or the ``bench()`` shortcut.

    ``stop()`` ends the measurement early (the CLI calls it on Ctrl-C)."""

    def __init__(
        self,
        uri: str,
        *,
        connections: int = 1,
        duration: Optional[float] = None,
        messages: Optional[int] = None,
        sizes: Union[tuple[int, ...], list[int]] = (256,),
        binary: bool = True,
        mode: str = "roundtrip",
        window: int = 16,
        rate: Optional[float] = None,
        progress: bool = True,
        warmup: float = 0.0,
        verify: bool = False,
        deflate: bool = False,
        precise_timer: bool = True,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        progress_stream: Optional[TextIO] = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if duration is not None and duration <= 0:
            raise ValueError("duration must be positive")
        if messages is not None and messages < 1:
            raise ValueError("messages must be at least 1")
        if warmup < 0:
            raise ValueError("warmup must not be negative")
        sizes = tuple(sizes)
        if not sizes or any(s < 0 for s in sizes):
            raise ValueError("sizes must be a non-empty list of non-negative sizes")
        if mode == "rate":
            if rate is None or rate <= 0:
                raise ValueError("mode 'rate' needs a positive rate (messages per second)")
        elif rate is not None:
            raise ValueError("rate= is for mode='rate'")
        if mode == "pipelined" and window < 1:
            raise ValueError("window must be at least 1")
        if duration is None and messages is None:
            duration = 10.0
        self.uri = uri
        self.connections = connections
        self.duration = duration
        self.messages = messages
        self.sizes = sizes
        self.binary = binary
        self.mode = mode
        self.window = 1 if mode == "roundtrip" else window
        self.rate = rate
        self.progress = progress
        self.warmup = warmup
        self.verify = verify
        self.deflate = deflate
        self.precise_timer = precise_timer
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.progress_stream = progress_stream

        self.payloads = _payloads(sizes, binary)
        self.npayloads = len(self.payloads)
        self.closed_loop = mode != "rate"
        self.batch = mode != "roundtrip"
        self.dirty: list[_Client] = []  # clients with frames queued for the next flush
        self.flush_scheduled = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()
        self.clients: list[_Client] = []
        self.live: list[_Client] = []
        self.backlogged: set[_Client] = set()
        self.hist = Histogram()
        self.lag = Histogram()
        self.recording = False
        self.sending = False
        self.budget: Optional[int] = None  # messages left to send while measuring (-n)
        self.inflight = 0
        self.received = self.sent = self.bytes_received = self.bytes_sent = 0
        self.lost = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.unexpected_closes = 0
        self.close_codes: collections.Counter[int] = collections.Counter()
        self.series: list[float] = []
        self._done: Optional[asyncio.Future] = None
        self._tick_at = 0.0  # the ticker's last second boundary, and the count then
        self._tick_count = 0
        self._stopped = False

    # -- bookkeeping called from the callbacks ---------------------------------

    def flush(self) -> None:
        """Write every connection's queued frames (scheduled once per loop iteration)."""
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for client in dirty:
            client.flush()

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def stop(self) -> None:
        """End the measurement now (results so far are kept)."""
        self._stopped = True
        self.finish()

    def connection_closed(self, client: _Client, code: int) -> None:
        client.alive = False
        if client in self.live:
            self.live.remove(client)
        self.backlogged.discard(client)
        outstanding = len(client.times) + len(client.backlog)
        client.times.clear()
        client.backlog.clear()
        client.pending = []
        client.pending_bytes = 0
        self.inflight -= outstanding
        if client.closing:
            return
        self.lost += outstanding
        self.unexpected_closes += 1
        self.close_codes[code] += 1
        if not self.live or (self.budget == 0 and self.inflight == 0):
            self.finish()

    # -- running -------------------------------------------------------------

    async def run(self) -> BenchResult:
        loop = self.loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        await self._connect()
        start = _perf()
        warming = self.warmup > 0
        if not warming:
            self._start_recording()
        self.sending = True
        sender = None
        if self.closed_loop:
            for client in list(self.live):
                for _ in range(self.window):
                    if not client.send(_perf()):
                        break
        else:
            sender = loop.create_task(self._sender(start))
        ticker: Optional[asyncio.Task] = None
        try:
            if warming:
                ticker = loop.create_task(self._ticker(start, "warmup"))
                await asyncio.wait([self._done], timeout=self.warmup)
                ticker.cancel()
                if not self._done.done():
                    self._start_recording()
            measure_start = _perf()
            if not self._done.done():
                ticker = loop.create_task(self._ticker(measure_start, None))
                await asyncio.wait([self._done], timeout=self.duration)
            measure_end = _perf()
        finally:
            self.recording = False
            self.sending = False
            if ticker is not None:
                ticker.cancel()
            if sender is not None:
                sender.cancel()
            if self.progress:
                self._end_progress()
        self._last_partial_second(measure_end)
        in_flight = self.inflight
        oldest = min(
            [c.times[0] for c in self.clients if c.times] + [c.backlog[0] for c in self.clients if c.backlog],
            default=measure_end,
        )
        await self._close_all()
        return self._result(measure_end - measure_start, in_flight, int((measure_end - oldest) * 1e6))

    async def _connect(self) -> None:
        async def open_one() -> _Client:
            client = _Client(self)
            # permessage-deflate only if asked: by default the bench measures the plain protocol.
            compression: dict[str, Any] = {} if self.deflate else {"compression": None}
            await connect(
                self.uri,
                listener=client,
                **compression,
                max_message_size=None,
                ping_interval=None,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
            )
            return client

        results = await asyncio.gather(*(open_one() for _ in range(self.connections)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        self.clients = [r for r in results if isinstance(r, _Client)]
        self.live = list(self.clients)
        if failures:
            self.errors["connect failed"] += len(failures)
        if not self.clients:
            error = failures[0]
            raise ConnectionError(f"cannot connect to {self.uri}: {str(error) or type(error).__name__}") from error

    def _start_recording(self) -> None:
        self.hist.reset()
        self.lag.reset()
        self.received = self.sent = self.bytes_received = self.bytes_sent = 0
        self.lost = 0
        self.series = []
        self.budget = self.messages
        for client in self.clients:
            client.skip = len(client.times) + len(client.backlog)
        self.recording = True

    async def _sender(self, start: float) -> None:
        """Rate mode: message k is due at ``start + k / rate``, on connection k mod n."""
        rate = self.rate
        assert rate is not None
        interval = 1.0 / rate
        k = 0
        turn = 0
        precise = self.precise_timer
        while self.sending:
            now = _perf()
            due = int((now - start) * rate) + 1
            budget = self.budget
            if budget is not None:
                due = min(due, k + budget)
            live = self.live
            if not live:
                return
            count = due - k
            if count > 0:
                if budget is not None:
                    self.budget = budget - count
                n = len(live)
                while k < due:
                    live[turn % n].schedule(start + k * interval, now)
                    turn += 1
                    k += 1
            if self.backlogged:
                for client in list(self.backlogged):
                    client.flush_backlog(now)
            if self.dirty:
                self.flush()
            if self.budget == 0:
                if self.inflight == 0:
                    self.finish()
                    return
                if not self.backlogged:
                    return
                await asyncio.sleep(0.001)
                continue
            delay = start + k * interval - _perf()
            if delay <= 0:
                await asyncio.sleep(0)
            elif not precise:
                await asyncio.sleep(delay)
            elif delay > 0.0015:
                # The loop's timer is ~1 ms coarse: wake up early, spin the rest.
                await asyncio.sleep(delay - 0.0011)
            else:
                await asyncio.sleep(0)

    async def _ticker(self, origin: float, label: Optional[str]) -> None:
        """Once a second: the throughput series, and the progress line."""
        self._tick_at, self._tick_count = origin, self.received
        stream = self.progress_stream or sys.stderr
        tty = stream.isatty() if hasattr(stream, "isatty") else False
        tick = 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, origin + tick - _perf()))
            count = self.received
            rate = count - self._tick_count
            self._tick_at, self._tick_count = origin + tick, count
            if label is None:
                self.series.append(float(rate))
            if self.progress:
                p99 = self.hist.value_at_percentile(99)
                line = (
                    f"[{label + ' ' if label else ''}{_perf() - origin:5.1f}s] {rate:>9,} msg/s"
                    f"  p99 {_format_us(p99):>8}  in flight {self.inflight:,}"
                    f"  errors {sum(self.errors.values())}  closes {self.unexpected_closes}"
                )
                stream.write(("\r\x1b[K" + line) if tty else line + "\n")
                stream.flush()

    def _last_partial_second(self, end: float) -> None:
        """Add the last, partial second to the series, as a rate, if it is long
        enough to mean something."""
        elapsed = end - self._tick_at
        if elapsed >= 0.25 and self.received > self._tick_count:
            self.series.append((self.received - self._tick_count) / elapsed)

    def _end_progress(self) -> None:
        stream = self.progress_stream or sys.stderr
        if hasattr(stream, "isatty") and stream.isatty():
            stream.write("\n")
            stream.flush()

    async def _close_all(self) -> None:
        clients = [c for c in self.clients if c.alive and c.ws is not None]
        for client in clients:
            client.closing = True
        if clients:
            await asyncio.wait(
                [asyncio.ensure_future(c.ws.close()) for c in clients],  # type: ignore[union-attr]
                timeout=self.close_timeout + 1,
            )
            for client in clients:
                if client.alive:
                    client.ws.abort()  # type: ignore[union-attr]

    def _result(self, elapsed: float, in_flight: int, oldest_us: int) -> BenchResult:
        hist = self.hist
        pct = hist.percentiles((50, 90, 99, 99.9))
        elapsed = max(elapsed, 1e-9)
        return BenchResult(
            uri=self.uri,
            mode=self.mode,
            connections=self.connections,
            connected=len(self.clients),
            sizes=list(self.sizes),
            binary=self.binary,
            window=self.window if self.mode == "pipelined" else None,
            target_rate=self.rate,
            duration_s=elapsed,
            messages=self.received,
            messages_sent=self.sent,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            msgs_per_s=self.received / elapsed,
            mb_per_s=self.bytes_received / elapsed / 1e6,
            min_us=hist.min,
            mean_us=round(hist.mean, 1),
            stdev_us=round(hist.stdev, 1),
            p50_us=pct[50],
            p90_us=pct[90],
            p99_us=pct[99],
            p999_us=pct[99.9],
            max_us=hist.max,
            errors=sum(self.errors.values()),
            error_details=dict(self.errors),
            unexpected_closes=self.unexpected_closes,
            close_codes=dict(self.close_codes),
            lost=self.lost,
            in_flight_at_end=in_flight,
            oldest_in_flight_us=max(0, oldest_us),
            throughput=[round(x, 1) for x in self.series],
            send_lag_p99_us=self.lag.value_at_percentile(99) if self.mode == "rate" else None,
            deflate=any(getattr(c.ws, "extension", None) is not None for c in self.clients),
            histogram=hist,
        )


async def bench(
    uri: str,
    *,
    connections: int = 1,
    duration: Optional[float] = None,
    messages: Optional[int] = None,
    sizes: Union[tuple[int, ...], list[int]] = (256,),
    binary: bool = True,
    mode: str = "roundtrip",
    window: int = 16,
    rate: Optional[float] = None,
    progress: bool = True,
    **options: Any,
) -> BenchResult:
    """Load ``uri`` (an echo server) and measure it.

    Stops after ``duration`` seconds or ``messages`` echoes (whichever first;
    10 s if neither is given), or when every connection is closed. Other
    keywords: ``warmup`` (seconds of load before measuring), ``verify``
    (compare echo contents, not only type and size), ``deflate`` (offer
    permessage-deflate; off by default), ``precise_timer`` (rate
    mode: spin the last millisecond before a send; False sleeps on the loop's
    ~1 ms timer), ``open_timeout``, ``close_timeout``, ``progress_stream``.
    """
    return await Bench(
        uri,
        connections=connections,
        duration=duration,
        messages=messages,
        sizes=sizes,
        binary=binary,
        mode=mode,
        window=window,
        rate=rate,
        progress=progress,
        **options,
    ).run()


# -- plot --------------------------------------------------------------------------


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(result: BenchResult, path: str) -> None:
    """Write a PNG: throughput per second, and the latency percentile distribution."""
    plt = _import_pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8))
    seconds = list(range(1, len(result.throughput) + 1))
    top.plot(seconds, result.throughput, marker="o", linewidth=1.5)
    top.set_xlabel("second")
    top.set_ylabel("messages / s")
    top.set_ylim(bottom=0)
    top.set_title(f"{result.uri}  {result.mode}, {result.connected} conn: {result.msgs_per_s:,.0f} msg/s")
    top.grid(True, alpha=0.3)

    points = [(1 / (1 - q), v) for q, v in result.histogram.spectrum() if q < 1]
    if result.histogram.count:
        points.append((1e6, result.max_us))
        xs = [1.0] + [x for x, _ in points]
        ys = [result.min_us] + [v for _, v in points]
        bottom.step(xs, [y / 1000 for y in ys], where="pre", linewidth=1.5)
    bottom.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000, 1e6]
    bottom.set_xticks(ticks)
    bottom.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "max"])
    bottom.set_xlim(1, 1e6)
    bottom.set_xlabel("percentile")
    bottom.set_ylabel("latency (ms)")
    bottom.set_title(f"latency: p50 {_format_us(result.p50_us)}, p99 {_format_us(result.p99_us)}")
    bottom.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- command line ---------------------------------------------------------------------


def _parse_size(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1
        for suffix, factor in (("kib", 1024), ("mib", 1 << 20), ("k", 1024), ("m", 1 << 20), ("b", 1)):
            if part.endswith(suffix):
                part, scale = part[: -len(suffix)], factor
                break
        try:
            value = int(float(part) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad size {text!r} (examples: 256, 8k, 1m, 256,8192)") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"bad size {text!r}")
        sizes.append(value)
    if not sizes:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return sizes


def _parse_duration(text: str) -> float:
    value = text.strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], factor
            break
    try:
        seconds = float(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (examples: 10, 2.5s, 1m)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return seconds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fastws bench``."""
    parser.description = (
        "Load a WebSocket echo server and report throughput and latency percentiles. "
        "Modes: roundtrip (send, wait for the echo, repeat), pipelined (--window messages in flight "
        "per connection), rate (open loop: --rate msg/s at fixed times; latency is measured from "
        "the scheduled send time, so stalls are not hidden)."
    )
    parser.add_argument("uri", help="ws:// or wss:// URI of an echo server")
    parser.add_argument("-c", "--connections", type=_positive_int, default=1, help="connections (default 1)")
    parser.add_argument(
        "-d", "--duration", type=_parse_duration, help="seconds to measure: 10, 2.5s, 1m (default 10 without -n)"
    )
    parser.add_argument("-n", "--messages", type=_positive_int, help="stop after this many echoes in total")
    parser.add_argument(
        "-s",
        "--size",
        type=_parse_size,
        action="append",
        metavar="BYTES",
        help="message size; repeat or comma-separate to cycle sizes: -s 256,8k (default 256)",
    )
    parser.add_argument("--text", action="store_true", help="send text messages (default binary)")
    parser.add_argument("--mode", choices=MODES, help="load pattern (default roundtrip, or rate with --rate)")
    parser.add_argument(
        "--window", type=_positive_int, default=16, help="pipelined: messages in flight per connection (16)"
    )
    parser.add_argument("--rate", type=_positive_float, help="rate mode: messages per second over all connections")
    parser.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS", help="load before measuring")
    parser.add_argument("--verify", action="store_true", help="compare echo contents, not only type and size")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="offer permessage-deflate (off by default; the payloads are repetitive, so they compress well)",
    )
    parser.add_argument(
        "--coarse-timer",
        action="store_true",
        help="rate mode: sleep on the event loop's ~1 ms timer instead of spinning the last millisecond "
        "before each send (less CPU; latencies may read up to ~1 ms high)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="write throughput and latency plots (needs matplotlib)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    """Run ``fastws bench`` from parsed arguments; 0 if every echo came back intact."""
    mode = args.mode or ("rate" if args.rate is not None else "roundtrip")
    if mode == "rate" and args.rate is None:
        print("fastws bench: error: --mode rate needs --rate MSGS_PER_SECOND", file=sys.stderr)
        return 2
    if mode != "rate" and args.rate is not None:
        print("fastws bench: error: --rate is for --mode rate", file=sys.stderr)
        return 2
    if args.plot:
        try:
            _import_pyplot()
        except RuntimeError as exc:
            print(f"fastws bench: error: {exc}", file=sys.stderr)
            return 2
    sizes = [size for group in (args.size or [[256]]) for size in group]

    async def main() -> BenchResult:
        runner = Bench(
            args.uri,
            connections=args.connections,
            duration=args.duration,
            messages=args.messages,
            sizes=sizes,
            binary=not args.text,
            mode=mode,
            window=args.window,
            rate=args.rate,
            progress=not args.quiet,
            warmup=args.warmup,
            verify=args.verify,
            deflate=args.deflate,
            precise_timer=not args.coarse_timer,
        )
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, runner.stop)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            pass
        try:
            return await runner.run()
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    try:
        if args.uvloop:
            try:
                import uvloop
            except ImportError:
                print("fastws bench: error: --uvloop needs uvloop: pip install uvloop", file=sys.stderr)
                return 2
            result = uvloop.run(main()) if hasattr(uvloop, "run") else _run_with_policy(uvloop, main)
        else:
            result = asyncio.run(main())
    except (OSError, ValueError, TimeoutError) as exc:
        print(f"fastws bench: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. InvalidStatus from the handshake
        print(f"fastws bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(result.to_json())
    else:
        print(result.summary())
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {os.path.abspath(args.plot)}", file=sys.stderr)
    healthy = result.messages > 0 and result.errors == 0 and result.unexpected_closes == 0
    return 0 if healthy else 1


def _run_with_policy(uvloop: Any, main: Any) -> BenchResult:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(main())
    finally:
        asyncio.set_event_loop_policy(None)


if __name__ == "__main__":  # python -m fastws.loadgen URI ... (the lead wires `fastws bench`)
    _parser = argparse.ArgumentParser(prog="fastws bench")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
