"""The retirer's other paths, end to end: the grace (its schedule) retires the old certificate of a device
that never reconnected, and abandons a rotation whose new certificate never became ACTIVE; AWS IoT's
lifecycle events reach a subscriber whose policy allows them, and no one else."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from device_sim.errors import DeviceFailure
from tests.device_sim.conftest import Emulator
from tests.rotation.support import (
    attached,
    certificate_item,
    connects,
    half_rotation,
    identity_of,
    provisioned,
    serial_item,
    status,
    transport,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rotation-e2e")]
GRACE_S = 60  # the stack's rotation.grace_s (tests/rotation/conftest.py)


def backdate(emulator: Emulator, serial: str) -> None:
    """The rotation started longer ago than its grace (rather than waiting the minute)."""
    started = int(time.time() * 1000) - (GRACE_S + 5) * 1000
    emulator.client("dynamodb").update_item(
        TableName=emulator.data["serial_table"],
        Key={"pk": {"S": f"serial#{serial}"}},
        UpdateExpression="SET rotation_started_at = :started",
        ExpressionAttributeValues={":started": {"N": str(started)}},
    )


def test_the_grace_retires_the_old_certificate_of_a_device_that_never_reconnected(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    device = provisioned(rotation_emulator, tmp_path)
    before = identity_of(device)
    old_certificate, old_key = (
        (device / "certificate.pem").read_bytes(),
        (device / "private.key").read_bytes(),
    )
    issued = half_rotation(rotation_emulator, before, wait_for_reply=True)  # ...and never connects with it
    time.sleep(1.5)  # a sweep or more within the grace: nothing happens
    assert status(rotation_emulator, before.certificate_id) == "ACTIVE"
    assert serial_item(rotation_emulator, before.serial)["rotation_pending"] == "1"

    backdate(rotation_emulator, before.serial)
    wait_for("grace retirement", lambda: status(rotation_emulator, before.certificate_id) == "INACTIVE")
    assert attached(rotation_emulator, before.thing_name) == {issued.certificate_id}
    assert certificate_item(rotation_emulator, before.certificate_id)["retired_reason"] == "grace_expired"
    item = serial_item(rotation_emulator, before.serial)
    assert item["certificate_id"] == issued.certificate_id and "rotation_pending" not in item
    assert not connects(rotation_emulator, old_certificate, old_key, before.thing_name)
    new_key = (device / "rotation" / "private.key").read_bytes()  # what `rotate` kept for this case
    assert connects(rotation_emulator, issued.certificate_pem.encode(), new_key, before.thing_name)


def test_a_rotation_whose_new_certificate_never_became_active_is_abandoned(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    device = provisioned(rotation_emulator, tmp_path)
    before = identity_of(device)
    issued = half_rotation(rotation_emulator, before, wait_for_reply=True)
    # The hook recorded the rotation, but its certificate is not ACTIVE (a template that failed after the
    # hook allowed it leaves it so).
    iot = rotation_emulator.client("iot")
    iot.update_certificate(certificateId=issued.certificate_id, newStatus="PENDING_ACTIVATION")
    backdate(rotation_emulator, before.serial)
    wait_for(
        "rotation abandoned", lambda: "rotation_pending" not in serial_item(rotation_emulator, before.serial)
    )
    item = serial_item(rotation_emulator, before.serial)
    assert item["certificate_id"] == before.certificate_id  # the old certificate is the serial's again
    assert (
        item["reserved_key_sha256"]
        == certificate_item(rotation_emulator, before.certificate_id)["key_sha256"]
    )
    assert certificate_item(rotation_emulator, issued.certificate_id)["retired_reason"] == "abandoned"
    assert status(rotation_emulator, before.certificate_id) == "ACTIVE"
    key = (device / "private.key").read_bytes()
    assert connects(rotation_emulator, (device / "certificate.pem").read_bytes(), key, before.thing_name)


def test_lifecycle_events_reach_only_a_subscriber_the_policy_allows(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    monitor, other = (identity_of(provisioned(rotation_emulator, tmp_path)) for _ in range(2))
    iot, data = rotation_emulator.client("iot"), rotation_emulator.data
    prefix = f"arn:aws:iot:{data['region']}:{data['account_id']}"
    policy = f"monitor-{monitor.serial}"
    iot.create_policy(
        policyName=policy,
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Subscribe",
                        "Resource": f"{prefix}:topicfilter/$aws/events/*",
                    },
                    {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{prefix}:topic/$aws/events/*"},
                ],
            }
        ),
    )
    arn = iot.describe_certificate(certificateId=monitor.certificate_id)["certificateDescription"][
        "certificateArn"
    ]
    iot.attach_policy(policyName=policy, target=arn)
    heard: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            heard.append((topic, json.loads(payload)))

    async def watch() -> None:
        via = transport(rotation_emulator)
        watcher = via.device_connection(monitor.key.tls_options(monitor.certificate_pem), monitor.thing_name)
        await via.connect(watcher, "connect")
        bystander = via.device_connection(other.key.tls_options(other.certificate_pem), other.thing_name)
        try:
            await watcher.subscribe(
                ["$aws/events/presence/connected/+", "$aws/events/presence/disconnected/+"],
                on_message,
                "watch",
            )
            await via.connect(bystander, "connect")  # its device policy does not allow the events
            with pytest.raises(DeviceFailure) as refused:
                await bystander.subscribe(["$aws/events/presence/connected/+"], None, "watch")
            assert refused.value.kind == "subscribe_refused"
            await via.disconnect(bystander)
            for _ in range(50):
                with lock:
                    if sum(e["clientId"] == other.thing_name for _, e in heard) >= 2:
                        break
                await asyncio.sleep(0.1)
        finally:
            await via.disconnect(watcher)

    asyncio.run(watch())
    events = [(topic, event) for topic, event in heard if event["clientId"] == other.thing_name]
    assert [topic for topic, _ in events] == [
        f"$aws/events/presence/connected/{other.thing_name}",
        f"$aws/events/presence/disconnected/{other.thing_name}",
    ]
    (_, connected), (_, disconnected) = events
    assert connected["principalIdentifier"] == other.certificate_id == disconnected["principalIdentifier"]
    assert connected["sessionIdentifier"] == disconnected["sessionIdentifier"]
    assert connected["ipAddress"] == "127.0.0.1"
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert disconnected["clientInitiatedDisconnect"] is True
