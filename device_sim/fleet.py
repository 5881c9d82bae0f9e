"""Many devices through the same flow: bounded concurrency, an optional arrival rate with a ramp, a report.

Devices are started lazily, one task per device in flight, so memory follows the concurrency and not the
fleet size: a finished device leaves only counters and histogram buckets behind.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim.device import DeviceOptions, provision_device
from device_sim.errors import DeviceFailure, Rejected, UserError
from device_sim.report import FleetStats
from device_sim.transport import Transport


@dataclass(frozen=True)
class Shard:
    """`--shard I/N`: the I-th (1-based) of N contiguous slices of the serials."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            left, right = text.split("/")
            index, count = int(left), int(right)
        except ValueError:
            raise UserError(f"--shard must look like I/N (for example 1/4), not '{text}'") from None
        if count < 1 or not 1 <= index <= count:
            raise UserError(f"--shard {text}: I must be from 1 to N and N at least 1")
        return cls(index, count)

    def bounds(self, total: int) -> tuple[int, int]:
        return (self.index - 1) * total // self.count, self.index * total // self.count

    def take(self, serials: Sequence[str]) -> Sequence[str]:
        start, end = self.bounds(len(serials))
        return serials[start:end]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class GeneratedSerials(Sequence[str]):
    """`<prefix><index>` serials, computed on demand (10,000 of them need no list)."""

    def __init__(self, prefix: str, count: int, start: int = 0) -> None:
        self.prefix, self.size, self.start = prefix, count, start
        self.width = max(6, len(str(start + count - 1)))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        if isinstance(index, slice):
            start, stop, step = index.indices(self.size)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return GeneratedSerials(self.prefix, max(0, stop - start), self.start + start)
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return f"{self.prefix}{self.start + index % self.size:0{self.width}d}"


SERIAL_HEADERS = ("serial", "serialnumber", "serial_number")


def read_serials(path: Path) -> list[str]:
    """One serial a line, or a CSV with serials in its `serial` (or first) column; `#` starts a comment."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read the serials file {path}: {exc.strerror or exc}") from None
    serials: list[str] = []
    column: int | None = None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if column is None:
            lowered = [c.lower() for c in cells]
            header = [i for i, c in enumerate(lowered) if c in SERIAL_HEADERS]
            column = header[0] if header else 0
            if header:
                continue
        if column >= len(cells) or not cells[column]:
            raise UserError(f"{path}:{number}: no serial in column {column + 1}")
        serials.append(cells[column])
    if not serials:
        raise UserError(f"the serials file {path} holds no serials")
    return serials


def arrival_offsets(count: int, rate_per_s: float | None, ramp_s: float = 0.0) -> Iterable[float]:
    """When each device boots, in seconds from the start: all at once, or `rate_per_s` after a linear ramp.

    During the ramp the rate grows linearly from 0 to `rate_per_s`, so N(t) = R t^2 / (2 T); after it,
    N(t) = R T / 2 + R (t - T). Device i arrives when N(t) reaches i.
    """
    for i in range(count):
        if not rate_per_s:
            yield 0.0
        elif ramp_s > 0 and i < rate_per_s * ramp_s / 2:
            yield math.sqrt(2 * ramp_s * i / rate_per_s)
        else:
            yield ramp_s + (i - rate_per_s * ramp_s / 2) / rate_per_s


@dataclass(frozen=True)
class FleetPlan:
    serials: Sequence[str]
    concurrency: int
    rate_per_s: float | None = None
    ramp_s: float = 0.0


async def run_fleet(
    transport: Transport,
    plan: FleetPlan,
    options: DeviceOptions,
    stats: FleetStats,
    on_tick: Callable[[FleetStats], None] | None = None,
    tick_s: float = 0.25,
    run_device: Callable[..., Awaitable[Any]] = provision_device,
) -> FleetStats:
    """Drive every serial of the plan through `run_device` (`provision_device`, or a rotation:
    device_sim/rotation_fleet.py); fills and returns `stats`."""
    stats.devices = len(plan.serials)
    limit = asyncio.Semaphore(plan.concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    counted_for_them: set[asyncio.Task[None]] = set()  # given up on at the stop: counted once, already

    def outcome(name: str, **details: Any) -> None:
        if asyncio.current_task() not in counted_for_them:
            stats.record_outcome(name, **details)

    async def one(serial: str) -> None:
        stats.record_start()
        try:
            result = await run_device(
                transport, serial, options, on_step=stats.record_step, on_retry=stats.record_retry
            )
            outcome("provisioned", total_ms=result.total_ms)
        except asyncio.CancelledError:
            outcome("interrupted")
            raise
        except Rejected as exc:
            outcome("rejected", code=exc.error_code)
        except DeviceFailure as exc:
            # The transport turns a cancellation into a DeviceFailure of the step it cut short: a device
            # stopped by Ctrl-C did not fail, it was interrupted.
            outcome("interrupted" if _cancelling() else "failed", code=exc.kind)
        except Exception as exc:  # noqa: BLE001 - one broken device must not stop the fleet
            outcome("failed", code=f"internal_{type(exc).__name__}")
        finally:
            limit.release()

    ticker = asyncio.create_task(_tick(stats, on_tick, tick_s)) if on_tick else None
    started = time.monotonic()
    completed = False
    try:
        for serial, offset in zip(
            plan.serials, arrival_offsets(len(plan.serials), plan.rate_per_s, plan.ramp_s), strict=True
        ):
            delay = started + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await limit.acquire()
            task = asyncio.create_task(one(serial))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
        completed = True
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            # Let each cancelled device close its connection and count itself as interrupted.
            await asyncio.wait(list(in_flight), timeout=STOP_GRACE_S)
        for task in list(in_flight):
            # Still closing after the grace (a loaded machine): interrupted, counted now, before the
            # report is written, and never again when it ends.
            counted_for_them.add(task)
            stats.record_outcome("interrupted")
        if ticker:
            ticker.cancel()
        stats.finish(interrupted=not completed)
        if on_tick:
            on_tick(stats)
    return stats


STOP_GRACE_S = 5.0


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _tick(stats: FleetStats, on_tick: Callable[[FleetStats], None], tick_s: float) -> None:
    while True:
        await asyncio.sleep(tick_s)
        on_tick(stats)
