"""The factory's side of attestation end to end, against the emulator: the test station's manifest imports,
and each provisioned certificate carries the very key the registry holds the fingerprint of.

Today's hook does not yet compare the fingerprint; these tests prove the tooling's half (the key that crossed
the factory as a fingerprint is the key the device provisions with), the hook's denials are tested with it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from device_sim.cli import app
from device_sim.pkcs11_store import find_softhsm
from fleetctl.cli import app as fleetctl_app
from fleetctl.fingerprint import public_key_sha256
from tests.device_sim.conftest import REPO_ROOT, Emulator

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("device-sim-e2e")]
runner = CliRunner()


def new_serials(n: int, tmp_path: Path) -> tuple[list[str], Path]:
    tag = uuid.uuid4().hex[:8].upper()
    serials = [f"K{tag}{i:03d}" for i in range(n)]
    path = tmp_path / "serials.txt"
    path.write_text("\n".join(serials) + "\n")
    return serials, path


def manifest_keys(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        return {row["serial"]: row["public_key_sha256"] for row in csv.DictReader(handle)}


def import_manifest(emulator: Emulator, manifest: Path) -> None:
    result = CliRunner().invoke(
        fleetctl_app,
        ["registry", "import", str(manifest), "--endpoint-file", str(emulator.endpoint_file), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["invalid"] == 0


def provisioned_key(emulator: Emulator, serial: str) -> tuple[str, str]:
    """(registry fingerprint, fingerprint of the ACTIVE certificate AWS IoT holds for the serial)."""
    item = emulator.serial_item(serial)
    assert item is not None and item["status"] == "RESERVED", item
    description = emulator.client("iot").describe_certificate(certificateId=item["certificate_id"])
    certificate = x509.load_pem_x509_certificate(
        description["certificateDescription"]["certificatePem"].encode()
    )
    assert description["certificateDescription"]["status"] == "ACTIVE"
    return item["public_key_sha256"], public_key_sha256(certificate.public_key())


def test_memory_keys_from_the_factory_are_the_provisioned_keys(emulator: Emulator, tmp_path: Path) -> None:
    serials, serial_file = new_serials(3, tmp_path)
    keys, manifest = tmp_path / "keys", tmp_path / "manifest.csv"
    made = runner.invoke(
        app, ["factory", "--serials", str(serial_file), "--keys-dir", str(keys), "--manifest", str(manifest)]
    )
    assert made.exit_code == 0, made.output
    import_manifest(emulator, manifest)
    published = manifest_keys(manifest)

    out = tmp_path / "device"
    one = runner.invoke(
        app,
        [
            "provision",
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serial",
            serials[0],
            "--keys-dir",
            str(keys),
            "--out-dir",
            str(out),
            "--timeout-s",
            "20",
        ],
    )
    assert one.exit_code == 0, one.output
    kept = serialization.load_pem_private_key((out / "private.key").read_bytes(), None)
    assert public_key_sha256(kept.public_key()) == published[serials[0]]  # the device kept the factory's key

    rest = tmp_path / "rest.txt"
    rest.write_text("\n".join(serials[1:]) + "\n")
    fleet = runner.invoke(
        app,
        [
            "fleet",
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serials",
            str(rest),
            "--keys-dir",
            str(keys),
            "--concurrency",
            "2",
            "--report",
            str(tmp_path / "fleet.json"),
            "--no-progress",
        ],
    )
    assert fleet.exit_code == 0, fleet.output
    assert json.loads((tmp_path / "fleet.json").read_text())["provisioned"] == 2

    for serial in serials:
        registry_key, certificate_key = provisioned_key(emulator, serial)
        assert registry_key == certificate_key == published[serial]


def run_sim(*args: str) -> subprocess.CompletedProcess[str]:
    # A subprocess: SoftHSM2 reads its configuration once per process.
    return subprocess.run(
        [sys.executable, "-m", "device_sim", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.skipif(find_softhsm() is None, reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_token_keys_from_the_factory_are_the_provisioned_keys(emulator: Emulator, tmp_path: Path) -> None:
    serials, serial_file = new_serials(3, tmp_path)
    keys, manifest = tmp_path / "keys", tmp_path / "manifest.csv"
    made = run_sim(
        "factory",
        "--serials",
        str(serial_file),
        "--keys-dir",
        str(keys),
        "--manifest",
        str(manifest),
        "--key-store",
        "pkcs11",
    )
    assert made.returncode == 0, made.stderr
    import_manifest(emulator, manifest)
    published = manifest_keys(manifest)

    target = ("--endpoint-file", str(emulator.endpoint_file))
    out = tmp_path / "device"
    one = run_sim(
        "provision",
        *target,
        "--serial",
        serials[0],
        "--keys-dir",
        str(keys),
        "--out-dir",
        str(out),
        "--format",
        "cbor",
    )
    assert one.returncode == 0, one.stderr
    assert not (out / "private.key").exists()
    assert json.loads((out / "pkcs11.json").read_text())["key_label"] == serials[0]

    rest = tmp_path / "rest.txt"
    rest.write_text("\n".join(serials[1:]) + "\n")
    fleet = run_sim(
        "fleet",
        *target,
        "--serials",
        str(rest),
        "--keys-dir",
        str(keys),
        "--concurrency",
        "2",
        "--report",
        str(tmp_path / "fleet.json"),
        "--no-progress",
    )
    assert fleet.returncode == 0, fleet.stderr + fleet.stdout
    for serial in serials:
        registry_key, certificate_key = provisioned_key(emulator, serial)
        assert registry_key == certificate_key == published[serial]
