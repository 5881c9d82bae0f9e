"""Pass or fail for a load test: the limits that set the exit code of `fleet`, `locust` and `report merge`.

A run fails when more devices failed than `--max-failed` (default 0), when more were rejected than
`--max-rejected` (default: no limit), when the total latency's p99 is above `--max-p99-ms` (default: no
limit), or when devices ran and none was provisioned: a fleet that was rejected whole is not a pass.
`report merge` checks only the limits it is given (merging is not a run).
"""

from __future__ import annotations

from dataclasses import dataclass

from device_sim.report import TOTAL, FleetStats


@dataclass(frozen=True)
class Thresholds:
    max_p99_ms: float | None = None
    max_failed: int | None = 0
    max_rejected: int | None = None
    # A run (`fleet`, `locust`) fails when nothing was provisioned; `report merge` checks only given limits.
    require_provisioned: bool = True

    def breaches(self, stats: FleetStats) -> list[str]:
        """One line per limit the run broke; empty when it passed."""
        found = []
        if self.max_failed is not None and stats.failed > self.max_failed:
            found.append(f"{stats.failed:,} devices failed, more than --max-failed {self.max_failed:,}")
        if self.max_rejected is not None and stats.rejected > self.max_rejected:
            found.append(
                f"{stats.rejected:,} devices rejected, more than --max-rejected {self.max_rejected:,}"
            )
        p99 = stats.histograms[TOTAL].percentile(99)
        if self.max_p99_ms is not None and stats.histograms[TOTAL].count and p99 > self.max_p99_ms:
            found.append(f"total p99 {p99:,.1f} ms, above --max-p99-ms {self.max_p99_ms:,g}")
        finished = stats.provisioned + stats.rejected + stats.failed
        if self.require_provisioned and finished and not stats.provisioned:
            found.append(f"none of the {finished:,} devices that finished was provisioned")
        return found
