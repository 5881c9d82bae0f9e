"""The certificate retirer against moto: after a rotation, the old certificate goes once the new one has
connected, or when the grace is over; a rotation whose new certificate never worked is abandoned, never
leaving the thing without a working certificate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from .support import REGION, TABLE, get_certificate_item, get_serial_item

SERIAL, THING, POLICY = "SN-000001", "device-SN-000001", "device-policy"
RETIRER_ENV = {
    "SERIAL_TABLE_NAME": TABLE,
    "THING_NAME_PREFIX": "device-",
    "DEVICE_POLICY_NAME": POLICY,
    "ROTATION_GRACE_S": "3600",
    "EXPIRING_WITHIN_DAYS": "30",
    "ROTATIONS_INDEX": "rotations",
    "POWERTOOLS_SERVICE_NAME": "certificate-retirer",
    "POWERTOOLS_METRICS_NAMESPACE": "FleetProvisioningTest",
}


@pytest.fixture
def rotation(dynamodb: Any, iot: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """SN-000001 mid-rotation: its thing holds the old certificate (ACTIVE, device policy) and the new one
    (ACTIVE, as the rotation template left it); the serial names the new one and `rotating_from` the old."""
    for name, value in RETIRER_ENV.items():
        monkeypatch.setenv(name, value)
    dynamodb.update_table(
        TableName=TABLE,
        AttributeDefinitions=[
            {"AttributeName": "rotation_pending", "AttributeType": "S"},
            {"AttributeName": "rotation_started_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "rotations",
                    "KeySchema": [
                        {"AttributeName": "rotation_pending", "KeyType": "HASH"},
                        {"AttributeName": "rotation_started_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            }
        ],
    )
    iot.create_policy(policyName=POLICY, policyDocument='{"Version": "2012-10-17", "Statement": []}')
    iot.create_thing(thingName=THING)
    old, new = (iot.create_keys_and_certificate(setAsActive=True) for _ in range(2))
    for certificate in (old, new):
        iot.attach_thing_principal(thingName=THING, principal=certificate["certificateArn"])
        iot.attach_policy(policyName=POLICY, target=certificate["certificateArn"])
    started = int(time.time() * 1000)
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"serial#{SERIAL}"},
            "serial": {"S": SERIAL},
            "status": {"S": "RESERVED"},
            "thing_name": {"S": THING},
            "certificate_id": {"S": new["certificateId"]},
            "reserved_key_sha256": {"S": "b" * 64},
            "rotating_from": {"S": old["certificateId"]},
            "rotating_from_key_sha256": {"S": "a" * 64},
            "rotation_pending": {"S": "1"},
            "rotation_started_at": {"N": str(started)},
        },
    )
    yield {"old": old["certificateId"], "new": new["certificateId"], "started": str(started)}


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    from certificate_retirer.handler import lambda_handler

    return lambda_handler(event, None)


def status(iot: Any, certificate_id: str) -> str:
    return iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]  # type: ignore[no-any-return]


def attached(iot: Any) -> set[str]:
    return {arn.rsplit("/", 1)[-1] for arn in iot.list_thing_principals(thingName=THING)["principals"]}


def connected(certificate_id: str, client_id: str = THING) -> dict[str, Any]:
    """AWS IoT's lifecycle event (life-cycle-events.html), as the topic rule hands it on."""
    return {
        "clientId": client_id,
        "timestamp": int(time.time() * 1000),
        "eventType": "connected",
        "sessionIdentifier": "a4666d2a7d844ae4ac5d7b38c9cb7967",
        "principalIdentifier": certificate_id,
        "ipAddress": "192.0.2.0",
        "versionNumber": 0,
    }


def test_the_new_certificate_connecting_retires_the_old(
    rotation: dict[str, str], dynamodb: Any, iot: Any
) -> None:
    assert invoke(connected(rotation["new"]))["retired"] == [rotation["old"]]
    assert status(iot, rotation["old"]) == "INACTIVE" and status(iot, rotation["new"]) == "ACTIVE"
    assert attached(iot) == {rotation["new"]}
    old_arn = iot.describe_certificate(certificateId=rotation["old"])["certificateDescription"][
        "certificateArn"
    ]
    assert iot.list_attached_policies(target=old_arn)["policies"] == []
    item = get_serial_item(dynamodb, SERIAL)
    assert item is not None and item["certificate_id"]["S"] == rotation["new"]
    assert not {"rotating_from", "rotation_pending", "rotation_started_at"} & set(item)
    history = get_certificate_item(dynamodb, rotation["old"])
    assert history is not None and history["retired_reason"]["S"] == "rotated"
    # A duplicate event (AWS may send one) finds nothing left to do.
    assert invoke(connected(rotation["new"]))["retired"] == []


def test_the_old_certificate_connecting_changes_nothing(rotation: dict[str, str], iot: Any) -> None:
    for event in (connected(rotation["old"]), connected(rotation["new"], client_id="prov-SN-000001")):
        assert invoke(event) == {"retired": [], "abandoned": [], "expiring": None}
    assert status(iot, rotation["old"]) == "ACTIVE" and attached(iot) == {rotation["old"], rotation["new"]}


def test_the_grace_retires_the_old_once_the_new_works(
    rotation: dict[str, str], dynamodb: Any, iot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke({"action": "sweep"})["retired"] == []  # within the grace
    monkeypatch.setenv("ROTATION_GRACE_S", "1")
    time.sleep(1.1)
    assert invoke({"action": "sweep"})["retired"] == [rotation["old"]]
    assert status(iot, rotation["old"]) == "INACTIVE" and attached(iot) == {rotation["new"]}
    assert get_certificate_item(dynamodb, rotation["old"])["retired_reason"]["S"] == "grace_expired"  # type: ignore[index]


def test_a_rotation_whose_new_certificate_never_worked_is_abandoned(
    rotation: dict[str, str], dynamodb: Any, iot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rotation's answer was lost and the device never retried: its old certificate is all it has."""
    iot.update_certificate(certificateId=rotation["new"], newStatus="PENDING_ACTIVATION")
    monkeypatch.setenv("ROTATION_GRACE_S", "1")
    time.sleep(1.1)
    assert invoke({"action": "sweep"}) == {"retired": [], "abandoned": [SERIAL], "expiring": None}
    assert status(iot, rotation["old"]) == "ACTIVE"
    item = get_serial_item(dynamodb, SERIAL)
    assert item is not None and item["certificate_id"]["S"] == rotation["old"]
    assert item["reserved_key_sha256"]["S"] == "a" * 64 and "rotating_from" not in item
    assert get_certificate_item(dynamodb, rotation["new"])["retired_reason"]["S"] == "abandoned"  # type: ignore[index]


def test_expiring_counts_current_certificates_that_expire_soon(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in RETIRER_ENV.items():
        monkeypatch.setenv(name, value)
    now = int(time.time() * 1000)
    for n, days in enumerate((1, 10, 29, 31, 400)):
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"serial#SN-E{n}"},
                "serial": {"S": f"SN-E{n}"},
                "status": {"S": "RESERVED"},
                "certificate_expires_at": {"N": str(now + days * 86_400_000)},
            },
        )
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "serial#SN-FREE"}, "status": {"S": "AVAILABLE"}})
    assert invoke({"action": "expiring"})["expiring"] == 3


def test_other_events_are_ignored(rotation: dict[str, str]) -> None:
    assert invoke({"eventType": "disconnected", "clientId": THING}) == {"ignored": True}
    assert invoke({}) == {"ignored": True}


@pytest.fixture(autouse=True)
def _boto_clients_in_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from certificate_retirer import store

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(store, "_clients", {})  # each test's moto, not an earlier test's client
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def test_certificates_the_hook_superseded_are_detached_too(
    rotation: dict[str, str], dynamodb: Any, iot: Any
) -> None:
    """A second rotation before the retirer ran (or a retry after a lost answer): the hook deactivated the
    certificate it superseded but cannot detach it; the retirer leaves the thing its current one only.
    An ACTIVE certificate someone else attached is not the retirer's to touch."""
    superseded, foreign = (iot.create_keys_and_certificate(setAsActive=True) for _ in range(2))
    for certificate in (superseded, foreign):
        iot.attach_thing_principal(thingName=THING, principal=certificate["certificateArn"])
    iot.attach_policy(policyName=POLICY, target=superseded["certificateArn"])
    iot.update_certificate(certificateId=superseded["certificateId"], newStatus="INACTIVE")
    outcome = invoke(connected(rotation["new"]))
    assert outcome["retired"] == [rotation["old"]] and outcome["detached"] == [superseded["certificateId"]]
    assert attached(iot) == {rotation["new"], foreign["certificateId"]}
    assert iot.list_attached_policies(target=superseded["certificateArn"])["policies"] == []
    assert status(iot, foreign["certificateId"]) == "ACTIVE"


def test_clients_are_built_once_and_not_for_a_connection_that_is_not_a_thing(
    rotation: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule invokes the retirer on every connection of the fleet: a claim's costs no AWS client, and
    a thing's reuses the process's (building a boto3 client is ~100 ms of CPU; it was two per event)."""
    from certificate_retirer import store

    monkeypatch.setattr(store, "_clients", {})
    built: list[str] = []
    real_client = boto3.session.Session.client

    def counting(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        built.append(service)
        return real_client(self, service, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", counting)
    assert invoke(connected(rotation["new"], client_id="prov-SN-000001"))["retired"] == []
    assert built == []
    assert invoke(connected(rotation["old"]))["retired"] == []  # a thing still on its old certificate
    assert invoke(connected(rotation["new"]))["retired"] == [rotation["old"]]
    assert sorted(built) == ["dynamodb", "iot"]
