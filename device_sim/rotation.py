"""Certificate rotation in the field, as firmware should do it (docs/rotation.md).

A provisioned device, connected with its OWN certificate (client id = its thing name), makes a new key,
asks for a certificate from a CSR (CN = its serial) and registers it through the rotation template, then
disconnects, connects with the new certificate and publishes once. What it keeps, and when, is in
`device_sim.device_dir`: the old identity stays until the new one has connected.

Recovery, in the order a device meets the cases:
- no answer to RegisterThing: reconnect with the old certificate and retry with the same token; if the
  token was spent (the first request was applied, its answer lost), a new CSR with the same new key, which
  the hook allows as the same device (ALLOWED_SAME_KEY);
- the old certificate refused (the retirer retired it after the rotation's grace, the answer having been
  lost): the new certificate kept from CreateCertificateFromCsr is tried, and works if RegisterThing was
  applied;
- a run that stopped half way (reboot): the next run finds the new key, and the new certificate if it had
  one, and goes on from there (trying that certificate first).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from device_sim import device_dir
from device_sim.device import Retries, RetryHook, RetryPolicy, StepHook, _noop, _retrying
from device_sim.device_dir import DeviceIdentity
from device_sim.errors import DeviceFailure, Rejected
from device_sim.identity import IssuedCertificate, identity_client
from device_sim.keys import DeviceKey
from device_sim.target import DEFAULT_TOPIC_ROOT

if TYPE_CHECKING:
    from device_sim.transport import Transport

ROTATION_STEPS = ("connect", "create_certificate", "register_thing", "reconnect", "first_publish")
REFUSED = frozenset({"connection_closed", "connect_refused", "connack_not_authorized", "tls_negotiation"})


@dataclass(frozen=True)
class RotateOptions:
    template_name: str  # the rotation template
    fmt: str = "json"
    retry: RetryPolicy = RetryPolicy()
    pkcs11_pin: str = "1234"


@dataclass
class Rotated:
    serial: str
    thing_name: str
    certificate_id: str  # the new one, now in the device directory
    previous_certificate_id: str
    steps_ms: dict[str, float]
    total_ms: float
    resumed: bool  # an earlier run had started this rotation


async def rotate_device(
    transport: Transport,
    identity: DeviceIdentity,
    options: RotateOptions,
    *,
    on_step: StepHook = _noop,
    on_retry: RetryHook = _noop,
) -> Rotated:
    """Rotate one device's certificate; raises Rejected (AWS said no) or DeviceFailure (anything else).
    On either, the device directory still holds a working identity (the old one, or the new one)."""
    started = time.perf_counter()
    steps: dict[str, float] = {}

    def step_done(step: str, since: float) -> None:
        steps[step] = (time.perf_counter() - since) * 1000
        on_step(step, steps[step])

    pending = device_dir.pending_rotation(identity, pkcs11_pin=options.pkcs11_pin)
    resumed = pending is not None
    if pending is None:
        key = device_dir.new_key_like(identity)
        device_dir.keep_new_key(identity, key)  # before any request: a retry or a reboot reuses it
        certificate: bytes | None = None
    else:
        key, certificate = pending.key, pending.certificate_pem
    retries = Retries(options.retry, on_retry)

    if certificate is not None and await _works(transport, identity, key, certificate):
        # An earlier run's RegisterThing was applied (its answer lost): the new certificate works already.
        issued_pem, issued_id = certificate, device_dir.certificate_id_of(certificate)
    else:
        try:
            issued = await _register(transport, identity, key, options, step_done, retries)
            issued_pem, issued_id = issued.certificate_pem.encode(), issued.certificate_id
        except DeviceFailure as exc:
            # The old certificate refused: retired after the rotation's grace, its answer having been lost?
            # Then the new certificate kept from CreateCertificateFromCsr is what the device has left.
            kept = device_dir.pending_rotation(identity, pkcs11_pin=options.pkcs11_pin)
            if (
                exc.step != "connect"
                or exc.kind not in REFUSED
                or kept is None
                or kept.certificate_pem is None
            ):
                raise
            if not await _works(transport, identity, kept.key, kept.certificate_pem):
                raise
            issued_pem, issued_id = kept.certificate_pem, kept.certificate_id or ""

    topic_root = identity.device_configuration.get("topic_root") or DEFAULT_TOPIC_ROOT
    topic = f"{topic_root}/{identity.thing_name}/telemetry"

    async def reconnect_and_publish() -> None:
        connection = transport.device_connection(key.tls_options(issued_pem), identity.thing_name)
        try:
            since = time.perf_counter()
            await transport.connect(connection, "reconnect")
            step_done("reconnect", since)
            payload = json.dumps(
                {"serial": identity.serial, "thing": identity.thing_name, "event": "rotated"}
            )
            since = time.perf_counter()
            await transport.publish(connection, topic, payload.encode(), "first_publish")
            step_done("first_publish", since)
        finally:
            await transport.disconnect(connection)

    await _retrying(reconnect_and_publish, "reconnect", retries)
    previous = identity.certificate_id
    device_dir.swap(identity, issued_pem, issued_id)
    return Rotated(
        serial=identity.serial,
        thing_name=identity.thing_name,
        certificate_id=issued_id,
        previous_certificate_id=previous,
        steps_ms=steps,
        total_ms=(time.perf_counter() - started) * 1000,
        resumed=resumed,
    )


async def _register(
    transport: Transport,
    identity: DeviceIdentity,
    key: DeviceKey,
    options: RotateOptions,
    step_done: StepHook,
    retries: Retries,
) -> IssuedCertificate:
    """CreateCertificateFromCsr and RegisterThing over the device's own connection, with retries."""
    issued: IssuedCertificate | None = None
    tls = identity.key.tls_options
    while True:
        connection = transport.device_connection(tls(identity.certificate_pem), identity.thing_name)
        step = "connect"
        try:
            since = time.perf_counter()
            await transport.connect(connection, step)
            step_done(step, since)
            client = identity_client(options.fmt, connection, transport.timeout_s)
            if issued is None:
                step = "create_certificate"
                since = time.perf_counter()
                issued = await client.create_certificate_from_csr(key.csr_pem(identity.serial))
                step_done(step, since)
                device_dir.keep_new_certificate(identity, issued.certificate_pem)
            step = "register_thing"
            since = time.perf_counter()
            await client.register_thing(
                options.template_name, issued.ownership_token, {"SerialNumber": identity.serial}
            )
            step_done(step, since)
            return issued
        except (Rejected, DeviceFailure) as exc:
            if await retries.after(exc, step, same_key=True):  # the device made its new key
                issued = None
        finally:
            await transport.disconnect(connection)
            del connection


async def _works(transport: Transport, identity: DeviceIdentity, key: DeviceKey, certificate: bytes) -> bool:
    """Whether the kept new certificate connects as the thing (its RegisterThing was applied)."""
    connection = transport.device_connection(key.tls_options(certificate), identity.thing_name)
    try:
        await transport.connect(connection, "reconnect")
        return True
    except DeviceFailure:
        return False
    finally:
        await transport.disconnect(connection)
