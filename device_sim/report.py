"""The fleet report: counters and latency histograms while the run goes on, the contract's JSON at the end.

The JSON has the documented keys (docs/loadtest.md, "The report") and these extensions: `interrupted`
(devices still in flight when the run was stopped), `active_s`, `retries`, `histograms` (per step,
mergeable), `timeline` (device_sim.timeline) and `run` (how the run was made; a merged report lists each
part in `run.runs`). A report of several shards or Locust workers is exactly the report one process would
have written: counts and histograms add. `duration_s` spans the earliest start to the latest end;
`throughput_per_s` is over `active_s`, the time at least one part was running, so the gaps between runs
that were merged later do not dilute it.
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
from device_sim.timeline import OUTCOMES, Timeline

STEPS = ("claim_connect", "create_certificate", "register_thing", "reconnect", "first_publish")
TOTAL = "total"
REPORT_VERSION = 2
# What a merged report says about its parts, each in `run.runs`, and joined with "+" where they differ.
RUN_FACTS = ("format", "mqtt", "flow", "target", "template_name", "operation")


@dataclass
class FleetStats:
    """Everything the report needs, kept as counters: nothing per device outlives that device."""

    devices: int = 0
    provisioned: int = 0
    rejected: int = 0
    failed: int = 0
    interrupted: int = 0
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
    # When the devices were running: one interval for a run, their union for a merged report.
    active_intervals: list[tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        if self.timeline is None:
            self.timeline = Timeline(int(self.started_epoch_s))

    @property
    def done(self) -> int:
        return self.provisioned + self.rejected + self.failed + self.interrupted

    def record_start(self, now: float | None = None) -> None:
        """A device boots (for devices in flight over time)."""
        assert self.timeline is not None
        self.timeline.record("started", time.time() if now is None else now)

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
        timed = None
        if outcome == "provisioned" and total_ms is not None:
            self.histograms[TOTAL].record(total_ms)
            timed = total_ms
        elif outcome == "rejected":
            self.rejections[code or "Unknown"] += 1
        elif outcome == "failed":
            self.failures[code or "unknown"] += 1
        assert self.timeline is not None
        self.timeline.record(outcome, time.time() if now is None else now, timed)

    def finish(self, now: float | None = None, *, interrupted: bool = False) -> None:
        """The run is over. An interrupted run's devices are those that started, not those planned."""
        self.finished_epoch_s = time.time() if now is None else now
        self.devices = self.done if interrupted else max(self.devices, self.done)

    @property
    def duration_s(self) -> float:
        end = self.finished_epoch_s if self.finished_epoch_s is not None else time.time()
        return max(0.0, end - self.started_epoch_s)

    @property
    def active_s(self) -> float:
        if self.active_intervals is None:
            return self.duration_s
        return sum(end - start for start, end in self.active_intervals)

    @property
    def throughput_per_s(self) -> float:
        """Devices provisioned per second of active time (a single run: its wall-clock time)."""
        return self.provisioned / self.active_s if self.active_s > 0 else 0.0

    def intervals(self) -> list[tuple[float, float]]:
        if self.active_intervals is not None:
            return list(self.active_intervals)
        end = self.finished_epoch_s if self.finished_epoch_s is not None else self.started_epoch_s
        return [(self.started_epoch_s, max(end, self.started_epoch_s))]

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
            "interrupted": self.interrupted,
            "active_s": round(self.active_s, 3),
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
                "active_intervals": [[round(a, 3), round(b, 3)] for a, b in self.intervals()],
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "report") -> FleetStats:
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            run = dict(data.get("run") or {})
            histograms = {name: Histogram.from_json(h) for name, h in dict(data["histograms"]).items()}
            # A rotation's report has its own steps (device_sim/rotation.py), never the provisioning's.
            for name in (TOTAL, *(() if run.get("operation") == "rotate" else STEPS)):
                histograms.setdefault(name, Histogram())
            stats = cls(
                devices=int(data["devices"]),
                provisioned=int(data["provisioned"]),
                rejected=int(data["rejected"]),
                failed=int(data["failed"]),
                interrupted=int(data.get("interrupted") or 0),
                rejections=Counter({str(k): int(v) for k, v in dict(data.get("rejections") or {}).items()}),
                failures=Counter({str(k): int(v) for k, v in dict(data.get("failures") or {}).items()}),
                retries_by_reason=Counter(dict((data.get("retries") or {}).get("by_reason") or {})),
                retries_by_step=Counter(dict((data.get("retries") or {}).get("by_step") or {})),
                histograms=histograms,
                started_epoch_s=float(run["started_epoch_s"]),
                finished_epoch_s=float(run["finished_epoch_s"]),
                timeline=Timeline.from_json(data["timeline"]),
                run={k: v for k, v in run.items() if k not in _RUN_TIMES},
                active_intervals=[(float(a), float(b)) for a, b in run["active_intervals"]]
                if run.get("active_intervals")
                else None,
            )
        except HistogramMismatch as exc:
            raise UserError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"{source} is not a device_sim fleet report with histograms ({_why(exc)})"
            ) from None
        return stats


_RUN_TIMES = {
    "started_at",
    "finished_at",
    "started_epoch_s",
    "finished_epoch_s",
    "report_version",
    "active_intervals",
}


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
    merged.histograms = {TOTAL: Histogram()}  # then each part's steps, in their order
    merged.finished_epoch_s = max(p.finished_epoch_s or p.started_epoch_s for p in parts)
    timeline = parts[0].timeline
    assert timeline is not None
    for part in parts:
        merged.devices += part.devices
        merged.provisioned += part.provisioned
        merged.rejected += part.rejected
        merged.failed += part.failed
        merged.interrupted += part.interrupted
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
    merged.active_intervals = union([interval for part in parts for interval in part.intervals()])
    runs = [run for part in parts for run in _runs_of(part)]
    merged.run = {
        "merged_from": len(parts),
        "shards": [p.run.get("shard") for p in parts],
        **{key: joined([run.get(key) for run in runs]) for key in RUN_FACTS},
        "runs": runs,
    }
    return merged


def _runs_of(part: FleetStats) -> list[dict[str, Any]]:
    """The runs a report is made of: its own `run.runs` if it was merged already, else itself."""
    if part.run.get("runs"):
        return [dict(run) for run in part.run["runs"]]
    return [
        {
            **{key: part.run.get(key) for key in (*RUN_FACTS, "shard")},
            "devices": part.devices,
            "provisioned": part.provisioned,
            "started_at": _iso(part.started_epoch_s),
            "finished_at": _iso(part.finished_epoch_s),
        }
    ]


def joined(values: list[Any]) -> Any:
    """One value where all parts agree; else the distinct values in order joined by "+" ("json+cbor")."""
    distinct = list(dict.fromkeys(str(v) for v in values if v is not None))
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else "+".join(distinct)


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching intervals merged, sorted."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


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
