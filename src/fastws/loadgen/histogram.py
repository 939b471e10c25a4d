"""The latency histogram of ``fastws bench``: log-linear, HdrHistogram-like.

1 µs resolution, relative error below 1/128, up to about 71 minutes; recording
is one C call (an array append, bucketed in bulk later) and percentiles are
exact to the bucket.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Any, Callable

__all__ = ["Histogram"]


def _folded(field: str, doc: str) -> Any:
    """A read-only attribute that first folds the waiting values in."""

    def read(self: Histogram) -> Any:
        self.fold()
        return getattr(self, field)

    return property(read, doc=doc)


class Histogram:
    """Log-linear histogram of non-negative integers (microseconds here).

    Values below 256 have a bucket each. Above, every power-of-two range
    [2^k, 2^(k+1)) is split into 128 equal buckets, so a bucket is never wider
    than 1/128 of its values (relative error < 0.8%), as in HdrHistogram with
    two significant digits. Index of ``v``: with ``s = max(0, bitlen(v) - 8)``,
    ``(s << 7) + (v >> s)``. Values above ``highest`` are clamped to it.
    """

    SUB_BITS = 7  # 128 buckets per half-octave, 256 linear buckets at the bottom

    __slots__ = ("_counts", "_count", "_total", "_min", "_max", "highest", "_top", "_pending", "record")

    def __init__(self, highest: int = (1 << 32) - 1) -> None:
        self.highest = highest
        self._top = self.index(highest)
        self._counts = [0] * (self._top + 1)
        self._count = 0
        self._total = 0  # sum of recorded values, for the exact mean
        self._min = 0
        self._max = 0
        # Recording is one C call on the hot path of ``fastws bench``: values
        # wait in a machine-integer array and go into their buckets, counted
        # by ``collections.Counter`` (C), when the histogram is next read.
        self._pending = array("q")
        self.record: Callable[[int], None] = self._pending.append
        """Add one value (an int; below 0 counts as 0, above ``highest`` as ``highest``)."""

    def fold(self) -> None:
        """Put the values recorded since the last read into their buckets.
        Every read does this; a long run calls it now and then (``fastws
        bench`` once a second) so that waiting values stay few."""
        pending = self._pending
        if not pending:
            return
        low, high = min(pending), max(pending)
        if low < 0 or high > self.highest:
            top = self.highest
            pending[:] = array("q", [0 if v < 0 else top if v > top else v for v in pending])
            low, high = min(pending), max(pending)
        counts = self._counts
        index = self.index
        for value, n in Counter(pending).items():
            counts[index(value)] += n
        if self._count == 0 or low < self._min:
            self._min = low
        if high > self._max:
            self._max = high
        self._count += len(pending)
        self._total += sum(pending)
        del pending[:]

    counts: list[int] = _folded("_counts", "Values per bucket, by bucket index.")
    count: int = _folded("_count", "How many values were recorded.")
    total: int = _folded("_total", "Their sum, for the exact mean.")
    min: int = _folded("_min", "The lowest value recorded (after clamping).")
    max: int = _folded("_max", "The highest value recorded (after clamping).")

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

    def reset(self) -> None:
        del self._pending[:]  # the same array: ``record`` stays bound to it
        self._counts = [0] * (self._top + 1)
        self._count = self._total = self._min = self._max = 0

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        self.fold()
        counts, theirs = self._counts, other.counts
        if len(theirs) > len(counts):
            counts.extend([0] * (len(theirs) - len(counts)))
            self.highest, self._top = other.highest, other._top
        for i, n in enumerate(theirs):
            if n:
                counts[i] += n
        self._min = other.min if self._count == 0 else min(self._min, other.min)
        self._max = max(self._max, other.max)
        self._count += other.count
        self._total += other.total

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
