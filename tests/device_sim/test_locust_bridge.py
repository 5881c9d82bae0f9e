"""The asyncio bridge with gevent's hub (gevent imported, never monkey-patched: this process must not import
Locust), and the rule that nothing but the locustfile imports Locust."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import Future

import pytest

from device_sim.locust.bridge import AsyncioBridge
from tests.device_sim.conftest import REPO_ROOT

gevent = pytest.importorskip("gevent", reason="the locust extra is not installed")


@pytest.fixture
def bridge():  # type: ignore[no-untyped-def]
    started = AsyncioBridge()
    yield started
    started.stop()


def completed_later(value: object, delay_s: float = 0.05) -> Future[object]:
    """A concurrent future that a foreign OS thread completes, as awscrt's threads complete theirs."""
    future: Future[object] = Future()

    def complete() -> None:
        time.sleep(delay_s)
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)

    threading.Thread(target=complete, daemon=True).start()
    return future


def test_the_bridge_delivers_a_result_completed_from_a_foreign_thread(bridge: AsyncioBridge) -> None:
    seen_threads: list[int] = []

    async def flow(n: int) -> int:
        seen_threads.append(threading.get_ident())
        value = await asyncio.wrap_future(completed_later(n * 10))
        return int(value)  # type: ignore[call-overload]

    # Many greenlets wait at once; each gets its own answer; all the coroutines ran on the bridge's thread.
    greenlets = [gevent.spawn(bridge.call, lambda n=n: flow(n)) for n in range(20)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert [g.value for g in greenlets] == [n * 10 for n in range(20)]
    assert len(set(seen_threads)) == 1 and seen_threads[0] != threading.get_ident()


def test_the_bridge_raises_the_coroutines_exception_in_the_greenlet(bridge: AsyncioBridge) -> None:
    async def flow() -> object:
        return await asyncio.wrap_future(completed_later(ValueError("refused")))

    with pytest.raises(ValueError, match="refused"):
        gevent.spawn(bridge.call, flow).get(timeout=10)


def test_a_killed_greenlet_cancels_its_coroutine_and_the_kill_goes_on(bridge: AsyncioBridge) -> None:
    cancelled = threading.Event()

    async def flow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = gevent.spawn(bridge.call, flow)
    gevent.sleep(0.1)
    waiting.kill(block=True, timeout=5)
    assert waiting.dead and isinstance(waiting.value, gevent.GreenletExit)
    assert cancelled.wait(5)
    # The bridge still works for the next device.
    assert gevent.spawn(bridge.call, lambda: asyncio.sleep(0, result="next")).get(timeout=5) == "next"


def test_nothing_but_the_locustfile_imports_locust() -> None:
    """The emulator, `fleet` and the locust command's own process never import Locust (it monkey-patches)."""
    code = (
        "import sys; import emulator.cli, device_sim.cli, device_sim.fleet, device_sim.locust.devices, "
        "device_sim.locust.launcher, device_sim.locust.serials, device_sim.locust.options; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
    assert "locust" not in sys.modules  # nor has this test process
