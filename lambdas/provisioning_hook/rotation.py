"""The hook's rotation rules: a provisioned thing, connected with its own certificate, asks for a new one
through the rotation template (docs/rotation.md).

Here the event's `claimCertificateId` is the certificate the device connected with. The rotation is that
thing's own only if that certificate is the serial's current one (or the one a pending rotation replaces,
when the device's first rotation answer was lost), ACTIVE, attached to the thing, and the client id is the
thing's name. The new certificate must carry a key the thing does not already use. Attestation: the
factory's fingerprint (`public_key_sha256`) proves the *first* key only; a rotation is proven by the
current certificate's key instead (mutual TLS), and the new key is recorded as the serial's current key
(`reserved_key_sha256`) and in the new certificate's item, never over the factory's record.

The old certificate keeps working until the device has connected with the new one (or `grace_s` passed):
the retirer Lambda retires it then, so a lost reply never leaves the thing without a working certificate.
"""

from __future__ import annotations

from .certificate import CertificateFacts
from .decision import (
    CERT_ACTIVE,
    CERT_PENDING,
    STATUS_RESERVED,
    STATUS_REVOKED,
    Decision,
    Registry,
    RegistryError,
    Reservation,
    SerialRecord,
    WriteOutcome,
)
from .models import HookEvent, Reason
from .settings import HookSettings


def decide_rotation(
    event: HookEvent,
    serial: str,
    facts: CertificateFacts,
    settings: HookSettings,
    registry: Registry,
    now_ms: int,
) -> Decision:
    thing_name = settings.thing_name(serial)
    requester = event.claim_certificate_id
    record = registry.get_serial(serial)
    if record is None:
        return Decision(Reason.UNKNOWN_SERIAL, serial)
    if record.status == STATUS_REVOKED:
        return Decision(Reason.REVOKED, serial)
    if record.status != STATUS_RESERVED or record.certificate_id is None:
        return Decision(Reason.ROTATION_REFUSED, serial, detail="the serial is not provisioned")
    refused = _not_the_things_own(event, record, requester, thing_name, registry)
    if refused:
        return Decision(Reason.ROTATION_REFUSED, serial, detail=refused)

    def allow(reason: Reason, detail: str = "") -> Decision:
        return Decision(reason, serial, {}, detail)  # the thing stays as it is: nothing to override

    if event.certificate_id == record.certificate_id:
        return allow(Reason.ALLOWED_RETRY)  # the same rotation again (its answer was lost)
    requester_key = (
        record.reserved_key_sha256 if requester == record.certificate_id else record.rotating_from_key_sha256
    )
    if requester_key is None:
        raise RegistryError(f"no key recorded for the certificate {requester} of {serial}")
    if facts.key_sha256 == requester_key:
        return Decision(Reason.KEY_NOT_NEW, serial, detail="the new certificate has the requesting one's key")
    if requester == record.certificate_id:
        # From the current certificate: a rotation it started earlier (if any) is proven complete, since the
        # device connects with its result; the certificate that one replaced is retired now.
        retired, reason = record.rotating_from, Reason.ALLOWED_ROTATION
    else:
        # From the certificate a pending rotation replaces: that rotation's answer never reached the device,
        # so its certificate is superseded (the same key again: a retry after a lost answer).
        retired = record.certificate_id
        same_key = facts.key_sha256 == record.reserved_key_sha256
        reason = Reason.ALLOWED_SAME_KEY if same_key else Reason.ALLOWED_ROTATION
    reservation = Reservation(
        serial=serial,
        certificate_id=event.certificate_id,
        thing_name=thing_name,
        claim_certificate_id=requester,
        client_id=event.client_id,
        reserved_at=now_ms,
        key_sha256=facts.key_sha256,
        reason="same_key" if reason is Reason.ALLOWED_SAME_KEY else "rotation",
        expires_at=facts.not_after_ms,
    )
    outcome = registry.write_rotation(reservation, record, requester=requester, requester_key=requester_key)
    if outcome is WriteOutcome.CERTIFICATE_HOLDS_SERIAL:
        return Decision(Reason.CERTIFICATE_HOLDS_SERIAL, serial)
    if outcome is not WriteOutcome.WRITTEN:
        current = registry.get_serial(serial)
        if current is not None and current.certificate_id == event.certificate_id:
            return allow(Reason.ALLOWED_RETRY, "won by a concurrent request of the same certificate")
        return Decision(Reason.ROTATION_REFUSED, serial, detail="the serial changed during the decision")
    if retired is None or retired == requester:
        return allow(reason)
    try:
        if registry.certificate_status(retired) in (CERT_ACTIVE, CERT_PENDING):
            registry.deactivate_certificate(retired)
    except RegistryError as exc:
        return allow(reason, f"retired {retired} not deactivated: {exc}"[:300])
    return allow(reason, f"retired {retired}, deactivated")


def _not_the_things_own(
    event: HookEvent, record: SerialRecord, requester: str, thing_name: str, registry: Registry
) -> str:
    """Why the requesting connection is not that thing asking with its own certificate ("" if it is)."""
    if event.client_id != thing_name:
        return f"client id {event.client_id[:64]!r} is not the thing {thing_name}"
    if requester not in (record.certificate_id, record.rotating_from):
        return "the requesting certificate is not the thing's current one"
    status = registry.certificate_status(requester)
    if status != CERT_ACTIVE:
        return f"the requesting certificate is {status or 'gone'}"
    if requester not in registry.thing_certificates(thing_name):
        return f"the requesting certificate is not attached to {thing_name}"
    return ""
