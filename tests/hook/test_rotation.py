"""The rotation rules as a pure function (lambdas/provisioning_hook/rotation.py): a provisioned thing,
connected with its own certificate, asks the rotation template for a certificate of a new key."""

from __future__ import annotations

import dataclasses
import re

import pytest
from provisioning_hook.decision import decide
from provisioning_hook.models import HookEvent, Reason
from provisioning_hook.registry_memory import InMemoryRegistry
from provisioning_hook.settings import HookSettings

from .support import CLAIM_ID, cert_id, key_sha256, load_event

NOW = 1_800_000_000_000
ROTATION = "FleetProvisioningTemplateRotation"
SETTINGS = HookSettings(
    table_name="t",
    serial_pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"),
    thing_name_prefix="device-",
    reservation_timeout_s=900,
    template_attributes=("model",),
    rotation_template_name=ROTATION,
)
SERIAL, THING = "SN-000001", "device-SN-000001"
CURRENT = cert_id(1)  # the device's certificate, with key "k1"


def request(
    cert: int,
    key: str,
    *,
    requester: str = CURRENT,
    serial: str = SERIAL,
    client_id: str = THING,
    template: str = ROTATION,
) -> HookEvent:
    raw = load_event(
        "register_thing", serial=serial, certificate_id=cert_id(cert), claim_id=requester, key=key
    )
    raw["clientId"] = client_id
    raw["templateArn"] = f"arn:aws:iot:us-east-1:123456789012:provisioningtemplate/{template}"
    return HookEvent.model_validate(raw)


@pytest.fixture
def registry() -> InMemoryRegistry:
    """SN-000001 provisioned: certificate 1 (key k1) ACTIVE and attached to its thing."""
    registry = InMemoryRegistry()
    registry.add_serial(
        SERIAL,
        status="RESERVED",
        certificate_id=CURRENT,
        reserved_at=NOW - 86_400_000,
        reserved_key_sha256=key_sha256("k1"),
        attributes={"model": "X1"},
    )
    registry.certificates[CURRENT] = "ACTIVE"
    registry.certificates[CLAIM_ID] = "ACTIVE"
    registry.things[THING] = {CURRENT}
    return registry


def rotate(registry: InMemoryRegistry, event: HookEvent, at: int = NOW) -> Reason:
    return decide(event, SETTINGS, registry, now_ms=at).reason


def test_a_thing_rotates_to_a_new_key(registry: InMemoryRegistry) -> None:
    decision = decide(request(2, "k2"), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.ALLOWED_ROTATION and decision.overrides == {}  # the thing is left as is
    record = registry.serials[SERIAL]
    assert (record.certificate_id, record.rotating_from, record.reserved_key_sha256) == (
        cert_id(2),
        CURRENT,
        key_sha256("k2"),
    )
    assert record.rotating_from_key_sha256 == key_sha256("k1") and record.rotation_started_at == NOW
    assert registry.reservations[SERIAL].reason == "rotation"
    assert registry.certificates[CURRENT] == "ACTIVE"  # the old one works until the new one connected


def test_a_lost_rotation_answer_then_a_retry(registry: InMemoryRegistry) -> None:
    assert rotate(registry, request(2, "k2")) is Reason.ALLOWED_ROTATION
    registry.certificates[cert_id(2)] = "ACTIVE"  # the template applied it; the answer was lost
    assert rotate(registry, request(2, "k2")) is Reason.ALLOWED_RETRY  # the same token again
    # A new certificate for the same new key, asked with the old certificate (the device kept both).
    decision = decide(request(3, "k2"), SETTINGS, registry, now_ms=NOW + 1000)
    assert decision.reason is Reason.ALLOWED_SAME_KEY
    record = registry.serials[SERIAL]
    assert (record.certificate_id, record.rotating_from, record.rotation_started_at) == (
        cert_id(3),
        CURRENT,
        NOW,
    )
    assert registry.certificates[cert_id(2)] == "INACTIVE"  # never reached the device
    assert registry.certificates[CURRENT] == "ACTIVE"  # still the device's working certificate
    assert registry.retired[cert_id(2)] == "same_key"


def test_rotating_twice(registry: InMemoryRegistry) -> None:
    assert rotate(registry, request(2, "k2")) is Reason.ALLOWED_ROTATION
    registry.certificates[cert_id(2)] = "ACTIVE"
    registry.things[THING].add(cert_id(2))
    # The device connected with certificate 2 and rotates again before the retirer ran: 1 is retired now.
    decision = decide(request(3, "k3", requester=cert_id(2)), SETTINGS, registry, now_ms=NOW + 5000)
    assert decision.reason is Reason.ALLOWED_ROTATION and CURRENT in decision.detail
    record = registry.serials[SERIAL]
    assert (record.certificate_id, record.rotating_from, record.rotation_started_at) == (
        cert_id(3),
        cert_id(2),
        NOW + 5000,
    )
    assert registry.certificates[CURRENT] == "INACTIVE" and registry.retired[CURRENT] == "rotated"


@pytest.mark.parametrize(
    ("event_args", "why"),
    [
        ({"requester": CLAIM_ID}, "not the thing's current one"),  # the claim credential
        ({"requester": cert_id(9)}, "not the thing's current one"),  # another thing's certificate
        ({"client_id": "prov-SN-000001"}, "is not the thing"),
        ({"client_id": "device-SN-000002"}, "is not the thing"),
    ],
)
def test_only_the_thing_itself_may_rotate(registry: InMemoryRegistry, event_args: dict, why: str) -> None:  # type: ignore[type-arg]
    registry.certificates[cert_id(9)] = "ACTIVE"
    decision = decide(request(2, "k2", **event_args), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.ROTATION_REFUSED and why in decision.detail
    assert registry.serials[SERIAL].certificate_id == CURRENT


def test_a_device_cannot_rotate_for_another_thing(registry: InMemoryRegistry) -> None:
    """Its own certificate, asking for another serial's thing (and with that thing's client id)."""
    registry.add_serial(
        "SN-000002",
        status="RESERVED",
        certificate_id=cert_id(5),
        reserved_at=NOW,
        reserved_key_sha256=key_sha256("k5"),
    )
    registry.things["device-SN-000002"] = {cert_id(5)}
    decision = decide(
        request(2, "k2", serial="SN-000002", client_id="device-SN-000002"), SETTINGS, registry, now_ms=NOW
    )
    assert decision.reason is Reason.ROTATION_REFUSED


@pytest.mark.parametrize(("status", "attached"), [("INACTIVE", True), ("REVOKED", True), ("ACTIVE", False)])
def test_the_requesting_certificate_must_be_active_and_attached(
    registry: InMemoryRegistry, status: str, attached: bool
) -> None:
    registry.certificates[CURRENT] = status
    if not attached:
        registry.things[THING] = set()
    assert rotate(registry, request(2, "k2")) is Reason.ROTATION_REFUSED


def test_a_revoked_serial_cannot_rotate(registry: InMemoryRegistry) -> None:
    registry.serials[SERIAL] = dataclasses.replace(registry.serials[SERIAL], status="REVOKED")
    assert rotate(registry, request(2, "k2")) is Reason.REVOKED


def test_a_serial_not_yet_provisioned_cannot_rotate(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000003")
    assert (
        rotate(registry, request(2, "k2", serial="SN-000003", client_id="device-SN-000003"))
        is Reason.ROTATION_REFUSED
    )


def test_the_new_key_must_be_new(registry: InMemoryRegistry) -> None:
    decision = decide(request(2, "k1"), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.KEY_NOT_NEW


def test_the_rotation_certificate_must_name_the_serial(registry: InMemoryRegistry) -> None:
    raw = load_event(
        "register_thing",
        serial=SERIAL,
        certificate_id=cert_id(2),
        claim_id=CURRENT,
        key="k2",
        common_name="OTHER",
    )
    raw["clientId"] = THING
    raw["templateArn"] = f"arn:aws:iot:us-east-1:123456789012:provisioningtemplate/{ROTATION}"
    assert decide(HookEvent.model_validate(raw), SETTINGS, registry, now_ms=NOW).reason is Reason.CN_MISMATCH


def test_a_device_parameter_is_refused_in_rotation_too(registry: InMemoryRegistry) -> None:
    event = request(2, "k2").model_copy(update={"parameters": {"SerialNumber": SERIAL, "model": "X9"}})
    assert rotate(registry, event) is Reason.UNEXPECTED_PARAMETER


def test_the_provisioning_template_keeps_its_rules(registry: InMemoryRegistry) -> None:
    """Asked through the provisioning template, the same request is a clone of a provisioned serial."""
    assert rotate(registry, request(2, "k2", template="FleetProvisioningTemplate")) is Reason.TAKEN
