"""Who cannot rotate, end to end with the real hook: a device for another thing, the claim credential for
anyone, a revoked serial. Every refusal is AWS's AccessDenied (or the connection closed by the policy), and
the device keeps a working identity."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.device import RetryPolicy
from device_sim.device_dir import DeviceIdentity
from device_sim.errors import DeviceFailure, Rejected
from device_sim.identity import identity_client
from device_sim.keys import MemoryKey
from device_sim.rotation import RotateOptions, rotate_device
from fleetctl.cli import app as fleetctl
from tests.device_sim.conftest import Emulator
from tests.rotation.support import (
    attached,
    connects,
    identity_of,
    new_serials,
    provisioned,
    rotate,
    serial_item,
    transport,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rotation-e2e")]


def attempt(emulator: Emulator, identity: DeviceIdentity) -> BaseException | None:
    options = RotateOptions(emulator.data["rotation_template_name"], retry=RetryPolicy(attempts=1))
    try:
        asyncio.run(rotate_device(transport(emulator), identity, options))
    except (Rejected, DeviceFailure) as exc:
        return exc
    return None


def test_a_device_cannot_rotate_for_another_thing(rotation_emulator: Emulator, tmp_path: Path) -> None:
    mine, theirs = (identity_of(provisioned(rotation_emulator, tmp_path)) for _ in range(2))
    # A copy of my directory: what an attack attempt keeps must not touch the real one.
    copy = shutil.copytree(mine.directory, tmp_path / "attacker")
    me = dataclasses.replace(mine, directory=Path(copy))
    their_item = serial_item(rotation_emulator, theirs.serial)

    # My certificate and my client id, asking for their serial (a CSR with their CN): the hook refuses.
    refused = attempt(rotation_emulator, dataclasses.replace(me, serial=theirs.serial))
    assert isinstance(refused, Rejected) and (refused.operation, refused.error_code) == (
        "RegisterThing",
        "AccessDenied",
    )
    # My certificate under their client id: the device policy refuses the connection itself.
    refused = attempt(
        rotation_emulator, dataclasses.replace(me, serial=theirs.serial, thing_name=theirs.thing_name)
    )
    assert isinstance(refused, DeviceFailure) and refused.step == "connect"

    assert serial_item(rotation_emulator, theirs.serial) == their_item
    assert attached(rotation_emulator, theirs.thing_name) == {theirs.certificate_id}
    log = rotation_emulator.log_path.read_text()
    assert f"is not the thing {theirs.thing_name}" in log  # the hook's reason, in its own log line
    assert f"connect refused client={theirs.thing_name} cert={mine.certificate_id[:12]}" in log


def test_the_claim_credential_cannot_rotate_anyone(rotation_emulator: Emulator, tmp_path: Path) -> None:
    """The claim policy allows its own template only: it may not even subscribe to the rotation's replies,
    and a rotation request closes its connection. (Past the policy, the hook refuses a requester that is
    not the thing's certificate: tests/hook/test_rotation.py.)"""
    victim = identity_of(provisioned(rotation_emulator, tmp_path))
    template = rotation_emulator.data["rotation_template_name"]
    topic = f"$aws/provisioning-templates/{template}/provision/json"

    async def as_the_claim(raw: bool) -> BaseException | None:
        via = transport(rotation_emulator)
        connection = via.claim_connection(via.target.claim_client_id(victim.serial))
        await via.connect(connection, "claim_connect")
        try:
            client = identity_client("json", connection, via.timeout_s)
            issued = await client.create_certificate_from_csr(MemoryKey().csr_pem(victim.serial))
            request = {
                "certificateOwnershipToken": issued.ownership_token,
                "parameters": {"SerialNumber": victim.serial},
            }
            if raw:  # no reply subscription: straight to the request topic
                await via.publish(connection, topic, json.dumps(request).encode(), "register_thing")
            else:
                await client.register_thing(template, issued.ownership_token, request["parameters"])
        except (Rejected, DeviceFailure) as exc:
            return exc
        finally:
            await via.disconnect(connection)
        return None

    refused = asyncio.run(as_the_claim(raw=False))
    assert isinstance(refused, DeviceFailure), refused
    log = rotation_emulator.log_path.read_text()
    assert f"subscribe refused client=prov-{victim.serial} filter={topic}/" in log
    refused = asyncio.run(as_the_claim(raw=True))
    assert isinstance(refused, DeviceFailure), refused
    assert f"AUTHORIZATION_FAILURE publish to {topic}" in rotation_emulator.log_path.read_text()
    assert serial_item(rotation_emulator, victim.serial)["certificate_id"] == victim.certificate_id
    assert attached(rotation_emulator, victim.thing_name) == {victim.certificate_id}


def test_a_revoked_serial_cannot_rotate(rotation_emulator: Emulator, tmp_path: Path) -> None:
    device = provisioned(rotation_emulator, tmp_path)
    before = identity_of(device)
    revoked = CliRunner().invoke(
        fleetctl,
        ["registry", "revoke", before.serial, "--endpoint-file", str(rotation_emulator.endpoint_file)],
    )
    assert revoked.exit_code == 0, revoked.output
    result = rotate(rotation_emulator, device)
    assert result.exit_code == 1
    assert result.stderr.startswith("rejected: RegisterThing: AccessDenied (403)")
    assert "keeps its certificate" in result.stderr
    # The device keeps its identity (revoke without --deactivate leaves it working), and nothing changed.
    assert json.loads((device / "identity.json").read_text())["certificate_id"] == before.certificate_id
    key = (device / "private.key").read_bytes()
    assert connects(rotation_emulator, (device / "certificate.pem").read_bytes(), key, before.thing_name)
    assert attached(rotation_emulator, before.thing_name) == {before.certificate_id}
    assert "hook_reason=REVOKED" in rotation_emulator.log_path.read_text()


def test_a_serial_never_provisioned_has_no_identity_to_rotate(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    (serial,) = new_serials(rotation_emulator, 1)
    result = rotate(rotation_emulator, tmp_path / serial)
    assert result.exit_code == 2 and "holds no provisioned device" in result.stderr
