"""What a ``fastws bench`` run measured: ``BenchResult``, its text summary and
JSON form, and the PNG plot (throughput per second, latency percentiles)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from .histogram import Histogram

__all__ = ["BenchResult", "format_us", "format_size", "import_pyplot", "plot"]


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
    # The load generator's own CPU time while measuring, in cores (1.0: one
    # core busy all the time). Near 1.0 the client, not the server, sets the
    # rate: the figures then say more about the client than about the server.
    client_cpu: Optional[float] = None
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
        sizes = ",".join(format_size(s) for s in self.sizes)
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
            lines.append("         " + "".join(f"{format_us(v):>10}" for v in values))
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
                f"the oldest for {format_us(self.oldest_in_flight_us)}"
            )
        if self.client_cpu is not None:
            line = f"  client CPU: {self.client_cpu:.0%} of a core"
            if self.client_cpu >= CLIENT_BOUND:
                line += " - the client may be the bottleneck, not the server"
                line += " (run more clients, or fewer connections each)"
            lines.append(line)
        if self.throughput:
            lines.append(f"  per second: min {min(self.throughput):,.0f}  max {max(self.throughput):,.0f} msg/s")
        if self.send_lag_p99_us is not None:
            lines.append(f"  send lag behind schedule p99: {format_us(self.send_lag_p99_us)}")
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


CLIENT_BOUND = 0.9
"""``client_cpu`` from which the summary warns that the load generator itself,
a single-threaded event loop, may be what limits the rate."""


def format_us(value: float) -> str:
    """A latency in microseconds, in the unit that reads best (us, ms, s)."""
    if value < 1000:
        return f"{value:.0f}us"
    if value < 1_000_000:
        return f"{value / 1000:.2f}ms"
    return f"{value / 1_000_000:.2f}s"


def format_size(size: int) -> str:
    """A message size as 256B, 8KiB or 1MiB."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def import_pyplot():
    """matplotlib.pyplot on a non-interactive backend, or a clear error if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(result: BenchResult, path: str) -> None:
    """Write a PNG: throughput per second, and the latency percentile distribution."""
    plt = import_pyplot()
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
    bottom.set_title(f"latency: p50 {format_us(result.p50_us)}, p99 {format_us(result.p99_us)}")
    bottom.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
