"""The hook's rules (DESIGN.md, "The hook's rules") as one pure function over a registry interface.

No AWS here and no state of its own: everything a decision depends on comes in as arguments, so an
earlier invocation cannot leak into a later one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .models import HookEvent, Reason
from .settings import MAX_THING_NAME, HookSettings

PARAM_SERIAL = "SerialNumber"
PARAM_BATCH = "Batch"

STATUS_AVAILABLE = "AVAILABLE"
STATUS_RESERVED = "RESERVED"
STATUS_REVOKED = "REVOKED"


class RegistryError(Exception):
    """The registry could not answer (error, throttling, timeout); the hook denies."""


@dataclass(frozen=True)
class SerialRecord:
    serial: str
    status: str
    batch: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    certificate_id: str | None = None
    reserved_at: int | None = None  # epoch milliseconds


@dataclass(frozen=True)
class Reservation:
    """What a successful reserve writes onto the serial item."""

    serial: str
    certificate_id: str
    thing_name: str
    claim_certificate_id: str
    client_id: str
    reserved_at: int  # epoch milliseconds


class Registry(Protocol):
    """The registry as the decision needs it; methods raise RegistryError when they cannot answer."""

    def get_serial(self, serial: str) -> SerialRecord | None: ...

    def batch_claims(self, batch: str) -> frozenset[str] | None:
        """The claim certificate ids bound to the batch, or None when the batch has no batch item."""
        ...

    def reserve(self, reservation: Reservation) -> bool:
        """Reserve an AVAILABLE serial in one conditional write; False when the condition failed."""
        ...

    def take_over(
        self, reservation: Reservation, *, previous_certificate_id: str, previous_reserved_at: int
    ) -> bool:
        """Replace exactly that earlier reservation in one conditional write; False when it changed."""
        ...

    def certificate_is_active(self, certificate_id: str) -> bool:
        """True only when the certificate exists and is ACTIVE."""
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
    try:
        return _decide_known(event, serial, settings, registry, now_ms)
    except RegistryError as exc:
        return Decision(Reason.REGISTRY_ERROR, serial, detail=str(exc)[:300])


def _serial_ok(serial: str, settings: HookSettings) -> bool:
    # fullmatch, not match: a `$` in the pattern would otherwise accept a trailing newline.
    too_long = len(settings.thing_name(serial)) > MAX_THING_NAME
    return not too_long and settings.serial_pattern.fullmatch(serial) is not None


def _decide_known(
    event: HookEvent, serial: str, settings: HookSettings, registry: Registry, now_ms: int
) -> Decision:
    record = registry.get_serial(serial)
    if record is None:
        return Decision(Reason.UNKNOWN_SERIAL, serial)
    if record.status == STATUS_REVOKED:
        return Decision(Reason.REVOKED, serial)
    if record.status not in (STATUS_AVAILABLE, STATUS_RESERVED):
        return Decision(Reason.REGISTRY_ERROR, serial, detail=f"unknown status {record.status[:40]!r}")
    if record.batch is not None:
        # A batch without a batch item is unbound: any claim of this template may provision it
        # (docs/registry.md). Once `fleetctl batch bind` writes the item, only its claims may.
        claims = registry.batch_claims(record.batch)
        if claims is not None and event.claim_certificate_id not in claims:
            return Decision(Reason.CLAIM_NOT_BOUND, serial, detail=f"batch {record.batch}")

    allow = _allowing(record, settings)
    if record.status == STATUS_RESERVED and record.certificate_id == event.certificate_id:
        return allow(Reason.ALLOWED_RETRY)

    reservation = Reservation(
        serial=serial,
        certificate_id=event.certificate_id,
        thing_name=settings.thing_name(serial),
        claim_certificate_id=event.claim_certificate_id,
        client_id=event.client_id,
        reserved_at=now_ms,
    )
    if record.status == STATUS_AVAILABLE:
        if registry.reserve(reservation):
            return allow(Reason.ALLOWED_NEW)
        return _after_lost_write(event, serial, registry, allow)
    return _maybe_take_over(event, record, reservation, settings, registry, allow)


def _maybe_take_over(
    event: HookEvent,
    record: SerialRecord,
    reservation: Reservation,
    settings: HookSettings,
    registry: Registry,
    allow: _Allow,
) -> Decision:
    serial = record.serial
    if record.certificate_id is None or record.reserved_at is None:
        return Decision(Reason.TAKEN, serial, detail="reservation without certificate or time")
    age_ms = reservation.reserved_at - record.reserved_at
    if age_ms <= settings.reservation_timeout_s * 1000:
        return Decision(Reason.TAKEN, serial, detail="reserved for another certificate")
    # An ACTIVE certificate means that earlier attempt finished: only `fleetctl registry reset` frees it.
    if registry.certificate_is_active(record.certificate_id):
        return Decision(Reason.TAKEN, serial, detail="reserved certificate is ACTIVE")
    if registry.take_over(
        reservation, previous_certificate_id=record.certificate_id, previous_reserved_at=record.reserved_at
    ):
        return allow(Reason.ALLOWED_TAKEOVER, f"stale reservation of {record.certificate_id}")
    return _after_lost_write(event, serial, registry, allow)


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


def _allowing(record: SerialRecord, settings: HookSettings) -> _Allow:
    overrides = {
        name: record.attributes[name] for name in settings.template_attributes if name in record.attributes
    }
    if record.batch is not None:
        overrides[PARAM_BATCH] = record.batch

    def allow(reason: Reason, detail: str = "") -> Decision:
        return Decision(reason, record.serial, dict(overrides), detail)

    return allow
