"""One device's first boot: claim connection, certificate, RegisterThing, reconnect as itself, first publish.

`provision_device` is the whole flow for one serial. It reports each step's latency and each retry through
callbacks, so the single-device command and the fleet share it; it keeps nothing once it returns but the
`Provisioned` result (which the fleet drops at once). It speaks the MQTT version of the transport it is
given (`--mqtt`) and never asks which one that is.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from device_sim.errors import DeviceFailure, Rejected
from device_sim.identity import IssuedCertificate, Registration, identity_client, telemetry_payload
from device_sim.keys import DeviceKey, MemoryKey
from device_sim.target import DEFAULT_TOPIC_ROOT
from device_sim.transport import Transport

T = TypeVar("T")
Format = Literal["json", "cbor"]
Flow = Literal["csr", "keys"]
PENDING_CERTIFICATE = "pending-certificate.pem"  # issued, not yet registered (save_pending)
KEY_CROSSED_NETWORK = (
    "warning: --flow keys: the endpoint generated this device's private key and sent it over the "
    "network (CreateKeysAndCertificate); prefer the CSR flow, where the key never leaves the device"
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter, for throttling and time-outs."""

    attempts: int = 4
    base_s: float = 1.0  # AWS IoT allows one CONNECT per second per client id
    cap_s: float = 8.0

    def delay_s(self, retry: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2**retry))


@dataclass(frozen=True)
class DeviceOptions:
    fmt: Format = "json"
    flow: Flow = "csr"
    parameters: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    out_dir: Path | None = None
    make_key: Callable[[str], DeviceKey] = lambda serial: MemoryKey()


@dataclass
class Provisioned:
    serial: str
    thing_name: str
    certificate_id: str
    device_configuration: dict[str, str]
    telemetry_topic: str
    steps_ms: dict[str, float]
    total_ms: float
    saved_to: Path | None = None


StepHook = Callable[[str, float], None]
RetryHook = Callable[[str, str], None]


SPENT_TOKEN = "InvalidCertificateOwnershipToken"  # what a RegisterThing with a spent token is told


@dataclass
class Retries:
    """One device's retries (first boot or rotation): one count for all of its steps, so that
    `policy.attempts` bounds the device, and what a lost RegisterThing answer means."""

    policy: RetryPolicy
    on_retry: RetryHook
    count: int = 0
    unanswered_register: bool = False  # a RegisterThing went out and its answer never came

    async def after(self, exc: Rejected | DeviceFailure, step: str, *, same_key: bool = False) -> bool:
        """Once `exc` ended an attempt at `step`: raises it again when it is not worth a retry or the
        attempts are spent, else waits the back-off. True when a spent token follows a RegisterThing that got
        no answer: that RegisterThing was applied, and a new certificate for the same key (`same_key`: the
        device made its key) is this device again (the hook's ALLOWED_SAME_KEY): start from a new CSR."""
        reason = _retry_reason(exc)
        applied = (
            same_key
            and isinstance(exc, Rejected)
            and exc.error_code == SPENT_TOKEN
            and self.unanswered_register
        )
        if applied:
            reason = "lost_reply"
        if isinstance(exc, DeviceFailure) and step == "register_thing":
            self.unanswered_register = True
        if reason is None or self.count + 1 >= self.policy.attempts:
            raise exc
        self.on_retry(step, reason)
        await asyncio.sleep(self.policy.delay_s(self.count))
        self.count += 1
        return applied


def _noop(*_: object) -> None:
    pass


async def provision_device(
    transport: Transport,
    serial: str,
    options: DeviceOptions,
    *,
    on_step: StepHook = _noop,
    on_retry: RetryHook = _noop,
) -> Provisioned:
    """Run the device's whole first boot; raises Rejected (AWS said no) or DeviceFailure (anything else)."""
    started = time.perf_counter()
    steps: dict[str, float] = {}

    def step_done(step: str, since: float) -> None:
        steps[step] = (time.perf_counter() - since) * 1000
        on_step(step, steps[step])

    key: DeviceKey | None = None
    csr_pem = ""
    if options.flow == "csr":
        key = options.make_key(serial)  # first boot: the device makes its own key pair
        csr_pem = key.csr_pem(serial)

    issued: IssuedCertificate | None = None
    registration: Registration | None = None
    retries = Retries(options.retry, on_retry)
    while registration is None:
        connection = transport.claim_connection(transport.target.claim_client_id(serial))
        step = "claim_connect"
        try:
            since = time.perf_counter()
            await transport.connect(connection, step)
            step_done(step, since)
            client = identity_client(options.fmt, connection, transport.timeout_s)
            if issued is None:
                step = "create_certificate"
                since = time.perf_counter()
                if options.flow == "csr":
                    issued = await client.create_certificate_from_csr(csr_pem)
                else:
                    issued = await client.create_keys_and_certificate()
                step_done(step, since)
                if options.out_dir is not None and key is not None:
                    # Keep the key (and the certificate it is about to become) before RegisterThing: after
                    # a lost reply, or a reboot, the device proves it is the same device with this key.
                    save_pending(options.out_dir, serial, issued, key)
            step = "register_thing"
            since = time.perf_counter()
            # Retrying with the same ownership token is safe: the hook allows a serial already reserved for
            # this certificate again.
            registration = await client.register_thing(
                transport.target.template_name,
                issued.ownership_token,
                {**options.parameters, "SerialNumber": serial},
            )
            step_done(step, since)
        except (Rejected, DeviceFailure) as exc:
            # Only the CSR flow can recover from a lost answer: the keys flow's key came from the endpoint.
            if await retries.after(exc, step, same_key=options.flow == "csr"):
                issued = None
        finally:
            await transport.disconnect(connection)
            del connection

    assert issued is not None
    if options.flow == "keys":
        assert issued.private_key_pem is not None
        key = MemoryKey.from_pem(issued.private_key_pem)
    assert key is not None
    saved_to = None
    if options.out_dir is not None:
        saved_to = save_identity(options.out_dir, serial, issued, registration, key)

    topic_root = registration.device_configuration.get("topic_root") or DEFAULT_TOPIC_ROOT
    topic = f"{topic_root}/{registration.thing_name}/telemetry"
    certificate = issued.certificate_pem.encode()

    async def reconnect_and_publish() -> None:
        connection = transport.device_connection(key.tls_options(certificate), registration.thing_name)
        try:
            since = time.perf_counter()
            await transport.connect(connection, "reconnect")
            step_done("reconnect", since)
            since = time.perf_counter()
            await transport.publish(
                connection, topic, telemetry_payload(serial, registration.thing_name), "first_publish"
            )
            step_done("first_publish", since)
        finally:
            await transport.disconnect(connection)

    await _retrying(reconnect_and_publish, "reconnect", retries)
    return Provisioned(
        serial=serial,
        thing_name=registration.thing_name,
        certificate_id=issued.certificate_id,
        device_configuration=registration.device_configuration,
        telemetry_topic=topic,
        steps_ms=steps,
        total_ms=(time.perf_counter() - started) * 1000,
        saved_to=saved_to,
    )


def _retry_reason(exc: Rejected | DeviceFailure) -> str | None:
    if isinstance(exc, Rejected):
        return "throttled" if exc.throttled else None
    return exc.kind if exc.retryable else None


async def _retrying(attempt: Callable[[], Awaitable[None]], step: str, retries: Retries) -> None:
    while True:
        try:
            await attempt()
            return
        except (Rejected, DeviceFailure) as exc:
            await retries.after(exc, step)


def save_pending(out_dir: Path, serial: str, issued: IssuedCertificate, key: DeviceKey) -> Path:
    """What a device keeps before RegisterThing: its key and the certificate not yet registered."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PENDING_CERTIFICATE).write_text(issued.certificate_pem)
    key.save(out_dir)
    return out_dir


def save_identity(
    out_dir: Path, serial: str, issued: IssuedCertificate, registration: Registration, key: DeviceKey
) -> Path:
    """What a device keeps after provisioning: certificate, key (or the key's label), thing name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "certificate.pem").write_text(issued.certificate_pem)
    key_file = key.save(out_dir)
    (out_dir / "thing_name").write_text(registration.thing_name + "\n")
    (out_dir / PENDING_CERTIFICATE).unlink(missing_ok=True)
    (out_dir / "identity.json").write_text(
        json.dumps(
            {
                "serial": serial,
                "thing_name": registration.thing_name,
                "certificate_id": issued.certificate_id,
                "certificate_file": "certificate.pem",
                "key_file": key_file.name,
                "device_configuration": registration.device_configuration,
            },
            indent=2,
        )
        + "\n"
    )
    return out_dir


def warn(message: str) -> None:
    print(message, file=sys.stderr)
