"""A serial reset while a rotation was pending, then provisioned again: the certificate that rotation
replaced (kept ACTIVE and attached by `registry reset --keep-certificate`) must not rotate the new device's
thing. Before the fix the new reservation kept the old `rotating_from`, which the rotation rules accept as
a requester (a retry after a lost reply), so the returned device could take its thing back."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from provisioning_hook.decision import decide
from provisioning_hook.models import HookEvent, Reason
from provisioning_hook.registry_memory import InMemoryRegistry
from provisioning_hook.settings import HookSettings

from .support import CLAIM_ID, cert_id, get_serial_item, key_sha256, load_event, put_serial, run_hook

NOW = 1_800_000_000_000
ROTATION = "FleetProvisioningTemplateRotation"
SERIAL, THING = "SN-000001", "device-SN-000001"
OLD = cert_id(7)  # the certificate a pending rotation replaced, before the serial was reset
STALE = {
    "rotating_from": {"S": OLD},
    "rotating_from_key_sha256": {"S": "a" * 64},
    "rotation_pending": {"S": "1"},
    "rotation_started_at": {"N": str(NOW)},
}


def rotation_request(cert: int, key: str, requester: str) -> HookEvent:
    raw = load_event(
        "register_thing", serial=SERIAL, certificate_id=cert_id(cert), claim_id=requester, key=key
    )
    raw["clientId"] = THING
    raw["templateArn"] = f"arn:aws:iot:us-east-1:123456789012:provisioningtemplate/{ROTATION}"
    return HookEvent.model_validate(raw)


def test_a_new_reservation_forgets_a_rotation_left_on_the_serial(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(dynamodb, SERIAL)
    dynamodb.update_item(
        TableName="fleet-serials",
        Key={"pk": {"S": f"serial#{SERIAL}"}},
        UpdateExpression="SET " + ", ".join(f"{name} = :{name}" for name in STALE),
        ExpressionAttributeValues={f":{name}": value for name, value in STALE.items()},
    )
    response, _ = run_hook(load_event("register_thing", certificate_id=cert_id(1)), capsys)
    assert response["allowProvisioning"] is True
    item = get_serial_item(dynamodb, SERIAL)
    assert item is not None and item["certificate_id"]["S"] == cert_id(1)
    assert not set(STALE) & set(item)


def test_the_certificate_a_reset_rotation_replaced_cannot_rotate_the_new_device() -> None:
    settings = HookSettings(
        table_name="t",
        serial_pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"),
        thing_name_prefix="device-",
        reservation_timeout_s=900,
        template_attributes=(),
        rotation_template_name=ROTATION,
    )
    registry = InMemoryRegistry()
    registry.add_serial(SERIAL)  # AVAILABLE again after the reset...
    registry.serials[SERIAL] = dataclasses.replace(  # ...with the pending rotation an older fleetctl left
        registry.serials[SERIAL],
        rotating_from=OLD,
        rotating_from_key_sha256="a" * 64,
        rotation_started_at=NOW,
    )
    registry.certificates |= {CLAIM_ID: "ACTIVE", OLD: "ACTIVE", cert_id(1): "ACTIVE"}
    provisioned = decide(load_event_model(cert_id(1)), settings, registry, now_ms=NOW)
    assert provisioned.reason is Reason.ALLOWED_NEW
    registry.things[THING] = {OLD, cert_id(1)}  # --keep-certificate left the old one attached and ACTIVE
    decision = decide(rotation_request(2, "k2", requester=OLD), settings, registry, now_ms=NOW + 1)
    assert decision.reason is Reason.ROTATION_REFUSED and "not the thing's current one" in decision.detail
    assert registry.serials[SERIAL].certificate_id == cert_id(1)
    assert registry.serials[SERIAL].reserved_key_sha256 != key_sha256("k2")


def load_event_model(certificate_id: str) -> HookEvent:
    return HookEvent.model_validate(
        load_event("register_thing", serial=SERIAL, certificate_id=certificate_id)
    )
