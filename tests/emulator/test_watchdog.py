"""The one timer per connection (emulator/mqtt/watchdog.py): each deadline holds at its time, whichever
phase moved last, and no earlier; a paused connection has none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from emulator.mqtt.watchdog import Watchdog

WAIT_S = 5.0  # generous: how long a test waits for a deadline to cut (the machine may be busy)


async def _guarded(
    idle_s: float | None, packet_s: float, script: Callable[[Watchdog], object]
) -> tuple[Watchdog, float, float]:
    """Run `script` (which may await) under a watchdog; (the watchdog, the loop time the last phase began,
    the loop time the task was cancelled). Fails if nothing cut it within WAIT_S."""
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}
    holder: list[Watchdog] = []

    async def body() -> None:
        watchdog = holder[0]
        await script(watchdog)  # type: ignore[misc]
        marks["phase"] = loop.time()
        await asyncio.sleep(WAIT_S)

    task = loop.create_task(body())
    holder.append(Watchdog(loop, task, idle_s, packet_s))
    with pytest.raises(asyncio.CancelledError):
        await task
    marks["cut"] = loop.time()
    holder[0].stop()
    return holder[0], marks["phase"], marks["cut"]


def test_the_keep_alive_cuts_an_idle_connection_and_moves_with_each_packet() -> None:
    async def busy_then_idle(watchdog: Watchdog) -> None:
        for _ in range(6):  # 0.3 s of packets, longer than the keep-alive: it must move on each time
            watchdog.idle()
            await asyncio.sleep(0.05)
            watchdog.packet_started()
        watchdog.idle()

    watchdog, idle_since, cut = asyncio.run(_guarded(0.2, 5.0, busy_then_idle))
    assert watchdog.expired and not watchdog.within_packet
    assert cut >= idle_since + 0.2 - 0.01  # not before its time (the loop's clock resolution aside)


def test_a_packet_started_is_cut_at_the_read_deadline_though_the_keep_alive_is_long() -> None:
    async def stalls(watchdog: Watchdog) -> None:
        watchdog.idle()
        watchdog.packet_started()

    watchdog, started, cut = asyncio.run(_guarded(1800.0, 0.2, stalls))
    assert watchdog.expired and watchdog.within_packet
    assert cut >= started + 0.2 - 0.01


def test_a_keep_alive_shorter_than_the_packet_deadline_still_cuts_on_time() -> None:
    async def packet_then_idle(watchdog: Watchdog) -> None:
        watchdog.packet_started()  # the timer is set 30 s ahead
        watchdog.idle()  # the keep-alive (0.2 s) comes first: the timer must move earlier

    watchdog, idle_since, cut = asyncio.run(_guarded(0.2, 30.0, packet_then_idle))
    assert watchdog.expired and not watchdog.within_packet
    assert cut < idle_since + 30.0


def test_a_paused_connection_has_no_deadline_and_no_keep_alive_means_none_between_packets() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        for idle_s, pause in ((0.05, True), (None, False)):
            task = loop.create_task(asyncio.sleep(0.4))
            watchdog = Watchdog(loop, task, idle_s, 0.05)
            watchdog.packet_started()
            watchdog.idle()
            if pause:
                watchdog.pause()
            await task  # not cancelled
            assert not watchdog.expired
            watchdog.stop()

    asyncio.run(run())
