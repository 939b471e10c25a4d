"""The load itself: ``_Client``, the per-connection listener whose callbacks
are the hot path, and ``Bench``, which opens the connections, applies the load
(roundtrip, pipelined or rate) and gathers a ``BenchResult``.

Like ``Connection``, this module is written once in Python and also compiled
from this source by Cython (``_client_c.pxd`` makes ``_Client`` and ``Bench``
extension types whose counters are C struct members); ``fastws.loadgen.client``
exports the build that ``fastws.codec.backend_module`` picks. Compiled, the
bookkeeping of each echo (its latency, counters, the next message) costs
0.25 µs instead of 0.87 (docs/performance.md), so the load generator is less
of the round trip it measures.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from typing import Any, Callable, Optional, TextIO, Union, cast

from ..asyncio import Listener, WebSocket, connect
from ..exceptions import ConnectionClosed
from .histogram import Histogram
from .report import BenchResult, format_us

__all__ = ["MODES", "Bench", "bench"]

MODES = ("roundtrip", "pipelined", "rate")
"""How the load is offered: one message in flight, a window of them, or a fixed rate (open loop)."""

_perf = time.perf_counter

# A connection whose write buffer holds more than this stops taking scheduled
# messages (rate mode); they wait in a per-connection backlog, keeping their
# scheduled time, so a server that stops reading cannot make us buffer forever.
_BACKLOG_HIGH_WATER = 256 * 1024


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


class _Client:
    """One connection's state; the callbacks are the hot path.

    A ``Listener`` by its methods, not by its base: compiled, it is an
    extension type, which cannot derive from a Python class."""

    __slots__ = ("bench", "ws", "times", "backlog", "tx", "rx", "skip", "write", "tick", "room", "alive", "closing")

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.ws: Optional[WebSocket] = None
        self.times: collections.deque[float] = collections.deque()  # send (or scheduled) times in flight
        self.backlog: collections.deque[float] = collections.deque()  # rate mode: scheduled, not written
        self.tx = 0  # messages written: picks the next payload
        self.rx = 0  # messages received: picks the expected payload
        self.skip = 0  # echoes still due for messages sent before measuring started
        # ws.send_soon (pipelined and rate modes) or ws.send_nowait (roundtrip), set by on_open.
        self.write: Callable[[Union[str, bytes]], None] = _not_open
        self.tick = -1  # rate mode: the sender tick in which ``room`` was measured
        self.room = 0  # rate mode: bytes this connection may still take in that tick
        self.alive = False
        self.closing = False  # we started the close

    def on_open(self, ws: WebSocket) -> None:
        self.ws = ws
        # With several messages in flight, send_soon writes everything sent to
        # this connection in one event-loop iteration in one transport.write
        # (one syscall per connection, not per message); with one, at once.
        self.write = ws.send_soon if self.bench.batch else ws.send_nowait
        self.alive = True

    def on_message(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        now = _perf()
        b = self.bench
        times = self.times
        if not times:
            b.error("unsolicited message")
            return
        sent = times.popleft()
        rx = self.rx
        expected = b.payloads[rx % b.npayloads]
        self.rx = rx + 1
        if type(message) is not type(expected) or len(message) != len(expected) or (b.verify and message != expected):
            b.error("echo mismatch")
        if self.skip:
            self.skip -= 1  # sent during the warmup
        elif b.recording:
            b.received += 1
            b.bytes_received += len(expected)
            b.hist.record(int((now - sent) * 1e6))
        if b.closed_loop and b.sending and b.budget is None:
            # The hot path: the next message takes this one's place in flight.
            if not self._write_next(now):
                b.inflight -= 1
            return
        b.inflight -= 1
        if b.closed_loop and b.sending and self.send(now):
            return
        if b.budget == 0 and b.inflight == 0:
            b.finish()

    def on_ping(self, ws: WebSocket, payload: bytes) -> None:
        pass  # answered by the connection

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.bench.connection_closed(self, code)

    def send(self, stamp: float) -> bool:
        """Send the next message, stamped with ``stamp`` (closed-loop modes)."""
        b = self.bench
        if b.budget is not None:
            if b.budget <= 0:
                return False
            b.budget -= 1
        if not self._write_next(stamp):
            if b.budget is not None:
                b.budget += 1
            return False
        b.inflight += 1
        return True

    def _write_next(self, stamp: float) -> bool:
        """Write the next payload with ``stamp`` as its send time; False if the connection is closed."""
        b = self.bench
        tx = self.tx
        payload = b.payloads[tx % b.npayloads]
        try:
            self.write(payload)
        except ConnectionClosed:
            return False
        self.tx = tx + 1
        self.times.append(stamp)
        if b.recording:
            b.sent += 1
            b.bytes_sent += len(payload)
        return True

    def schedule(self, scheduled: float, now: float) -> None:
        """Rate mode: send a message due at ``scheduled`` now, or backlog it."""
        b = self.bench
        b.inflight += 1
        if not self.backlog and self.has_room(b.tick):
            self.write_scheduled(scheduled, now)
        else:
            self.backlog.append(scheduled)
            b.backlogged.add(self)

    def has_room(self, tick: int) -> bool:
        """Whether the write buffer (``ws.buffered_amount``: the transport's
        buffer and what ``send_soon`` holds) is within the high-water mark.
        Read once per sender tick (it sums the queued frames), then counted
        down by the payloads written in the tick: nothing reaches the
        transport before the sender yields."""
        if self.tick != tick:
            self.tick = tick
            self.room = _BACKLOG_HIGH_WATER - self.ws.buffered_amount  # type: ignore[union-attr]
        return self.room >= 0

    def write_scheduled(self, scheduled: float, now: float) -> None:
        b = self.bench
        payload = b.payloads[self.tx % b.npayloads]
        try:
            self.write(payload)
        except ConnectionClosed:
            b.inflight -= 1
            b.lost += 1
            return
        self.room -= len(payload)
        self.tx += 1
        self.times.append(scheduled)
        if b.recording:
            b.sent += 1
            b.bytes_sent += len(payload)
            b.lag.record(int((now - scheduled) * 1e6))

    def flush_backlog(self, now: float) -> None:
        backlog = self.backlog
        tick = self.bench.tick
        while backlog and self.has_room(tick):
            self.write_scheduled(backlog.popleft(), now)
        if not backlog:
            self.bench.backlogged.discard(self)


def _not_open(message: Union[str, bytes]) -> None:
    raise RuntimeError("the connection is not open yet")


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
        self.tick = 0  # rate mode: the sender's iterations, for _Client.has_room
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
        loop = asyncio.get_running_loop()
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
            measure_start, cpu_start = _perf(), time.process_time()
            if not self._done.done():
                ticker = loop.create_task(self._ticker(measure_start, None))
                await asyncio.wait([self._done], timeout=self.duration)
            measure_end, cpu_end = _perf(), time.process_time()
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
        elapsed = measure_end - measure_start
        return self._result(elapsed, in_flight, int((measure_end - oldest) * 1e6), cpu_end - cpu_start)

    async def _connect(self) -> None:
        async def open_one() -> _Client:
            client = _Client(self)
            # permessage-deflate only if asked: by default the bench measures the plain protocol.
            compression: dict[str, Any] = {} if self.deflate else {"compression": None}
            await connect(
                self.uri,
                listener=cast(Listener, client),
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
            self.tick += 1
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
            self.hist.fold()  # at most a second of latencies wait in its array
            self.lag.fold()
            count = self.received
            rate = count - self._tick_count
            self._tick_at, self._tick_count = origin + tick, count
            if label is None:
                self.series.append(float(rate))
            if self.progress:
                p99 = self.hist.value_at_percentile(99)
                line = (
                    f"[{label + ' ' if label else ''}{_perf() - origin:5.1f}s] {rate:>9,} msg/s"
                    f"  p99 {format_us(p99):>8}  in flight {self.inflight:,}"
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

    def _result(self, elapsed: float, in_flight: int, oldest_us: int, cpu_seconds: float) -> BenchResult:
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
            client_cpu=round(cpu_seconds / elapsed, 3),
            histogram=hist,
        )


async def bench(uri: str, **options: Any) -> BenchResult:
    """Load ``uri`` (an echo server) and measure it: ``await Bench(uri, **options).run()``.

    The keywords are ``Bench``'s: ``connections`` (1), ``duration`` and
    ``messages`` (it stops after ``duration`` seconds or ``messages`` echoes,
    whichever first, 10 s if neither is given, or when every connection is
    closed), ``sizes`` ((256,)), ``binary`` (True), ``mode`` ("roundtrip",
    "pipelined" or "rate"), ``window`` (16, pipelined), ``rate`` (messages
    per second, rate mode), ``progress`` (True), ``warmup`` (seconds of load
    before measuring), ``verify`` (compare echo contents, not only type and
    size), ``deflate`` (offer permessage-deflate; off by default),
    ``precise_timer`` (rate mode: spin the last millisecond before a send;
    False sleeps on the loop's ~1 ms timer), ``open_timeout``,
    ``close_timeout``, ``progress_stream``.
    """
    return await Bench(uri, **options).run()
