"""Latency histograms with fixed log-linear buckets, so that histograms of different runs merge exactly.

Each power of two (in milliseconds) is split into SUB_BUCKETS equal buckets: a value's bucket is known from
`math.frexp` alone, with no data-dependent boundaries and no floating-point logarithm, and every bucket is at
most 1/SUB_BUCKETS of its lower bound wide (percentiles are within ~3 % of the true value). Merging two
histograms adds their counts bucket by bucket, which gives exactly the histogram of the union of both runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SCHEME = "log2-linear"
SUB_BUCKETS = 32
MIN_EXPONENT = -10  # 2**-11 ms ~ 0.5 us: smaller values share bucket 0
MAX_EXPONENT = 32  # 2**32 ms ~ 50 days: larger values share the last bucket
BUCKET_COUNT = (MAX_EXPONENT - MIN_EXPONENT + 1) * SUB_BUCKETS
PERCENTILES = (50, 90, 95, 99)


class HistogramMismatch(ValueError):
    """Two histograms use different bucket schemes and cannot be merged."""


def bucket_index(value_ms: float) -> int:
    if not value_ms > 0:  # also catches NaN
        return 0
    mantissa, exponent = math.frexp(value_ms)  # value = mantissa * 2**exponent, 0.5 <= mantissa < 1
    if exponent < MIN_EXPONENT:
        return 0
    if exponent > MAX_EXPONENT:
        return BUCKET_COUNT - 1
    sub = int((mantissa - 0.5) * 2 * SUB_BUCKETS)
    return (exponent - MIN_EXPONENT) * SUB_BUCKETS + sub


def bucket_bounds(index: int) -> tuple[float, float]:
    """[lower, upper) of a bucket in milliseconds."""
    exponent = MIN_EXPONENT + index // SUB_BUCKETS
    sub = index % SUB_BUCKETS
    base = math.ldexp(0.5, exponent)
    width = base / SUB_BUCKETS
    return base + sub * width, base + (sub + 1) * width


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_ms: float = 0.0
    min_ms: float | None = None
    max_ms: float | None = None

    def record(self, value_ms: float) -> None:
        index = bucket_index(value_ms)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total_ms += value_ms
        self.min_ms = value_ms if self.min_ms is None else min(self.min_ms, value_ms)
        self.max_ms = value_ms if self.max_ms is None else max(self.max_ms, value_ms)

    def merge(self, other: Histogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total_ms += other.total_ms
        if other.min_ms is not None:
            self.min_ms = other.min_ms if self.min_ms is None else min(self.min_ms, other.min_ms)
        if other.max_ms is not None:
            self.max_ms = other.max_ms if self.max_ms is None else max(self.max_ms, other.max_ms)

    def percentile(self, p: float) -> float:
        """The upper bound of the bucket holding the p-th percentile, never above the exact maximum."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                upper = bucket_bounds(index)[1]
                return min(upper, self.max_ms) if self.max_ms is not None else upper
        return self.max_ms or 0.0

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0

    def summary(self) -> dict[str, float]:
        """The contract's {p50, p90, p99, max} with p95 and the mean beside them, in ms rounded to 0.1 ms."""
        out = {f"p{p}": round(self.percentile(p), 1) for p in PERCENTILES}
        out["max"] = round(self.max_ms or 0.0, 1)
        out["mean"] = round(self.mean_ms, 1)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME,
            "sub_buckets": SUB_BUCKETS,
            "min_exponent": MIN_EXPONENT,
            "max_exponent": MAX_EXPONENT,
            "count": self.count,
            "sum_ms": self.total_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            # Sparse: {bucket index: count}; JSON keys are strings.
            "buckets": {str(i): self.counts[i] for i in sorted(self.counts)},
        }

    @classmethod
    def from_json(cls, data: Any) -> Histogram:
        if not isinstance(data, dict):
            raise HistogramMismatch("a histogram must be an object")
        scheme = (
            data.get("scheme"),
            data.get("sub_buckets"),
            data.get("min_exponent"),
            data.get("max_exponent"),
        )
        if scheme != (SCHEME, SUB_BUCKETS, MIN_EXPONENT, MAX_EXPONENT):
            raise HistogramMismatch(
                f"histogram scheme {scheme} is not {SCHEME}/{SUB_BUCKETS}/{MIN_EXPONENT}/{MAX_EXPONENT}"
            )
        try:
            counts = {int(k): int(v) for k, v in dict(data.get("buckets") or {}).items()}
            histogram = cls(
                counts=counts,
                count=int(data["count"]),
                total_ms=float(data.get("sum_ms") or 0.0),
                min_ms=None if data.get("min_ms") is None else float(data["min_ms"]),
                max_ms=None if data.get("max_ms") is None else float(data["max_ms"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HistogramMismatch(f"malformed histogram ({exc})") from None
        if sum(counts.values()) != histogram.count or any(not 0 <= i < BUCKET_COUNT for i in counts):
            raise HistogramMismatch("histogram buckets do not add up to its count")
        return histogram
