"""`device_sim rotate` and `fleet --rotate` against the emulator with the stack's real hook and retirer: the
new certificate connects, the old one is refused once retired, twice in a row, in CBOR and with the key in
a PKCS#11 token, a fleet kept on disk, and a run cut short after its RegisterThing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.cli import app as device_sim
from device_sim.fleet import GeneratedSerials
from device_sim.pkcs11_store import find_softhsm
from device_sim.rotation import ROTATION_STEPS
from tests.device_sim.conftest import REPO_ROOT, Emulator
from tests.rotation.support import (
    attached,
    certificate_item,
    connects,
    half_rotation,
    identity_of,
    new_serials,
    provisioned,
    rotate,
    serial_item,
    status,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rotation-e2e")]


def test_rotate_then_the_new_certificate_connects_and_the_old_one_is_refused(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    device = provisioned(rotation_emulator, tmp_path)
    before = identity_of(device)
    old_certificate, old_key = (
        (device / "certificate.pem").read_bytes(),
        (device / "private.key").read_bytes(),
    )

    result = rotate(rotation_emulator, device)
    assert result.exit_code == 0, result.output
    after = identity_of(device)
    assert result.stdout.strip() == after.certificate_id != before.certificate_id
    assert after.thing_name == before.thing_name and after.serial == before.serial
    assert (device / "private.key").read_bytes() != old_key  # a new key
    assert not (device / "rotation").exists()
    assert "rotated" in result.stderr and "first_publish" in result.stderr

    # The thing connected with its new certificate: the retirer (topic rule on the lifecycle event)
    # deactivates the old one and detaches it from the thing and the device policy.
    wait_for(
        "old certificate retired", lambda: status(rotation_emulator, before.certificate_id) == "INACTIVE"
    )
    assert status(rotation_emulator, after.certificate_id) == "ACTIVE"
    assert attached(rotation_emulator, after.thing_name) == {after.certificate_id}
    iot = rotation_emulator.client("iot")
    old_arn = iot.describe_certificate(certificateId=before.certificate_id)["certificateDescription"][
        "certificateArn"
    ]
    assert iot.list_attached_policies(target=old_arn)["policies"] == []
    assert not connects(rotation_emulator, old_certificate, old_key, before.thing_name)
    new_key = (device / "private.key").read_bytes()
    assert connects(rotation_emulator, (device / "certificate.pem").read_bytes(), new_key, after.thing_name)

    item = serial_item(rotation_emulator, after.serial)
    assert item["certificate_id"] == after.certificate_id and "rotation_pending" not in item
    history = certificate_item(rotation_emulator, before.certificate_id)
    assert history["retired_reason"] == "rotated"
    assert certificate_item(rotation_emulator, after.certificate_id)["issued_reason"] == "rotation"
    log = rotation_emulator.log_path.read_text()
    assert f"connect client={after.thing_name} cert={after.certificate_id[:12]}" in log


def test_rotating_twice_in_a_row_leaves_one_active_certificate(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    device = provisioned(rotation_emulator, tmp_path)
    ids = [identity_of(device).certificate_id]
    for _ in range(2):
        result = rotate(rotation_emulator, device)  # the second before the retirer may have run
        assert result.exit_code == 0, result.output
        ids.append(result.stdout.strip())
    assert len(set(ids)) == 3 and identity_of(device).certificate_id == ids[-1]
    thing = identity_of(device).thing_name
    wait_for("only the last certificate attached", lambda: attached(rotation_emulator, thing) == {ids[-1]})
    assert [status(rotation_emulator, c) for c in ids] == ["INACTIVE", "INACTIVE", "ACTIVE"]
    item = serial_item(rotation_emulator, identity_of(device).serial)
    assert item["certificate_id"] == ids[-1] and set(item["certificate_ids"]) == set(ids)


def test_rotate_in_cbor(rotation_emulator: Emulator, tmp_path: Path) -> None:
    device = provisioned(rotation_emulator, tmp_path)
    result = rotate(rotation_emulator, device, "--format", "cbor")
    assert result.exit_code == 0, result.output
    assert status(rotation_emulator, identity_of(device).certificate_id) == "ACTIVE"


def test_a_rotation_cut_short_after_its_register_thing_is_resumed(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    """The device sent RegisterThing and lost its connection before the reply (power, network). Its next run
    finds the new key and certificate it kept, and that certificate works: the rotation was applied."""
    device = provisioned(rotation_emulator, tmp_path)
    before = identity_of(device)
    issued = half_rotation(rotation_emulator, before, wait_for_reply=False)
    serial = before.serial
    wait_for(
        "rotation applied",
        lambda: serial_item(rotation_emulator, serial)["certificate_id"] == issued.certificate_id,
    )
    assert identity_of(device).certificate_id == before.certificate_id  # the old one is still the device's

    result = rotate(rotation_emulator, device)
    assert result.exit_code == 0, result.output
    assert "(resumed)" in result.stderr
    assert identity_of(device).certificate_id == issued.certificate_id
    wait_for(
        "old certificate retired", lambda: status(rotation_emulator, before.certificate_id) == "INACTIVE"
    )
    assert attached(rotation_emulator, before.thing_name) == {issued.certificate_id}


def test_fleet_keeps_identities_then_rotates_them_with_the_same_report(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    prefix = f"F{uuid.uuid4().hex[:6].upper()}-"
    serials = list(GeneratedSerials(prefix, 6))
    rotation_emulator.import_serials(serials)
    kept, endpoint = tmp_path / "identities", str(rotation_emulator.endpoint_file)
    common = ["--endpoint-file", endpoint, "--concurrency", "3", "--no-progress", "--timeout-s", "20"]
    first = CliRunner().invoke(
        device_sim,
        [
            "fleet",
            *common,
            "--devices",
            "6",
            "--serial-prefix",
            prefix,
            "--keep-identities",
            str(kept),
            "--report",
            str(tmp_path / "provision.json"),
        ],
    )
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in kept.iterdir()) == serials
    before = {s: identity_of(kept / s).certificate_id for s in serials}

    second = CliRunner().invoke(
        device_sim,
        [
            "fleet",
            *common,
            "--rotate",
            "--keep-identities",
            str(kept),
            "--report",
            str(tmp_path / "rotate.json"),
        ],
    )
    assert second.exit_code == 0, second.output
    assert "6 rotated" in second.stdout
    report = json.loads((tmp_path / "rotate.json").read_text())
    assert (report["devices"], report["provisioned"], report["failed"], report["rejected"]) == (6, 6, 0, 0)
    assert report["run"]["operation"] == "rotate"
    assert report["run"]["template_name"] == rotation_emulator.data["rotation_template_name"]
    assert set(report["latency_ms"]) == {"total", *ROTATION_STEPS}
    assert all(report["histograms"][step]["count"] == 6 for step in ROTATION_STEPS)
    for serial in serials:
        after = identity_of(kept / serial)
        assert after.certificate_id != before[serial]
        only = {after.certificate_id}
        wait_for(
            f"{after.thing_name}: one certificate",
            lambda t=after.thing_name, c=only: attached(rotation_emulator, t) == c,
        )
        assert status(rotation_emulator, before[serial]) == "INACTIVE"


def test_fleet_rotate_needs_its_identities(rotation_emulator: Emulator, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        device_sim,
        ["fleet", "--endpoint-file", str(rotation_emulator.endpoint_file), "--rotate", "--no-progress"],
    )
    assert result.exit_code == 2 and "--rotate needs --keep-identities DIR" in result.stderr


@pytest.mark.skipif(find_softhsm() is None, reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_rotate_with_the_key_in_a_pkcs11_token(rotation_emulator: Emulator, tmp_path: Path) -> None:
    """The new key is made in the same token; the old one is destroyed once the new identity connected.
    Subprocesses: SoftHSM2 reads its configuration once per process."""
    (serial,) = new_serials(rotation_emulator, 1)
    device = tmp_path / serial

    def device_sim_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                *args,
                "--endpoint-file",
                str(rotation_emulator.endpoint_file),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    made = device_sim_run("provision", "--serial", serial, "--out-dir", str(device), "--key-store", "pkcs11")
    assert made.returncode == 0, made.stderr
    old_label = json.loads((device / "pkcs11.json").read_text())["key_label"]
    old_id = json.loads((device / "identity.json").read_text())["certificate_id"]
    rotated = device_sim_run("rotate", "--device-dir", str(device))
    assert rotated.returncode == 0, rotated.stderr
    new_label = json.loads((device / "pkcs11.json").read_text())["key_label"]
    assert new_label != old_label and not (device / "private.key").exists()
    new_id = json.loads((device / "identity.json").read_text())["certificate_id"]
    assert rotated.stdout.strip() == new_id != old_id
    labels = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; "
            "from device_sim.pkcs11_store import prepare_softhsm_token, private_key_labels; "
            "print(' '.join(sorted(private_key_labels(prepare_softhsm_token(Path(sys.argv[1]))))))",
            str(device / "softhsm2"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert labels == [new_label]  # the old key is gone from the token
    wait_for("old certificate retired", lambda: status(rotation_emulator, old_id) == "INACTIVE")
