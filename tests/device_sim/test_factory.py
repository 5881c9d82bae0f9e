"""The factory's test station: keys per serial (memory and SoftHSM2), the manifest fleetctl imports, and the
`--keys-dir` checks of provision and fleet (no emulator: they fail before anything connects)."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto import mock_aws
from typer.testing import CliRunner

import device_sim.factory_cli
from device_sim.cli import app
from device_sim.factory import KeysDir, KeyStore
from device_sim.keys import MemoryKey
from device_sim.pkcs11_store import find_softhsm
from fleetctl.cli import app as fleetctl_app
from fleetctl.fingerprint import public_key_sha256
from tests.device_sim.conftest import REPO_ROOT
from tests.device_sim.pki import Authority, write_pki
from tests.device_sim.test_cli_errors import endpoint_file, free_port, one_line_error
from tests.hook.support import HOOK_ENV, REGION, TABLE, create_table

runner = CliRunner()
needs_softhsm = pytest.mark.skipif(
    find_softhsm() is None, reason="SoftHSM2 is not installed (apt-get install softhsm2)"
)


def factory(*args: str) -> Any:
    return runner.invoke(app, ["factory", *args])


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_memory_keys_are_private_files_and_the_manifest_holds_their_fingerprints(tmp_path: Path) -> None:
    keys, manifest = tmp_path / "station" / "keys", tmp_path / "out" / "manifest.csv"
    result = factory(
        "--devices",
        "3",
        "--serial-prefix",
        "FAB-",
        "--keys-dir",
        str(keys),
        "--manifest",
        str(manifest),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"keys_dir": "", "manifest": ""} == {
        "serials": 3,
        "made": 3,
        "kept": 0,
        "key_store": "memory",
        "keys_dir": "",
        "manifest": "",
    }
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    rows = read_manifest(manifest)
    assert [r["serial"] for r in rows] == ["FAB-000000", "FAB-000001", "FAB-000002"]
    assert list(rows[0]) == ["serial", "public_key_sha256"]
    for row in rows:
        path = keys / f"{row['serial']}.key.pem"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert row["public_key_sha256"] == public_key_sha256(key.public_key())
    manifest_text = manifest.read_text()
    assert "PRIVATE" not in manifest_text and not list(manifest.parent.glob("*.partial"))

    # A second run finds the same keys: a key once published is never replaced.
    again = factory(
        "--devices",
        "4",
        "--serial-prefix",
        "FAB-",
        "--keys-dir",
        str(keys),
        "--manifest",
        str(manifest),
        "--json",
    )
    assert (json.loads(again.stdout)["made"], json.loads(again.stdout)["kept"]) == (1, 3)
    assert read_manifest(manifest)[:3] == rows


def test_key_fingerprint_is_the_csrs(tmp_path: Path) -> None:
    station = KeysDir.create(tmp_path / "k", KeyStore.memory, pkcs11_pin="1234")
    key, made = station.make("SN-000001")
    assert made and isinstance(key, MemoryKey)
    csr = x509.load_pem_x509_csr(key.csr_pem("SN-000001").encode())
    assert key.public_key_sha256() == public_key_sha256(csr.public_key())
    assert station.load("SN-000001").public_key_sha256() == key.public_key_sha256()
    assert station.missing(["SN-000002", "SN-000001", "SN-000003"]) == ["SN-000002", "SN-000003"]


def test_the_manifest_is_what_fleetctl_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serials = tmp_path / "serials.csv"
    serials.write_text("serial,model\nSN-000010,X1\nSN-000011,X1\n")
    manifest = tmp_path / "manifest.csv"
    result = factory(
        "--serials",
        str(serials),
        "--keys-dir",
        str(tmp_path / "k"),
        "--manifest",
        str(manifest),
        "--batch",
        "LINE-A",
    )
    assert result.exit_code == 0, result.output
    rows = read_manifest(manifest)
    for name, value in HOOK_ENV.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_table(dynamodb)
        imported = CliRunner().invoke(
            fleetctl_app,
            ["registry", "import", str(manifest), "--table", TABLE, "--region", REGION, "--json"],
        )
        assert imported.exit_code == 0, imported.output
        assert json.loads(imported.stdout)["new"] == 2
        for row in rows:
            item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"serial#{row['serial']}"}})["Item"]
            assert (
                item["public_key_sha256"]["S"] == row["public_key_sha256"] and item["batch"]["S"] == "LINE-A"
            )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keys-dir", "k", "--manifest", "m.csv"], "give --serials FILE or --devices N"),
        (
            ["--devices", "2", "--keys-dir", "k", "--manifest", "k/m.csv"],
            "--manifest must be outside --keys-dir",
        ),
        (["--serials", "dup.txt", "--keys-dir", "k", "--manifest", "m.csv"], "'A001' appears twice"),
        (["--serials", "slash.txt", "--keys-dir", "k", "--manifest", "m.csv"], "cannot name a key"),
        (
            ["--devices", "2", "--keys-dir", "k", "--manifest", "m.csv", "--batch", "a b"],
            "not a valid batch name",
        ),
    ],
)
def test_factory_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dup.txt").write_text("A001\nA002\nA001\n")
    (tmp_path / "slash.txt").write_text("A001\n../escape\n")
    assert message in one_line_error(factory(*args))
    assert not (tmp_path / "m.csv").exists() and not list(tmp_path.glob("**/*.key.pem"))


def test_plain_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device_sim.factory_cli, "PLAIN_PROGRESS_EVERY_S", 0.0)
    result = factory(
        "--devices", "2", "--keys-dir", str(tmp_path / "k"), "--manifest", str(tmp_path / "m.csv")
    )
    assert result.exit_code == 0, result.output
    assert "factory: 1/2 keys (1 made)" in result.stderr and "factory: 2/2 keys (2 made)" in result.stderr


# -- provision / fleet --keys-dir: checked before anything connects ----------------------------------------


@pytest.fixture
def endpoint(tmp_path: Path) -> Path:
    return endpoint_file(tmp_path, free_port(), write_pki(tmp_path / "pki", Authority.create()))


@pytest.fixture
def station(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    assert (
        factory("--devices", "2", "--keys-dir", str(keys), "--manifest", str(tmp_path / "m.csv")).exit_code
        == 0
    )
    return keys


def test_provision_without_a_factory_key_is_one_error(endpoint: Path, station: Path) -> None:
    line = one_line_error(
        runner.invoke(
            app,
            [
                "provision",
                "--endpoint-file",
                str(endpoint),
                "--serial",
                "SIM-000009",
                "--keys-dir",
                str(station),
            ],
        )
    )
    assert line == (
        f"device-sim: --keys-dir {station} has no key for serial 'SIM-000009'; "
        "run `device-sim factory` for it first"
    )


def test_fleet_fails_fast_when_a_serial_has_no_key(endpoint: Path, station: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    args = [
        "fleet",
        "--endpoint-file",
        str(endpoint),
        "--devices",
        "5",
        "--keys-dir",
        str(station),
        "--report",
        str(report),
    ]
    line = one_line_error(runner.invoke(app, args))
    assert "has no key for 3 of 5 serials (first: SIM-000002)" in line
    assert not report.exists()  # nothing started: the endpoint (nothing listens there) was never tried


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--flow", "keys"], "--keys-dir needs --flow csr"),
        (["--key-store", "pkcs11"], "holds memory keys, not pkcs11"),
    ],
)
def test_provision_keys_dir_conflicts(endpoint: Path, station: Path, extra: list[str], message: str) -> None:
    args = [
        "provision",
        "--endpoint-file",
        str(endpoint),
        "--serial",
        "SIM-000000",
        "--keys-dir",
        str(station),
    ]
    assert message in one_line_error(runner.invoke(app, [*args, *extra]))


def test_keys_dir_that_the_factory_did_not_write(endpoint: Path, tmp_path: Path) -> None:
    args = [
        "provision",
        "--endpoint-file",
        str(endpoint),
        "--serial",
        "SIM-000000",
        "--keys-dir",
        str(tmp_path),
    ]
    assert "holds no factory keys" in one_line_error(runner.invoke(app, args))


# -- SoftHSM2: in a subprocess, since SoftHSM2 reads its configuration once per process --------------------

TOKEN_CHECK = """
import json, sys
from pathlib import Path
from cryptography import x509
from pkcs11 import Attribute, KeyType, ObjectClass
from device_sim.factory import KeysDir
from device_sim.pkcs11_store import _session
from fleetctl.fingerprint import public_key_sha256
station = KeysDir.open(Path(sys.argv[1]), None, pkcs11_pin="1234")
out = {}
for serial in sys.argv[2:]:
    key = station.load(serial)
    with _session(station.token) as session:
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=serial)
        flags = [private[Attribute.SENSITIVE], private[Attribute.EXTRACTABLE]]
    csr = x509.load_pem_x509_csr(key.csr_pem(serial).encode())
    csr_key = public_key_sha256(csr.public_key())
    out[serial] = {"token": key.public_key_sha256(), "csr": csr_key, "flags": flags}
print(json.dumps(out))
"""


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_softhsm
def test_pkcs11_keys_stay_in_the_token(tmp_path: Path) -> None:
    keys, manifest = tmp_path / "keys", tmp_path / "manifest.csv"
    made = run_python(
        "-m",
        "device_sim",
        "factory",
        "--devices",
        "2",
        "--key-store",
        "pkcs11",
        "--keys-dir",
        str(keys),
        "--manifest",
        str(manifest),
        "--json",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["made"] == 2
    rows = {r["serial"]: r["public_key_sha256"] for r in read_manifest(manifest)}
    assert not list(keys.glob("*.key.pem"))
    for path in keys.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".conf", ".csv", ".pem"):
            assert b"PRIVATE KEY" not in path.read_bytes()

    checked = run_python("-c", TOKEN_CHECK, str(keys), *rows)
    assert checked.returncode == 0, checked.stderr
    for serial, seen in json.loads(checked.stdout).items():
        assert seen["token"] == seen["csr"] == rows[serial]  # the token's key is the one the CSR carries
        assert seen["flags"] == [True, False]  # sensitive, not extractable

    again = run_python(
        "-m",
        "device_sim",
        "factory",
        "--devices",
        "2",
        "--key-store",
        "pkcs11",
        "--keys-dir",
        str(keys),
        "--manifest",
        str(manifest),
        "--json",
    )
    assert json.loads(again.stdout)["kept"] == 2
    assert {r["serial"]: r["public_key_sha256"] for r in read_manifest(manifest)} == rows
