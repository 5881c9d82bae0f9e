"""CONNECT admission on the event loop (issue 17): the registry is read there when nobody holds its lock,
and on the admission pool when a worker does, so the loop never waits for the lock; the decisions are the
same either way. A real moto-backed Registry, no certificate: the answer is "not registered"."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from emulator.mqtt.auth import IotGatekeeper, RegistryBusy
from emulator.mqtt.contracts import Refused
from emulator.registry.store import ConnectionIdentity, Registry
from emulator.serving import _identity_now

REGION = "eu-west-1"


def _gatekeeper(registry: Registry, pool: ThreadPoolExecutor, threads: list[str]) -> IotGatekeeper:
    def on(where: str, answer: ConnectionIdentity | None) -> ConnectionIdentity | None:
        threads.append(where if where == "pool" else threading.current_thread().name)
        return answer

    return IotGatekeeper(
        region=REGION,
        account_id=registry.account_id,
        identity=lambda cert, client: on("pool", registry.identity(cert, client)),
        executor=pool,
        identity_now=lambda cert, client: on("now", _identity_now(registry, cert, client)),
    )


def test_admission_reads_the_registry_on_the_loop_unless_a_worker_holds_it() -> None:
    registry = Registry(region=REGION)
    threads: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        gatekeeper = _gatekeeper(registry, pool, threads)

        async def admit() -> str:
            with pytest.raises(Refused) as refused:
                await gatekeeper.admit("c" * 64, "prov-1")
            return str(refused.value)

        async def run() -> None:
            loop_thread = threading.current_thread().name
            assert await admit() == "certificate is not registered"
            assert threads == [loop_thread]  # on the loop: no hand-off
            threads.clear()
            held, release = threading.Event(), threading.Event()

            def hold() -> None:  # a RegisterThing writing its plan
                with registry.lock:
                    held.set()
                    release.wait(10)

            holder = threading.Thread(target=hold)
            holder.start()
            held.wait(10)
            with pytest.raises(RegistryBusy):
                _identity_now(registry, "c" * 64, "prov-1")  # does not wait
            answer = asyncio.ensure_future(admit())
            await asyncio.sleep(0.05)
            assert not answer.done()  # waits on the pool, not on the loop: the loop went on running
            release.set()
            assert await answer == "certificate is not registered"
            holder.join(10)
            assert threads == ["pool"]

        asyncio.run(run())
