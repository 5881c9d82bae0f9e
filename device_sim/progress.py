"""The fleet's live progress line: done, rejected, failed, rate, p99 (on stderr, only on a terminal)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from device_sim.report import TOTAL, FleetStats


class FleetProgress:
    def __init__(self, total: int, *, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]devices"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            disable=not self.enabled,
        )
        self._task = self._progress.add_task("fleet", total=total, line="")
        self._started = time.monotonic()

    def __enter__(self) -> FleetProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def update(self, stats: FleetStats) -> None:
        self._progress.update(self._task, completed=stats.done, line=status_line(stats, self._started))


def status_line(stats: FleetStats, started_monotonic: float) -> str:
    elapsed = max(time.monotonic() - started_monotonic, 1e-6)
    p99 = stats.histograms[TOTAL].percentile(99)
    retries = sum(stats.retries_by_reason.values())
    return (
        f"[green]ok {stats.provisioned:,}[/] [yellow]rejected {stats.rejected:,}[/] "
        f"[red]failed {stats.failed:,}[/] {stats.done / elapsed:,.1f}/s p99 {p99:,.0f} ms retries {retries:,}"
    )
