"""Shared helpers of the load suite: emulators with extra options, seeding, device runs and a registry
snapshot read back through the public AWS APIs (boto3 at the emulator's aws_endpoint_url)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from device_sim.device import DeviceOptions, RetryPolicy, provision_device
from device_sim.errors import DeviceFailure, Rejected
from device_sim.target import load_endpoint_file
from device_sim.transport import Transport
from fleetctl.registry_store import RegistryStore
from fleetctl.serial_csv import SerialRow
from tests.emulator.conftest import EmulatorProcess

DEVICE_POLICY = "FleetProvisioning-DevicePolicy"


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Extra environment for a subprocess started inside the block (EmulatorProcess copies os.environ)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_emulator(
    assembly: Path, state_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> EmulatorProcess:
    with environment(**(env or {})):
        return EmulatorProcess(assembly, state_dir, *extra)


def aws(raw: dict[str, Any], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=raw["aws_endpoint_url"],
        region_name=raw["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def import_serials(raw: dict[str, Any], serials: Sequence[str]) -> None:
    """AVAILABLE serial items, written by fleetctl's registry store (what `registry import` does)."""
    unique = list(dict.fromkeys(serials))
    store = RegistryStore(aws(raw, "dynamodb"), raw["serial_table"])
    store.put_new(SerialRow(line, serial, None) for line, serial in enumerate(unique, 1))


@dataclass
class Snapshot:
    """What the IoT registry and the serial registry hold, read back through their APIs."""

    things: dict[str, list[str]]  # thing name -> principal ARNs
    certificates: dict[str, str]  # certificate id -> status (claim certificates excluded)
    certificate_policies: dict[str, list[str]]  # certificate id -> attached policy names (non-empty only)
    serials: dict[str, dict[str, Any]]  # serial -> item (plain values)

    def active(self) -> set[str]:
        return {c for c, status in self.certificates.items() if status == "ACTIVE"}


def snapshot(raw: dict[str, Any], *, policies: bool = False) -> Snapshot:
    iot, dynamodb = aws(raw, "iot"), aws(raw, "dynamodb")
    names: list[str] = []
    for page in iot.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 250}):
        names += [t["thingName"] for t in page["things"]]
    things = {name: iot.list_thing_principals(thingName=name)["principals"] for name in names}
    claims = {c["certificate_id"] for c in raw["claims"].values()}
    certificates: dict[str, str] = {}
    for page in iot.get_paginator("list_certificates").paginate(PaginationConfig={"PageSize": 250}):
        for c in page["certificates"]:
            if c["certificateId"] not in claims:
                certificates[c["certificateId"]] = c["status"]
    attached: dict[str, list[str]] = {}
    if policies:
        arn = f"arn:aws:iot:{raw['region']}:{raw['account_id']}:cert/"
        for certificate_id in certificates:
            names_ = [
                p["policyName"] for p in iot.list_attached_policies(target=arn + certificate_id)["policies"]
            ]
            if names_:
                attached[certificate_id] = names_
    serials: dict[str, dict[str, Any]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=raw["serial_table"]):
        for item in page["Items"]:
            plain = {k: next(iter(v.values())) for k, v in item.items()}
            if str(plain["pk"]).startswith("serial#"):
                serials[str(plain["serial"])] = plain
    return Snapshot(things, certificates, attached, serials)


def certificate_id_of(principal_arn: str) -> str:
    return principal_arn.rsplit("/", 1)[-1]


@dataclass
class DeviceResult:
    serial: str
    outcome: str  # provisioned | rejected | failed
    elapsed_s: float
    code: str | None = None
    thing_name: str | None = None
    certificate_id: str | None = None
    steps_ms: dict[str, float] = field(default_factory=dict)


async def provision_all(
    endpoint_file: Path, serials: Sequence[str], *, concurrency: int = 20, timeout_s: float = 20.0
) -> list[DeviceResult]:
    """Each serial through the simulator's device flow, one result per device (no retries: a retry
    would hide the outcome under test)."""
    transport = Transport(load_endpoint_file(endpoint_file), threads=1, timeout_s=timeout_s)
    options = DeviceOptions(retry=RetryPolicy(attempts=1))
    limit = asyncio.Semaphore(concurrency)

    async def one(serial: str) -> DeviceResult:
        async with limit:
            steps: dict[str, float] = {}
            started = time.monotonic()
            try:
                done = await provision_device(
                    transport, serial, options, on_step=lambda s, ms: steps.__setitem__(s, ms)
                )
            except Rejected as exc:
                return DeviceResult(
                    serial, "rejected", time.monotonic() - started, exc.error_code, steps_ms=steps
                )
            except DeviceFailure as exc:
                return DeviceResult(serial, "failed", time.monotonic() - started, exc.kind, steps_ms=steps)
            return DeviceResult(
                serial,
                "provisioned",
                time.monotonic() - started,
                thing_name=done.thing_name,
                certificate_id=done.certificate_id,
                steps_ms=steps,
            )

    return list(await asyncio.gather(*(one(s) for s in serials)))
