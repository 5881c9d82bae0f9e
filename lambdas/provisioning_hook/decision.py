"""The hook's rules (docs/registry.md: "The hook's writes", "reasons") as one pure function over a registry.

No AWS here and no state of its own: everything a decision depends on comes in as arguments, so an
earlier invocation cannot leak into a later one. The claim credential is assumed public: the only input of
the device's that counts is its serial; everything else about the device comes from the registry, and
every value the template will receive is checked before anything is reserved, so that no template
failure can follow an allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from .certificate import CertificateError, CertificateFacts, certificate_facts
from .models import HookEvent, Reason
from .settings import MAX_THING_NAME, PARAM_SERIAL, THING_NAME_RE, HookSettings

PARAM_BATCH = "Batch"
PARAM_CERTIFICATE_ID = "AWS::IoT::Certificate::Id"

STATUS_AVAILABLE = "AVAILABLE"
STATUS_RESERVED = "RESERVED"
STATUS_REVOKED = "REVOKED"

# AWS IoT certificate statuses the rules distinguish (DescribeCertificate).
CERT_ACTIVE = "ACTIVE"
CERT_PENDING = "PENDING_ACTIVATION"

# AWS IoT's thing-attribute value rule (API_AttributePayload); the batch is stored as an attribute.
ATTRIBUTE_VALUE_RE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}")
BATCH_VALUE_RE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]{1,128}")


class RegistryError(Exception):
    """The registry could not answer (error, throttling, timeout) or holds bad data; the hook denies."""


@dataclass(frozen=True)
class SerialRecord:
    serial: str
    status: str
    batch: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    certificate_id: str | None = None
    reserved_at: int | None = None  # epoch milliseconds
    public_key_sha256: str | None = None  # from the factory: the device key's fingerprint (attestation)
    reserved_key_sha256: str | None = None  # the key of the certificate the serial is reserved for
    rotating_from: str | None = None  # a rotation is pending: the certificate it replaces, still working
    rotating_from_key_sha256: str | None = None  # that certificate's key
    rotation_started_at: int | None = None  # epoch milliseconds


@dataclass(frozen=True)
class BatchRecord:
    batch: str
    claim_certificate_ids: frozenset[str] | None  # None: the batch is bound to no claim (any may provision)
    require_device_key: bool = False


@dataclass(frozen=True)
class Reservation:
    """What a successful reservation writes: onto the serial item, and a certificate item that says this
    certificate now holds this serial (one certificate, one serial)."""

    serial: str
    certificate_id: str
    thing_name: str
    claim_certificate_id: str
    client_id: str
    reserved_at: int  # epoch milliseconds
    key_sha256: str
    reason: str  # "provisioned", "same_key", "takeover" or "rotation": the certificate history's entry
    expires_at: int = 0  # epoch milliseconds the new certificate expires


class WriteOutcome(StrEnum):
    WRITTEN = "WRITTEN"
    SERIAL_CHANGED = "SERIAL_CHANGED"  # the serial is no longer as it was read (a concurrent request)
    CERTIFICATE_HOLDS_SERIAL = "CERTIFICATE_HOLDS_SERIAL"  # the certificate reserved another serial


class Registry(Protocol):
    """The registry as the decision needs it; methods raise RegistryError when they cannot answer."""

    def get_serial(self, serial: str) -> SerialRecord | None: ...

    def get_batch(self, batch: str) -> BatchRecord | None:
        """The batch item, or None when the batch has none (an unbound batch)."""
        ...

    def certificate_status(self, certificate_id: str) -> str | None:
        """The certificate's AWS IoT status, None when it does not exist."""
        ...

    def claim_is_active(self, certificate_id: str) -> bool:
        """True only when the claim certificate exists and is ACTIVE (may be cached for seconds)."""
        ...

    def write_reservation(self, reservation: Reservation, previous: SerialRecord) -> WriteOutcome:
        """One transactional write: the serial item, if it is still exactly `previous`, and the new
        certificate's item, if that certificate holds no other serial; the previous certificate's item
        is marked retired."""
        ...

    def deactivate_certificate(self, certificate_id: str) -> None: ...

    def thing_certificates(self, thing_name: str) -> frozenset[str]:
        """The ids of the certificates attached to the thing (none if it does not exist)."""
        ...

    def write_rotation(
        self, reservation: Reservation, previous: SerialRecord, *, requester: str, requester_key: str
    ) -> WriteOutcome:
        """One transactional write: the serial's current certificate becomes the new one, and the
        requester (the certificate it replaces, still working) becomes `rotating_from` until the retirer
        retires it; the new certificate's item as in `write_reservation`; the certificate the rotation
        makes obsolete (a pending rotation's, or one an earlier rotation replaced) is marked retired."""
        ...


@dataclass(frozen=True)
class Decision:
    reason: Reason
    serial: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason.allows


def decide(event: HookEvent, settings: HookSettings, registry: Registry, *, now_ms: int) -> Decision:
    """Apply the rules in order; anything not explicitly allowed is denied."""
    serial = event.parameters.get(PARAM_SERIAL)
    if serial is None:
        return Decision(Reason.BAD_SERIAL, detail="no SerialNumber parameter")
    if not _serial_ok(serial, settings):
        return Decision(Reason.BAD_SERIAL, detail="SerialNumber does not match the configured pattern")
    unexpected = _unexpected_parameter(event, settings)
    if unexpected is not None:
        detail = f"parameter {unexpected[:64]!r} is not a device's to set"
        return Decision(Reason.UNEXPECTED_PARAMETER, serial, detail=detail)
    try:
        facts = certificate_facts(event.certificate_pem)
    except CertificateError as exc:
        return Decision(Reason.MALFORMED_EVENT, serial, detail=str(exc))
    if settings.require_cn_match and facts.common_names != (serial,):
        shown = ", ".join(repr(name[:64]) for name in facts.common_names) or "none"
        return Decision(Reason.CN_MISMATCH, serial, detail=f"certificate CN {shown}")
    try:
        if settings.is_rotation(event.template_arn):
            from .rotation import decide_rotation

            return decide_rotation(event, serial, facts, settings, registry, now_ms)
        return _decide_known(event, serial, facts, settings, registry, now_ms)
    except RegistryError as exc:
        return Decision(Reason.REGISTRY_ERROR, serial, detail=str(exc)[:300])


def _serial_ok(serial: str, settings: HookSettings) -> bool:
    # fullmatch, not match: a `$` in the pattern would otherwise accept a trailing newline. The thing name
    # rule too: a configured pattern wider than AWS's thing names must not reach the template.
    thing_name = settings.thing_name(serial)
    return (
        len(thing_name) <= MAX_THING_NAME
        and settings.serial_pattern.fullmatch(serial) is not None
        and THING_NAME_RE.fullmatch(thing_name) is not None
    )


def _unexpected_parameter(event: HookEvent, settings: HookSettings) -> str | None:
    """The first parameter a device may not set. Its own certificate's id is tolerated (AWS's samples
    send it); any other value of it would name another certificate."""
    for name, value in event.parameters.items():
        if name in settings.device_parameters:
            continue
        if name == PARAM_CERTIFICATE_ID and value == event.certificate_id:
            continue
        return name
    return None


def _decide_known(
    event: HookEvent,
    serial: str,
    facts: CertificateFacts,
    settings: HookSettings,
    registry: Registry,
    now_ms: int,
) -> Decision:
    if not registry.claim_is_active(event.claim_certificate_id):
        return Decision(Reason.CLAIM_INACTIVE, serial)
    record = registry.get_serial(serial)
    if record is None:
        return Decision(Reason.UNKNOWN_SERIAL, serial)
    if record.status == STATUS_REVOKED:
        return Decision(Reason.REVOKED, serial)
    if record.status not in (STATUS_AVAILABLE, STATUS_RESERVED):
        return Decision(Reason.REGISTRY_ERROR, serial, detail=f"unknown status {record.status[:40]!r}")
    batch = registry.get_batch(record.batch) if record.batch is not None else None
    # A batch without a batch item, or without bound claims, is unbound: any claim of this template may
    # provision it (docs/registry.md). Once `fleetctl batch bind` writes claims, only those may.
    if batch is not None and batch.claim_certificate_ids is not None:
        if event.claim_certificate_id not in batch.claim_certificate_ids:
            return Decision(Reason.CLAIM_NOT_BOUND, serial, detail=f"batch {record.batch}")
    if record.public_key_sha256 is not None:
        if record.public_key_sha256 != facts.key_sha256:
            return Decision(Reason.KEY_MISMATCH, serial)
    elif settings.require_device_key or (batch is not None and batch.require_device_key):
        where = "the stack" if settings.require_device_key else f"batch {record.batch}"
        return Decision(Reason.KEY_REQUIRED, serial, detail=f"{where} requires a device key")

    overrides = _overrides(record, settings)

    def allow(reason: Reason, detail: str = "") -> Decision:
        return Decision(reason, serial, dict(overrides), detail)

    def reservation(reason: str) -> Reservation:
        return Reservation(
            serial=serial,
            certificate_id=event.certificate_id,
            thing_name=settings.thing_name(serial),
            claim_certificate_id=event.claim_certificate_id,
            client_id=event.client_id,
            reserved_at=now_ms,
            key_sha256=facts.key_sha256,
            reason=reason,
            expires_at=facts.not_after_ms,
        )

    if record.status == STATUS_AVAILABLE:
        return _write(event, record, reservation("provisioned"), registry, allow, Reason.ALLOWED_NEW)
    if record.certificate_id == event.certificate_id:
        return allow(Reason.ALLOWED_RETRY)
    if record.certificate_id is None or record.reserved_at is None:
        return Decision(Reason.TAKEN, serial, detail="reservation without certificate or time")
    if record.reserved_key_sha256 == facts.key_sha256:
        return _same_key(event, record, reservation("same_key"), registry, allow)
    if now_ms - record.reserved_at <= settings.reservation_timeout_s * 1000:
        return Decision(Reason.TAKEN, serial, detail="reserved for another key")
    # Stale: that attempt died half way only if its certificate never became anything. ACTIVE means it
    # finished (only `fleetctl registry reset` frees it); INACTIVE or REVOKED means an operator acted.
    status = registry.certificate_status(record.certificate_id)
    if status is not None and status != CERT_PENDING:
        return Decision(Reason.TAKEN, serial, detail=f"reserved certificate is {status[:40]}")
    decision = _write(event, record, reservation("takeover"), registry, allow, Reason.ALLOWED_TAKEOVER)
    if decision.reason is Reason.ALLOWED_TAKEOVER:
        return allow(Reason.ALLOWED_TAKEOVER, f"stale reservation of {record.certificate_id}")
    return decision


def _same_key(
    event: HookEvent, record: SerialRecord, reservation: Reservation, registry: Registry, allow: _Allow
) -> Decision:
    """A new certificate for the key the serial is reserved for: the same device, whose earlier answer was
    lost. Its new certificate takes the reservation over and the earlier one is deactivated."""
    assert record.certificate_id is not None
    status = registry.certificate_status(record.certificate_id)
    if status not in (None, CERT_ACTIVE, CERT_PENDING):
        # An operator deactivated or revoked the device's certificate: the device cannot undo that.
        detail = f"reserved certificate is {str(status)[:40]}; reset the serial"
        return Decision(Reason.TAKEN, record.serial, detail=detail)
    decision = _write(event, record, reservation, registry, allow, Reason.ALLOWED_SAME_KEY)
    if decision.reason is not Reason.ALLOWED_SAME_KEY or status != CERT_ACTIVE:
        return decision
    try:
        registry.deactivate_certificate(record.certificate_id)
    except RegistryError as exc:
        # The device's new certificate works either way; the old one is of the same key. Say so loudly:
        # `fleetctl registry show` lists it, `registry reset` retires it.
        return allow(Reason.ALLOWED_SAME_KEY, f"superseded {record.certificate_id} still ACTIVE: {exc}"[:300])
    return allow(Reason.ALLOWED_SAME_KEY, f"superseded {record.certificate_id}, deactivated")


def _write(
    event: HookEvent,
    record: SerialRecord,
    reservation: Reservation,
    registry: Registry,
    allow: _Allow,
    reason: Reason,
) -> Decision:
    outcome = registry.write_reservation(reservation, record)
    if outcome is WriteOutcome.WRITTEN:
        return allow(reason)
    if outcome is WriteOutcome.CERTIFICATE_HOLDS_SERIAL:
        return Decision(Reason.CERTIFICATE_HOLDS_SERIAL, record.serial)
    return _after_lost_write(event, record.serial, registry, allow)


def _after_lost_write(event: HookEvent, serial: str, registry: Registry, allow: _Allow) -> Decision:
    """A conditional write lost a race: re-read, since the winner may be this same certificate retrying."""
    current = registry.get_serial(serial)
    if current is None:
        return Decision(Reason.UNKNOWN_SERIAL, serial, detail="deleted during the decision")
    if current.status == STATUS_REVOKED:
        return Decision(Reason.REVOKED, serial, detail="revoked during the decision")
    if current.status == STATUS_RESERVED and current.certificate_id == event.certificate_id:
        return allow(Reason.ALLOWED_RETRY, "won by a concurrent request of the same certificate")
    return Decision(Reason.TAKEN, serial, detail="lost the conditional write")


class _Allow(Protocol):
    def __call__(self, reason: Reason, detail: str = "") -> Decision: ...


def _overrides(record: SerialRecord, settings: HookSettings) -> dict[str, str]:
    """Every template parameter but the serial, from the registry (or the template's default when the
    registry has none). Each value is checked against AWS's rule here, so the template cannot fail on it."""
    overrides: dict[str, str] = {}
    for name in settings.template_attributes:
        value = record.attributes.get(name)
        if value is None:
            continue
        if not ATTRIBUTE_VALUE_RE.fullmatch(value):
            raise RegistryError(f"the registry's {name[:40]!r} of {record.serial} breaks AWS's value rule")
        overrides[name] = value
    if record.batch is not None:
        if not BATCH_VALUE_RE.fullmatch(record.batch):
            raise RegistryError(f"the registry's batch of {record.serial} breaks AWS's attribute rule")
        overrides[PARAM_BATCH] = record.batch
    return overrides
