"""A fleet stopped while devices are in flight counts each of them once, even one that outlives the grace."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from device_sim import fleet
from device_sim.device import DeviceOptions
from device_sim.report import FleetStats


async def _slow_to_stop(_transport: Any, serial: str, _options: Any, **_: Any) -> Any:
    """A device whose connection takes longer to close than the fleet's grace after a cancellation."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.3)  # still closing when the grace (0.05 s here) is over
        raise


def test_devices_still_closing_after_the_grace_are_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "STOP_GRACE_S", 0.05)
    stats = FleetStats()
    plan = fleet.FleetPlan(serials=[f"S{i}" for i in range(10)], concurrency=4)

    async def run_then_stop() -> None:
        run = asyncio.create_task(
            fleet.run_fleet(None, plan, DeviceOptions(), stats, run_device=_slow_to_stop)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.1)
        run.cancel()  # what Ctrl-C does to asyncio.run's main task
        with pytest.raises(asyncio.CancelledError):
            await run
        assert stats.devices == stats.interrupted == 4  # the report is written now
        await asyncio.sleep(0.5)  # the stragglers end, as asyncio.run's shutdown lets them

    asyncio.run(run_then_stop())
    assert stats.devices == stats.done == stats.interrupted == 4
