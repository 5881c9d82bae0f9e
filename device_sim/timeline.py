"""What happened when: devices started and finished per time slot, and the total latency of each slot.

Slots are `interval_s` wide from `start_epoch_s`. A run longer than MAX_SLOTS slots doubles the width and
folds pairs of slots together, so a report stays small however long the run was, and two timelines merge by
adding slot by slot (the counts and latency buckets add exactly; a slot's place in time is exact to within
one slot). From this the HTML draws throughput, latency percentiles and devices in flight over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from device_sim.histogram import Histogram

OUTCOMES = ("provisioned", "rejected", "failed", "interrupted")
SERIES = ("started", *OUTCOMES)
MAX_SLOTS = 512


@dataclass
class Timeline:
    start_epoch_s: int
    interval_s: int = 1
    counts: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SERIES})
    # Per slot: the total-latency histogram buckets {bucket index: count} of the devices provisioned in it.
    latency: list[dict[int, int]] = field(default_factory=list)

    def slot(self, epoch_s: float) -> int:
        return max(0, int(epoch_s) - self.start_epoch_s) // self.interval_s

    def record(self, series: str, epoch_s: float, total_ms: float | None = None) -> None:
        index = self._fit(self.slot(epoch_s))
        self.add(series, index, 1)
        if total_ms is not None:
            buckets = self._latency_slot(index)
            probe = Histogram()
            probe.record(total_ms)
            (bucket,) = probe.counts
            buckets[bucket] = buckets.get(bucket, 0) + 1

    def add(self, series: str, index: int, n: int) -> None:
        values = self.counts.setdefault(series, [])
        if len(values) <= index:
            values.extend([0] * (index + 1 - len(values)))
        values[index] += n

    def _latency_slot(self, index: int) -> dict[int, int]:
        if len(self.latency) <= index:
            self.latency.extend({} for _ in range(index + 1 - len(self.latency)))
        return self.latency[index]

    def _fit(self, index: int) -> int:
        """Coarsen until `index` is inside MAX_SLOTS; the index in the coarser slots."""
        while index >= MAX_SLOTS:
            self._coarsen()
            index //= 2
        return index

    def _coarsen(self) -> None:
        self.interval_s *= 2
        for name, values in self.counts.items():
            self.counts[name] = [sum(values[i : i + 2]) for i in range(0, len(values), 2)]
        folded: list[dict[int, int]] = []
        for i in range(0, len(self.latency), 2):
            slot: dict[int, int] = {}
            for part in self.latency[i : i + 2]:
                for bucket, n in part.items():
                    slot[bucket] = slot.get(bucket, 0) + n
            folded.append(slot)
        self.latency = folded

    @property
    def width(self) -> int:
        return max([len(v) for v in self.counts.values()] + [len(self.latency)], default=0)

    def merge(self, other: Timeline) -> Timeline:
        start = min(self.start_epoch_s, other.start_epoch_s)
        merged = Timeline(start, max(self.interval_s, other.interval_s))
        end = max(s.start_epoch_s + s.width * s.interval_s for s in (self, other))
        while (end - merged.start_epoch_s) // merged.interval_s >= MAX_SLOTS:
            merged.interval_s *= 2
        for source in (self, other):
            for i in range(source.width):
                index = merged.slot(source.start_epoch_s + i * source.interval_s)
                for name, values in source.counts.items():
                    if i < len(values) and values[i]:
                        merged.add(name, index, values[i])
                if i < len(source.latency) and source.latency[i]:
                    target = merged._latency_slot(index)
                    for bucket, n in source.latency[i].items():
                        target[bucket] = target.get(bucket, 0) + n
        return merged

    def in_flight(self) -> list[int]:
        """Devices started and not yet finished at the end of each slot."""
        running, out = 0, []
        series = {name: self.counts.get(name, []) for name in SERIES}
        for i in range(self.width):
            started = series["started"][i] if i < len(series["started"]) else 0
            ended = sum(series[o][i] if i < len(series[o]) else 0 for o in OUTCOMES)
            running += started - ended
            out.append(max(0, running))
        return out

    def latency_histogram(self, index: int) -> Histogram:
        buckets = self.latency[index] if index < len(self.latency) else {}
        return Histogram(counts=dict(buckets), count=sum(buckets.values()))

    def to_json(self) -> dict[str, Any]:
        width = self.width
        return {
            "start_epoch_s": self.start_epoch_s,
            "interval_s": self.interval_s,
            **{name: _padded(self.counts.get(name, []), width) for name in SERIES},
            "latency_total": [
                {str(b): n for b, n in sorted(slot.items())}
                for slot in self.latency + [{}] * (width - len(self.latency))
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Timeline:
        timeline = cls(int(data["start_epoch_s"]), int(data.get("interval_s") or 1))
        if timeline.interval_s < 1:
            raise ValueError("timeline interval_s must be at least 1")
        for name in SERIES:
            timeline.counts[name] = [int(n) for n in data.get(name) or []]
        timeline.latency = [
            {int(b): int(n) for b, n in dict(slot).items()} for slot in data.get("latency_total") or []
        ]
        return timeline


def _padded(values: list[int], width: int) -> list[int]:
    return values + [0] * (width - len(values))
