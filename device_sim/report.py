"""The fleet report: counters and latency histograms while the run goes on, the contract's JSON at the end.

The JSON has the contract's keys (DESIGN.md, "Device simulator") and these extensions: `retries`,
`histograms` (per step, mergeable), `timeline` (outcomes per second) and `run` (how the run was made).
A report of several shards is exactly the report one process would have written: counts and histograms add,
the duration spans the earliest start to the latest end.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_sim.errors import UserError
from device_sim.histogram import Histogram, HistogramMismatch

STEPS = ("claim_connect", "create_certificate", "register_thing", "reconnect", "first_publish")
TOTAL = "total"
OUTCOMES = ("provisioned", "rejected", "failed")
REPORT_VERSION = 1


@dataclass
class Timeline:
    """Outcomes per second since `start_epoch_s`, for the throughput-over-time chart."""

    start_epoch_s: int
    counts: dict[str, list[int]] = field(default_factory=lambda: {o: [] for o in OUTCOMES})

    def record(self, outcome: str, epoch_s: float) -> None:
        self.add(outcome, max(0, int(epoch_s) - self.start_epoch_s), 1)

    def add(self, outcome: str, second: int, n: int) -> None:
        series = self.counts[outcome]
        if len(series) <= second:
            series.extend([0] * (second + 1 - len(series)))
        series[second] += n

    def merge(self, other: Timeline) -> Timeline:
        merged = Timeline(min(self.start_epoch_s, other.start_epoch_s))
        for source in (self, other):
            offset = source.start_epoch_s - merged.start_epoch_s
            for outcome, series in source.counts.items():
                for second, n in enumerate(series):
                    if n:
                        merged.add(outcome, second + offset, n)
        width = max(len(s) for s in merged.counts.values())
        for series in merged.counts.values():
            series.extend([0] * (width - len(series)))
        return merged

    def to_json(self) -> dict[str, Any]:
        width = max((len(s) for s in self.counts.values()), default=0)
        return {
            "start_epoch_s": self.start_epoch_s,
            "interval_s": 1,
            **{o: self.counts[o] + [0] * (width - len(self.counts[o])) for o in OUTCOMES},
        }

    @classmethod
    def from_json(cls, data: Any) -> Timeline:
        timeline = cls(int(data["start_epoch_s"]))
        for outcome in OUTCOMES:
            timeline.counts[outcome] = [int(n) for n in data.get(outcome, [])]
        return timeline


@dataclass
class FleetStats:
    """Everything the report needs, kept as counters: nothing per device outlives that device."""

    devices: int = 0
    provisioned: int = 0
    rejected: int = 0
    failed: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retries_by_reason: Counter[str] = field(default_factory=Counter)
    retries_by_step: Counter[str] = field(default_factory=Counter)
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {s: Histogram() for s in (TOTAL, *STEPS)}
    )
    started_epoch_s: float = field(default_factory=time.time)
    finished_epoch_s: float | None = None
    timeline: Timeline | None = None
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timeline is None:
            self.timeline = Timeline(int(self.started_epoch_s))

    @property
    def done(self) -> int:
        return self.provisioned + self.rejected + self.failed

    def record_step(self, step: str, latency_ms: float) -> None:
        self.histograms[step].record(latency_ms)

    def record_retry(self, step: str, reason: str) -> None:
        self.retries_by_step[step] += 1
        self.retries_by_reason[reason] += 1

    def record_outcome(
        self,
        outcome: str,
        *,
        total_ms: float | None = None,
        code: str | None = None,
        now: float | None = None,
    ) -> None:
        assert outcome in OUTCOMES
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome == "provisioned" and total_ms is not None:
            self.histograms[TOTAL].record(total_ms)
        elif outcome == "rejected":
            self.rejections[code or "Unknown"] += 1
        elif outcome == "failed":
            self.failures[code or "unknown"] += 1
        assert self.timeline is not None
        self.timeline.record(outcome, time.time() if now is None else now)

    def finish(self, now: float | None = None) -> None:
        self.finished_epoch_s = time.time() if now is None else now
        self.devices = max(self.devices, self.done)

    @property
    def duration_s(self) -> float:
        end = self.finished_epoch_s if self.finished_epoch_s is not None else time.time()
        return max(0.0, end - self.started_epoch_s)

    @property
    def throughput_per_s(self) -> float:
        """Devices provisioned per second of wall-clock time."""
        return self.provisioned / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        assert self.timeline is not None
        return {
            "devices": self.devices,
            "provisioned": self.provisioned,
            "rejected": self.rejected,
            "failed": self.failed,
            "duration_s": round(self.duration_s, 3),
            "throughput_per_s": round(self.throughput_per_s, 2),
            "latency_ms": {name: h.summary() for name, h in self.histograms.items()},
            "rejections": dict(sorted(self.rejections.items())),
            "failures": dict(sorted(self.failures.items())),
            # Extensions beyond the contract.
            "retries": {
                "total": sum(self.retries_by_reason.values()),
                "by_reason": dict(sorted(self.retries_by_reason.items())),
                "by_step": dict(sorted(self.retries_by_step.items())),
            },
            "histograms": {name: h.to_json() for name, h in self.histograms.items()},
            "timeline": self.timeline.to_json(),
            "run": {
                **self.run,
                "report_version": REPORT_VERSION,
                "started_at": _iso(self.started_epoch_s),
                "finished_at": _iso(self.finished_epoch_s),
                "started_epoch_s": self.started_epoch_s,
                "finished_epoch_s": self.finished_epoch_s,
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "report") -> FleetStats:
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            run = dict(data.get("run") or {})
            histograms = {name: Histogram.from_json(h) for name, h in dict(data["histograms"]).items()}
            for name in (TOTAL, *STEPS):
                histograms.setdefault(name, Histogram())
            stats = cls(
                devices=int(data["devices"]),
                provisioned=int(data["provisioned"]),
                rejected=int(data["rejected"]),
                failed=int(data["failed"]),
                rejections=Counter({str(k): int(v) for k, v in dict(data.get("rejections") or {}).items()}),
                failures=Counter({str(k): int(v) for k, v in dict(data.get("failures") or {}).items()}),
                retries_by_reason=Counter(dict((data.get("retries") or {}).get("by_reason") or {})),
                retries_by_step=Counter(dict((data.get("retries") or {}).get("by_step") or {})),
                histograms=histograms,
                started_epoch_s=float(run["started_epoch_s"]),
                finished_epoch_s=float(run["finished_epoch_s"]),
                timeline=Timeline.from_json(data["timeline"]),
                run={k: v for k, v in run.items() if k not in _RUN_TIMES},
            )
        except HistogramMismatch as exc:
            raise UserError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"{source} is not a device_sim fleet report with histograms ({_why(exc)})"
            ) from None
        return stats


_RUN_TIMES = {"started_at", "finished_at", "started_epoch_s", "finished_epoch_s", "report_version"}


def _why(exc: Exception) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def merge_stats(parts: list[FleetStats]) -> FleetStats:
    """Combine the reports of shards into the report of the whole fleet; exact for counts and histograms."""
    if not parts:
        raise UserError("report merge needs at least one report")
    merged = FleetStats(started_epoch_s=min(p.started_epoch_s for p in parts))
    merged.finished_epoch_s = max(p.finished_epoch_s or p.started_epoch_s for p in parts)
    timeline = parts[0].timeline
    assert timeline is not None
    for part in parts:
        merged.devices += part.devices
        merged.provisioned += part.provisioned
        merged.rejected += part.rejected
        merged.failed += part.failed
        merged.rejections.update(part.rejections)
        merged.failures.update(part.failures)
        merged.retries_by_reason.update(part.retries_by_reason)
        merged.retries_by_step.update(part.retries_by_step)
        for name, histogram in part.histograms.items():
            merged.histograms.setdefault(name, Histogram()).merge(histogram)
        if part is not parts[0]:
            assert part.timeline is not None
            timeline = timeline.merge(part.timeline)
    merged.timeline = timeline if len(parts) > 1 else Timeline.from_json(timeline.to_json())
    shards = [p.run.get("shard") for p in parts]
    merged.run = {
        "merged_from": len(parts),
        "shards": shards,
        **{k: v for k, v in parts[0].run.items() if k in ("format", "flow", "target")},
    }
    return merged


def write_report(stats: FleetStats, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stats.to_json(), indent=2) + "\n")


def read_report(path: Path) -> FleetStats:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read the report {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"the report {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return FleetStats.from_json(data, source=str(path))


def finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
