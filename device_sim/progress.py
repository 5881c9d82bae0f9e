"""The fleet's progress on stderr: a live bar on a terminal, else a plain line every few seconds (CI logs).

Both say devices done of planned, provisioned, rejected, failed, the rate, p99 so far and retries.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from device_sim.report import TOTAL, FleetStats

PLAIN_EVERY_S = 10.0


class FleetProgress:
    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        console: Console | None = None,
        every_s: float = PLAIN_EVERY_S,
        stream: TextIO | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.total = total
        self.live = enabled and self.console.is_terminal
        self.plain = enabled and not self.live
        self.every_s = every_s
        self.stream = stream
        self._started = time.monotonic()
        self._last_plain = self._started
        self._progress = Progress(
            TextColumn("[bold]devices"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            disable=not self.live,
        )
        self._task = self._progress.add_task("fleet", total=total, line="")

    def __enter__(self) -> FleetProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def update(self, stats: FleetStats) -> None:
        if self.live:
            self._progress.update(self._task, completed=stats.done, line=status_line(stats, self._started))
        elif self.plain:
            now = time.monotonic()
            if now - self._last_plain >= self.every_s or (stats.finished_epoch_s and stats.done):
                self._last_plain = now
                line = plain_line(stats, self.total, self._started)
                print(line, file=self.stream or sys.stderr, flush=True)


def status_line(stats: FleetStats, started_monotonic: float) -> str:
    elapsed = max(time.monotonic() - started_monotonic, 1e-6)
    p99 = stats.histograms[TOTAL].percentile(99)
    retries = sum(stats.retries_by_reason.values())
    return (
        f"[green]ok {stats.provisioned:,}[/] [yellow]rejected {stats.rejected:,}[/] "
        f"[red]failed {stats.failed:,}[/] {stats.done / elapsed:,.1f}/s p99 {p99:,.0f} ms retries {retries:,}"
    )


def plain_line(stats: FleetStats, total: int | None, started_monotonic: float) -> str:
    """One line for a log: `progress: 120/1,000 devices ...`."""
    elapsed = max(time.monotonic() - started_monotonic, 1e-6)
    p99 = stats.histograms[TOTAL].percentile(99)
    retries = sum(stats.retries_by_reason.values())
    of = f"/{total:,}" if total else ""
    return (
        f"progress: {stats.done:,}{of} devices in {elapsed:,.0f} s: provisioned {stats.provisioned:,}, "
        f"rejected {stats.rejected:,}, failed {stats.failed:,}; {stats.done / elapsed:,.1f}/s; "
        f"p99 {p99:,.0f} ms; retries {retries:,}"
    )
