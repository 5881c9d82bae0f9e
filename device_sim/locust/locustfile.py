"""The locustfile `python -m device_sim locust` runs: each Locust user boots simulated devices, one at a time.

A user takes a serial (from the master, which hands each out once), provisions it through the project's own
flow on the process's asyncio bridge, and records each step as a Locust request whose type is the step
(claim_connect, create_certificate, register_thing, reconnect, first_publish, total), so the web UI and the
CSV show the project's steps. A rejection and a failure are both Locust failures, told apart by their text
("rejected: AccessDenied", "failed: timeout"). The user stops when the serials are used up.

Importing this module is what imports Locust (and so gevent's monkey-patching); nothing else in the project
does. It builds nothing at import: Locust forks `--processes` workers after importing it.
"""

from __future__ import annotations

from typing import Any

from locust import User, constant, constant_throughput, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from cli_conventions import say
from device_sim.errors import TOOL, UserError
from device_sim.locust import options
from device_sim.locust.coordinator import (
    MSG_ERROR,
    MSG_REQUEST,
    MSG_SERIALS,
    MSG_STATS,
    REPORT_KEY,
    Coordinator,
)
from device_sim.locust.devices import DeviceDriver
from device_sim.locust.serials import SerialPool, plan_serials


class LocalSerials:
    """The single process's serials, straight from the pool."""

    def __init__(self, pool: SerialPool, coordinator: Coordinator) -> None:
        self.pool, self.coordinator = pool, coordinator

    def take(self) -> str | None:
        batch = self.pool.take(1)
        return batch[0] if batch else None

    def device_done(self) -> None:
        self.coordinator.check()


class Process:
    """What this process holds for the run; set up by the `init` event."""

    values: dict[str, Any] = {}
    driver: DeviceDriver | None = None
    serials: Any = None
    broken: str | None = None


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    options.add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, runner: Any, **_: Any) -> None:
    Process.values = options.from_namespace(environment.parsed_options)
    if isinstance(runner, WorkerRunner):
        _init_worker(environment, runner)
        return
    pool = SerialPool(plan_serials(Process.values))
    local = None
    if not isinstance(runner, MasterRunner):
        Process.driver = local = DeviceDriver(Process.values)
    coordinator = Coordinator(environment, Process.values, pool, local)
    if local is not None:
        Process.serials = LocalSerials(pool, coordinator)
        events.test_start.add_listener(lambda **_: _prepare_local(coordinator))
    else:
        runner.register_message(MSG_REQUEST, coordinator.on_request)
        runner.register_message(MSG_STATS, coordinator.on_stats)
        runner.register_message(MSG_ERROR, coordinator.on_error)
        events.worker_report.add_listener(coordinator.on_worker_report)
    events.test_start.add_listener(coordinator.on_test_start)
    events.test_stop.add_listener(coordinator.on_test_stop)
    # Registered after the runner's own listeners, and `quitting` fires in reverse: this one runs first.
    events.quitting.add_listener(coordinator.on_quitting)


def _prepare_local(coordinator: Coordinator) -> None:
    assert Process.driver is not None
    Process.driver.prepare()
    Process.driver.new_run()
    _set_pace()


def _init_worker(environment: Any, runner: Any) -> None:
    from device_sim.locust.worker import RemoteSerials

    def on_test_start(**_: Any) -> None:
        # The master's options arrived with the spawn message: read them again, then build (after the fork).
        Process.values = options.from_namespace(environment.parsed_options)
        if Process.driver is None:
            Process.driver = DeviceDriver(Process.values)
        try:
            Process.driver.prepare()
        except UserError as exc:
            Process.broken = str(exc)
            say(TOOL, exc)
            runner.send_message(MSG_ERROR, {"error": str(exc)})
            return
        Process.driver.new_run()
        Process.serials = RemoteSerials(runner, Process.driver)
        _set_pace()

    def on_serials(environment: Any, msg: Any, **_: Any) -> None:
        if Process.serials is not None:
            Process.serials.on_serials(environment, msg)

    def on_test_stop(**_: Any) -> None:
        if Process.serials is not None:
            Process.serials.send_stats(drained=Process.serials.drained_sent)

    def on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if Process.driver is not None and Process.serials is not None:
            data[REPORT_KEY] = Process.driver.snapshot()

    def on_quitting(**_: Any) -> None:
        # Ctrl-C reaches a worker too: stop its users first, so its last statistics go out before its "quit".
        if runner.state in ("spawning", "running"):
            runner.stop()

    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)
    events.report_to_master.add_listener(on_report)
    events.quitting.add_listener(on_quitting)
    runner.register_message(MSG_SERIALS, on_serials)


def _set_pace() -> None:
    per_user = Process.values.get("rate_per_user")
    ProvisioningDevice.wait_time = constant_throughput(per_user) if per_user else constant(0)


class ProvisioningDevice(User):
    """One simulated device after another: take a serial, boot, provision, report."""

    wait_time = constant(0)

    @task
    def boot(self) -> None:
        if Process.broken is not None or Process.serials is None or Process.driver is None:
            raise StopUser()
        serial = Process.serials.take()
        if serial is None:
            raise StopUser()
        result = Process.driver.provision(serial)
        fire = self.environment.events.request.fire
        for event in result.events:
            fire(
                request_type=event.step,
                name=Process.driver.request_name,
                response_time=event.ms,
                response_length=0,
                exception=event.error,
                context={"serial": serial},
            )
        Process.serials.device_done()
