"""`fleetctl registry import-manifest` with Microchip-style manifests made in the test (keys too)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fleetctl.cli import app
from fleetctl.fingerprint import public_key_sha256
from tests.hook.support import TABLE, get_serial_item, put_serial

from .conftest import TARGET
from .manifests import Authority, Chip, b64url, chips, der_b64, manifest, sign_entry

runner = CliRunner()


@pytest.fixture(scope="module")
def signer() -> Authority:
    return Authority("Example Manifest Signer")


@pytest.fixture
def signer_file(tmp_path: Path, signer: Authority) -> Path:
    path = tmp_path / "signer.pem"
    path.write_bytes(signer.pem())
    return path


def write(tmp_path: Path, entries: Any, name: str = "manifest.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def import_manifest(path: Path, *extra: str) -> Any:
    return runner.invoke(app, ["registry", "import-manifest", str(path), *TARGET, *extra])


def stored_keys(table: Any) -> dict[str, str]:
    items = table.scan(TableName=TABLE)["Items"]
    return {i["serial"]["S"]: i["public_key_sha256"]["S"] for i in items if "public_key_sha256" in i}


def one_line(result: Any, code: int = 1) -> str:
    """The one line of a refusal (1), or of a usage error (2: an option, a file that is not there)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_verified_manifest_imports_slot0_keys_by_unique_id(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    parts = chips(3)
    path = write(tmp_path, manifest(parts, signer))
    result = import_manifest(
        path, "--serial-from", "unique-id", "--verify-signer", str(signer_file), "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == 3
    assert stored_keys(table) == {p.unique_id: p.fingerprint for p in parts}
    item = get_serial_item(table, parts[0].unique_id)
    assert item is not None and item["status"]["S"] == "AVAILABLE" and "batch" not in item


def test_serial_from_certificate_cn_and_batch(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    parts = chips(2)
    path = write(tmp_path, manifest(parts, signer))
    args = ("--serial-from", "certificate-cn", "--batch", "REEL-7", "--verify-signer", str(signer_file))
    result = import_manifest(path, *args)
    assert result.exit_code == 0, result.output
    assert stored_keys(table) == {p.cn: p.fingerprint for p in parts}
    assert get_serial_item(table, parts[0].cn)["batch"]["S"] == "REEL-7"  # type: ignore[index]


def test_serial_map_gives_product_serials(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    parts = chips(2)
    path = write(tmp_path, manifest(parts, signer))
    serial_map = tmp_path / "map.csv"
    serial_map.write_text(
        f"unique_id,serial\n{parts[0].unique_id.upper()},SN-000001\n{parts[1].unique_id},SN-000002\n"
    )
    result = import_manifest(path, "--serial-map", str(serial_map), "--verify-signer", str(signer_file))
    assert result.exit_code == 0, result.output
    assert stored_keys(table) == {"SN-000001": parts[0].fingerprint, "SN-000002": parts[1].fingerprint}

    serial_map.write_text(f"unique_id,serial\n{parts[0].unique_id},SN-000001\n")
    path = write(tmp_path, manifest(parts, signer))
    line = one_line(
        import_manifest(path, "--serial-map", str(serial_map), "--verify-signer", str(signer_file))
    )
    assert f"entry 2: uniqueId {parts[1].unique_id} is not in the serial map" in line


def test_key_slot_picks_another_jwk(table: Any, tmp_path: Path, signer: Authority, signer_file: Path) -> None:
    (part,) = chips(1)
    path = write(tmp_path, manifest([part], signer))
    args = ("--serial-from", "unique-id", "--key-slot", "1", "--verify-signer", str(signer_file))
    assert import_manifest(path, *args).exit_code == 0
    assert stored_keys(table) == {part.unique_id: public_key_sha256(part.slot1.public_key())}
    # Slot 1 has no certificate, so it cannot name the serial.
    args = ("--serial-from", "certificate-cn", "--key-slot", "1", "--verify-signer", str(signer_file))
    assert "slot 1 has no certificate" in one_line(import_manifest(path, *args))


def tampered_payload(entry: dict[str, Any], change: Any) -> dict[str, Any]:
    element = json.loads(base64.urlsafe_b64decode(entry["payload"] + "=="))
    change(element)
    return {**entry, "payload": b64url(json.dumps(element).encode())}


def swap_slot0(element: dict[str, Any]) -> None:
    element["publicKeySet"]["keys"][0], element["publicKeySet"]["keys"][1] = (
        {**element["publicKeySet"]["keys"][1], "kid": "0"},
        {**element["publicKeySet"]["keys"][0], "kid": "1"},
    )


@pytest.mark.parametrize(
    ("break_entry", "reason"),
    [
        (lambda e, s: tampered_payload(e, swap_slot0), "signature does not verify"),
        (
            lambda e, s: sign_entry(
                json.loads(base64.urlsafe_b64decode(e["payload"] + "==")), Authority("rogue")
            ),
            "not given with --verify-signer",
        ),
        (
            lambda e, s: {**e, "header": {"uniqueId": "0123000000000000ff"}},
            "the unsigned header says uniqueId",
        ),
        (lambda e, s: {**e, "protected": b64url(b'{"alg":"none"}')}, "no x5t#S256"),
        (lambda e, s: {"signatures": [], "payload": e["payload"]}, "general-serialization"),
        (lambda e, s: "not an object", "not a JSON object"),
    ],
    ids=["tampered", "other-signer", "unsigned-header", "alg-none", "general", "not-object"],
)
def test_a_bad_entry_stops_everything(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path, break_entry: Any, reason: str
) -> None:
    parts = chips(3)
    entries = manifest(parts, signer)
    entries[1] = break_entry(entries[1], signer)
    path = write(tmp_path, entries)
    line = one_line(import_manifest(path, "--serial-from", "unique-id", "--verify-signer", str(signer_file)))
    assert "entry 2: " in line and reason in line and "nothing was written" in line, line
    assert table.scan(TableName=TABLE)["Count"] == 0


def test_hmac_or_none_with_the_signers_thumbprint_is_refused(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    """An attacker who knows the signer's public certificate forges a header naming it: alg must be EC."""
    (part,) = chips(1)
    entry = manifest([part], signer)[0]
    header = json.loads(base64.urlsafe_b64decode(entry["protected"] + "=="))
    for alg in ("none", "HS256"):
        forged = {**entry, "protected": b64url(json.dumps({**header, "alg": alg}).encode()), "signature": ""}
        line = one_line(
            import_manifest(
                write(tmp_path, [forged]), "--serial-from", "unique-id", "--verify-signer", str(signer_file)
            )
        )
        assert "signature does not verify" in line and alg in line
    assert table.scan(TableName=TABLE)["Count"] == 0


def test_x5c_must_certify_the_jwk_and_chain(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    part, other = chips(2)
    element = part.secure_element()
    element["publicKeySet"]["keys"][0]["x5c"] = other.secure_element()["publicKeySet"]["keys"][0]["x5c"]
    path = write(tmp_path, [sign_entry(element, signer)])
    line = one_line(import_manifest(path, "--serial-from", "unique-id", "--verify-signer", str(signer_file)))
    assert "x5c[0] is for another key" in line

    element = part.secure_element()
    element["publicKeySet"]["keys"][0]["x5c"][1] = der_b64(Authority("Not The Issuer").cert)
    path = write(tmp_path, [sign_entry(element, signer)])
    line = one_line(import_manifest(path, "--serial-from", "unique-id", "--verify-signer", str(signer_file)))
    assert "x5c is not a chain" in line


def test_duplicate_keys_and_serials_across_entries(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    one, two = chips(2)
    clone = Chip(two.unique_id, one.device_signer, key=one.key)
    path = write(tmp_path, manifest([one, clone], signer))
    line = one_line(import_manifest(path, "--serial-from", "unique-id", "--verify-signer", str(signer_file)))
    assert "entry 2: public_key_sha256 repeats entry 1" in line
    path = write(tmp_path, manifest([one, one], signer))
    line = one_line(import_manifest(path, "--serial-from", "unique-id", "--verify-signer", str(signer_file)))
    assert f"entry 2: serial '{one.unique_id}' repeats entry 1" in line


def test_skip_invalid_imports_the_good_entries(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    parts = chips(3)
    entries = manifest(parts, signer)
    entries[0] = tampered_payload(entries[0], swap_slot0)
    path = write(tmp_path, entries)
    args = ("--serial-from", "unique-id", "--verify-signer", str(signer_file), "--skip-invalid")
    result = import_manifest(path, *args)
    assert result.exit_code == 0, result.output
    assert "skipped entries (1)" in result.stdout
    assert set(stored_keys(table)) == {parts[1].unique_id, parts[2].unique_id}


def test_skip_signature_check_is_explicit(table: Any, tmp_path: Path, signer: Authority) -> None:
    parts = chips(2)
    path = write(tmp_path, manifest(parts, Authority("unknown signer")))
    line = one_line(import_manifest(path, "--serial-from", "unique-id"), code=2)
    assert "--verify-signer CERT.pem" in line and "--skip-signature-check" in line
    assert table.scan(TableName=TABLE)["Count"] == 0
    result = import_manifest(path, "--serial-from", "unique-id", "--skip-signature-check")
    assert result.exit_code == 0, result.output
    assert stored_keys(table) == {p.unique_id: p.fingerprint for p in parts}


def test_manifest_keeps_what_the_csv_said(
    table: Any, tmp_path: Path, signer: Authority, signer_file: Path
) -> None:
    (part,) = chips(1)
    put_serial(table, part.unique_id, batch="B1", attributes={"model": "X1"})
    path = write(tmp_path, manifest([part], signer))
    result = import_manifest(
        path, "--serial-from", "unique-id", "--verify-signer", str(signer_file), "--json"
    )
    assert json.loads(result.stdout)["updated"] == 1
    item = get_serial_item(table, part.unique_id)
    assert item is not None and item["public_key_sha256"]["S"] == part.fingerprint
    assert item["batch"]["S"] == "B1" and item["attributes"]["M"] == {"model": {"S": "X1"}}
    again = import_manifest(path, "--serial-from", "unique-id", "--verify-signer", str(signer_file), "--json")
    assert json.loads(again.stdout)["unchanged"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say where serials come from"),
        (("--serial-from", "unique-id", "--serial-map", "m.csv"), "say where serials come from"),
        (("--serial-from", "nonsense"), "expected unique-id or certificate-cn"),
        (("--serial-from", "unique-id", "--verify-signer", "nope.pem"), "nope.pem: no such file"),
        (
            ("--serial-from", "unique-id", "--skip-signature-check", "--batch", "a b"),
            "not a valid batch name",
        ),
    ],
)
def test_bad_options_are_one_line(
    table: Any, tmp_path: Path, signer: Authority, args: Any, message: str
) -> None:
    path = write(tmp_path, manifest(chips(1), signer))
    assert message in one_line(import_manifest(path, *args), code=2)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not JSON"), ('{"a": 1}', "a JSON array"), ("[]", "no entries")],
)
def test_bad_manifest_files_are_one_line(table: Any, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    assert message in one_line(import_manifest(path, "--serial-from", "unique-id", "--skip-signature-check"))
    gone = import_manifest(tmp_path / "gone.json", "--serial-from", "unique-id", "--skip-signature-check")
    assert "no such file" in one_line(gone, code=2)
