"""One process's devices under Locust: the target, the awscrt transport on the bridge's thread, statistics.

`DeviceDriver.provision(serial)` runs the project's `provision_device` (or, with `--rotate`, the rotation of
a device kept in `--keep-identities`: device_sim/rotation_fleet.py) through the asyncio bridge and returns
what Locust should record: each step's time, and for a device that did not make it, the step where it was
rejected or failed. It also fills the process's `FleetStats`, the same statistics `fleet` keeps, so the master
can merge every worker's into the one report.

Nothing awscrt is built before `prepare()`, which a worker calls after Locust's fork (awscrt's threads do not
survive it). The statistics are only touched from the greenlets' thread: the step callbacks that run on the
bridge's thread only append to lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_sim.device import DeviceOptions, RetryPolicy
from device_sim.errors import DeviceFailure, Rejected, UserError
from device_sim.locust.bridge import AsyncioBridge
from device_sim.report import STEPS, TOTAL, FleetStats
from device_sim.rotation import ROTATION_STEPS
from device_sim.rotation_fleet import as_rotation_report
from device_sim.target import Target, resolve_target

STEP_OF_OPERATION = {
    "CreateCertificateFromCsr": "create_certificate",
    "CreateKeysAndCertificate": "create_certificate",
    "RegisterThing": "register_thing",
}


@dataclass(frozen=True)
class StepEvent:
    step: str
    ms: float
    # What Locust records for a step that did not succeed, and groups its failure table by:
    # "rejected: <errorCode>" (AWS said no) or "failed: <kind>" (anything else).
    error: str | None = None


@dataclass
class DeviceResult:
    serial: str
    outcome: str  # provisioned | rejected | failed
    code: str | None = None
    events: list[StepEvent] = field(default_factory=list)


def target_of(values: dict[str, Any]) -> Target:
    """The target from the forwarded options; a UserError names a file this machine lacks."""

    def path(key: str) -> Path | None:
        return Path(values[key]) if values.get(key) else None

    return resolve_target(
        endpoint_file=path("endpoint_file"),
        claim=values.get("claim"),
        endpoint=values.get("endpoint"),
        port=values.get("port"),
        ca_file=path("ca_file"),
        claim_cert_file=path("claim_cert_file"),
        claim_key_file=path("claim_key_file"),
        template_name=values.get("template_name"),
        client_id_pattern=values.get("client_id_pattern"),
    )


def parameters_of(values: dict[str, Any]) -> dict[str, str]:
    parameters = {}
    for item in values.get("param") or []:
        key, _, value = str(item).partition("=")
        parameters[key] = value
    return parameters


def run_facts(values: dict[str, Any], target: Target | None) -> dict[str, Any]:
    """What the report says about how the run was made."""
    return {
        "driver": "locust",
        "target": target.address if target else values.get("endpoint"),
        "template_name": target.template_name if target else values.get("template_name"),
        "format": values["format"],
        "mqtt": values["mqtt"],
        "flow": values["flow"],
        "operation": "rotate" if values.get("rotate") else None,
        "concurrency": values.get("concurrency"),
        "rate_per_s": values.get("rate"),
    }


class DeviceDriver:
    def __init__(self, values: dict[str, Any], bridge: AsyncioBridge | None = None) -> None:
        self.values = values
        self.bridge = bridge or AsyncioBridge()
        self.target: Target | None = None
        self.transport: Any = None
        self.options = DeviceOptions(
            fmt=values["format"],
            flow=values["flow"],
            parameters=parameters_of(values),
            retry=RetryPolicy(attempts=values["attempts"]),
        )
        self.request_name = f"{values['format']}/{'rotate' if values.get('rotate') else values['flow']}"
        # Provisioning (its identities kept in --keep-identities, or not), or a rotation of those kept.
        from device_sim.rotation_fleet import device_runner

        identities = values.get("keep_identities")
        self.run_device = device_runner(
            Path(identities) if identities else None,
            rotate=bool(values.get("rotate")),
            rotation_template_name=values.get("rotation_template_name"),
            fmt=values["format"],
            attempts=values["attempts"],
        )
        self.steps = ROTATION_STEPS if values.get("rotate") else STEPS
        self.stats = FleetStats()
        self.in_flight = 0

    def prepare(self) -> None:
        """Resolve the target and build the transport (once per process); raises UserError."""
        if self.transport is not None:
            return
        target = target_of(self.values)
        if self.values.get("keys_dir"):
            self._use_factory_keys(Path(self.values["keys_dir"]))
        for what, file in (
            ("CA file", target.ca_file),
            ("claim certificate file", target.claim_cert_file),
            ("claim key file", target.claim_key_file),
        ):
            if not file.is_file():
                raise UserError(f"the {what} {file} is not on this machine (each worker needs its own copy)")
        from device_sim.transport import Transport

        async def build() -> Transport:  # on the bridge's thread, after any fork
            return Transport(
                target,
                mqtt_version=self.values["mqtt"],
                threads=self.values["threads"],
                timeout_s=self.values["timeout_s"],
            )

        self.transport = self.bridge.call(build)
        self.target = target

    def _use_factory_keys(self, keys_dir: Path) -> None:
        """`--keys-dir`: each device's key as the factory station made it (as `fleet --keys-dir` does)."""
        import os
        from dataclasses import replace

        from device_sim.factory import KeysDir
        from device_sim.pkcs11_store import DEFAULT_USER_PIN

        if not keys_dir.is_dir():
            raise UserError(
                f"the keys directory {keys_dir} is not on this machine (each worker needs its copy)"
            )
        pin = os.environ.get("DEVICE_SIM_PKCS11_PIN", DEFAULT_USER_PIN)
        station = KeysDir.open(keys_dir, None, pkcs11_pin=pin)
        self.options = replace(self.options, make_key=station.load)

    def new_run(self) -> None:
        """Fresh statistics for a new Locust run (Locust's own statistics restart too)."""
        self.stats = FleetStats(run=run_facts(self.values, self.target))
        if self.values.get("rotate"):
            as_rotation_report(self.stats, self.values["rotation_template_name"])
        self.in_flight = 0

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """This process's statistics so far as a report (finished 'now' if the run goes on)."""
        if self.stats.finished_epoch_s is not None:
            return self.stats.to_json()
        self.stats.finished_epoch_s = time.time() if now is None else now
        try:
            return self.stats.to_json()
        finally:
            self.stats.finished_epoch_s = None

    def provision(self, serial: str) -> DeviceResult:
        """Provision one device; a kill of the calling greenlet counts it as interrupted and goes on."""
        steps: list[tuple[str, float]] = []
        retries: list[tuple[str, str]] = []
        self.in_flight += 1
        self.stats.record_start()
        started = time.perf_counter()
        result: DeviceResult | None = None
        try:
            provisioned = self.bridge.call(
                lambda: self.run_device(
                    self.transport,
                    serial,
                    self.options,
                    on_step=lambda step, ms: steps.append((step, ms)),
                    on_retry=lambda step, reason: retries.append((step, reason)),
                )
            )
            result = DeviceResult(serial, "provisioned")
            result.events = [StepEvent(step, ms) for step, ms in steps]
            result.events.append(StepEvent(TOTAL, provisioned.total_ms))
            self.stats.record_outcome("provisioned", total_ms=provisioned.total_ms)
        except Rejected as exc:
            step = STEP_OF_OPERATION.get(exc.operation) or _next_step(steps, self.steps)
            result = self._not_made_it(serial, "rejected", exc.error_code, step, steps, started)
        except DeviceFailure as exc:
            result = self._not_made_it(
                serial, "failed", exc.kind, exc.step or _next_step(steps, self.steps), steps, started
            )
        except Exception as exc:  # noqa: BLE001 - one broken device must not stop the run
            kind = f"internal_{type(exc).__name__}"
            result = self._not_made_it(serial, "failed", kind, _next_step(steps, self.steps), steps, started)
        finally:
            self.in_flight -= 1
            for step, ms in steps:
                self.stats.record_step(step, ms)
            for step, reason in retries:
                self.stats.record_retry(step, reason)
            if result is None:  # killed while waiting: Locust is stopping this user
                self.stats.record_outcome("interrupted")
        return result

    def _not_made_it(
        self,
        serial: str,
        outcome: str,
        code: str,
        step: str,
        steps: list[tuple[str, float]],
        started: float,
    ) -> DeviceResult:
        self.stats.record_outcome(outcome, code=code)
        total_ms = (time.perf_counter() - started) * 1000
        error = f"{outcome}: {code}"
        events = [StepEvent(s, ms) for s, ms in steps]
        # The time no successful step accounts for: the step that was refused, with any back-off before it.
        events.append(StepEvent(step, max(0.0, total_ms - sum(ms for _, ms in steps)), error))
        events.append(StepEvent(TOTAL, total_ms, error))
        return DeviceResult(serial, outcome, code, events)

    def close(self) -> None:
        self.bridge.stop()


def _next_step(done: list[tuple[str, float]], steps: tuple[str, ...] = STEPS) -> str:
    """The step after the last one that succeeded (where a failure without a step of its own happened)."""
    if not done:
        return steps[0]
    index = steps.index(done[-1][0])
    return steps[min(index + 1, len(steps) - 1)]
