"""Device-key fingerprints in the registry: the import column, re-imports, show, stats, batch require-key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from fleetctl.cli import app
from fleetctl.fingerprint import normalise_fingerprint, public_key_sha256
from tests.hook.support import TABLE, get_serial_item, put_batch, put_serial

from .conftest import TARGET

runner = CliRunner()


def key_fingerprint() -> str:
    return public_key_sha256(ec.generate_private_key(ec.SECP256R1()).public_key())


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def run_import(tmp_path: Path, content: str, *extra: str) -> Any:
    path = tmp_path / "serials.csv"
    path.write_text(content)
    return cli("registry", "import", str(path), *TARGET, *extra)


def test_fingerprint_is_sha256_of_the_der_subject_public_key_info() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_sha256(key) == hashlib.sha256(der).hexdigest()
    assert len(public_key_sha256(key)) == 64 and public_key_sha256(key).islower()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ab" * 31, "not 64 hex digits"),
        ("ab" * 33, "not 64 hex digits"),
        ("zz" * 32, "not 64 hex digits"),
        (":".join(["AB"] * 32), "colons"),
        (" " + "ab" * 32, "not 64 hex digits"),
    ],
)
def test_bad_fingerprints_are_refused(text: str, problem: str) -> None:
    value, reason = normalise_fingerprint(text)
    assert value is None and reason is not None and problem in reason


def test_import_stores_the_fingerprint_on_the_serial_item(table: Any, tmp_path: Path) -> None:
    one, two = key_fingerprint(), key_fingerprint()
    content = f"serial,batch,public_key_sha256,model\nSN-000001,B1,{one},X1\nSN-000002,B1,{two.upper()},X1\n"
    content += "SN-000003,B1,,X1\n"
    result = run_import(tmp_path, content, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == 3
    item = get_serial_item(table, "SN-000001")
    assert item is not None and item["public_key_sha256"]["S"] == one
    assert item["attributes"]["M"] == {"model": {"S": "X1"}}  # not a thing attribute
    assert get_serial_item(table, "SN-000002")["public_key_sha256"]["S"] == two  # type: ignore[index]
    assert "public_key_sha256" not in get_serial_item(table, "SN-000003")  # type: ignore[operator]
    assert "unknown" not in result.stderr and "thing_attributes" not in result.stderr

    shown = cli("registry", "show", "SN-000001", *TARGET, "--json")
    assert json.loads(shown.stdout)["public_key_sha256"] == one
    assert one in cli("registry", "show", "SN-000001", *TARGET).stdout


@pytest.mark.parametrize(
    ("rows", "line", "reason"),
    [
        (["SN-000001,{a}", "SN-000002,{a}"], 3, "public_key_sha256 repeats line 2"),
        (["SN-000001,{a}", "SN-000002,{b}", "SN-000003,{A}"], 4, "public_key_sha256 repeats line 2"),
        (["SN-000001,{a}", "SN-000002,abc"], 3, "not 64 hex digits"),
        (["SN-000001,{colons}"], 2, "certificate fingerprint"),
    ],
)
def test_bad_or_shared_keys_stop_the_import(
    table: Any, tmp_path: Path, rows: list[str], line: int, reason: str
) -> None:
    a, b = key_fingerprint(), key_fingerprint()
    colons = ":".join(a[i : i + 2].upper() for i in range(0, 64, 2))
    content = (
        "serial,public_key_sha256\n" + "\n".join(rows).format(a=a, A=a.upper(), b=b, colons=colons) + "\n"
    )
    result = run_import(tmp_path, content)
    assert result.exit_code == 1 and result.stdout == ""
    error = result.stderr.strip()
    assert (
        "\n" not in error and f"line {line}: " in error and reason in error and "nothing was written" in error
    )
    assert table.scan(TableName=TABLE)["Count"] == 0


def test_skip_invalid_keeps_the_first_holder_of_a_shared_key(table: Any, tmp_path: Path) -> None:
    shared = key_fingerprint()
    content = f"serial,public_key_sha256\nSN-000001,{shared}\nSN-000002,{shared}\n"
    result = run_import(tmp_path, content, "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["new"], report["invalid"]) == (1, 1) and report["bad_rows"][0]["line"] == 3
    assert get_serial_item(table, "SN-000002") is None


def test_reimport_changes_the_key_only_while_available(table: Any, tmp_path: Path) -> None:
    old = {s: key_fingerprint() for s in ("SN-000001", "SN-000002", "SN-000003")}
    new = {s: key_fingerprint() for s in old}
    lines = "".join(f"{s},B1,{k}\n" for s, k in old.items())
    assert run_import(tmp_path, "serial,batch,public_key_sha256\n" + lines).exit_code == 0
    table.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "serial#SN-000002"}},
        UpdateExpression="SET #s = :r, certificate_id = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "RESERVED"}, ":c": {"S": "a" * 64}},
    )
    cli("registry", "revoke", "SN-000003", *TARGET)

    lines = "".join(f"{s},B1,{k}\n" for s, k in new.items())
    result = run_import(tmp_path, "serial,batch,public_key_sha256\n" + lines, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["updated"], report["kept"]) == (1, 2)
    assert report["kept_serials"] == ["SN-000002", "SN-000003"]
    stored = {s: get_serial_item(table, s)["public_key_sha256"]["S"] for s in old}  # type: ignore[index]
    assert stored == {
        "SN-000001": new["SN-000001"],
        "SN-000002": old["SN-000002"],
        "SN-000003": old["SN-000003"],
    }


def test_a_file_without_keys_leaves_them_alone(table: Any, tmp_path: Path) -> None:
    key = key_fingerprint()
    assert run_import(tmp_path, f"serial,batch,public_key_sha256\nSN-000001,B1,{key}\n").exit_code == 0
    for content in ("serial,batch\nSN-000001,B1\n", "serial,batch,public_key_sha256\nSN-000001,B1,\n"):
        report = json.loads(run_import(tmp_path, content, "--json").stdout)
        assert (report["unchanged"], report["updated"]) == (1, 0)
    changed = json.loads(run_import(tmp_path, "serial,batch\nSN-000001,B2\n", "--json").stdout)
    assert changed["updated"] == 1
    item = get_serial_item(table, "SN-000001")
    assert item is not None and item["batch"]["S"] == "B2" and item["public_key_sha256"]["S"] == key


def test_stats_counts_serials_with_and_without_a_key(table: Any, tmp_path: Path) -> None:
    rows = [f"SN-00000{n},B1,{key_fingerprint()}" for n in range(1, 4)] + ["SN-000009,B1,", "SN-000010,B2,"]
    assert run_import(tmp_path, "serial,batch,public_key_sha256\n" + "\n".join(rows) + "\n").exit_code == 0
    assert cli("batch", "require-key", "B1", *TARGET).exit_code == 0
    stats = json.loads(cli("registry", "stats", *TARGET, "--json").stdout)
    assert stats["public_key_sha256"] == {"with": 3, "without": 2}
    assert (
        stats["by_batch"]["B1"]["with_public_key_sha256"] == 3
        and stats["by_batch"]["B1"]["require_device_key"]
    )
    assert stats["by_batch"]["B1"]["bound_claims"] is None  # require-key binds no claim
    assert stats["by_batch"]["B2"]["require_device_key"] is False
    view = cli("registry", "stats", *TARGET)
    assert view.exit_code == 0 and "device keys" in view.stdout
    assert "cannot provision: B1 (1)" in " ".join(view.stderr.split())


def test_batch_require_key_on_and_off(table: Any) -> None:
    put_batch(table, "B1", ["c" * 64])
    result = cli("batch", "require-key", "B1", *TARGET)
    assert result.exit_code == 0 and "every serial needs a device-key fingerprint" in result.stdout
    item = table.get_item(TableName=TABLE, Key={"pk": {"S": "batch#B1"}})["Item"]
    assert item["require_device_key"] == {"BOOL": True}
    assert item["claim_certificate_ids"]["SS"] == ["c" * 64]  # the binding is untouched
    shown = json.loads(cli("batch", "show", "B1", *TARGET, "--json").stdout)
    assert shown == {"batch": "B1", "claim_certificate_ids": ["c" * 64], "require_device_key": True}
    assert "required for every serial" in cli("batch", "show", "B1", *TARGET).stdout

    off = cli("batch", "require-key", "B1", "--off", *TARGET, "--json")
    assert off.exit_code == 0 and json.loads(off.stdout) == {"batch": "B1", "require_device_key": False}
    item = table.get_item(TableName=TABLE, Key={"pk": {"S": "batch#B1"}})["Item"]
    assert item["require_device_key"] == {"BOOL": False}


def test_require_key_on_an_unbound_batch_leaves_it_unbound(table: Any) -> None:
    assert cli("batch", "require-key", "NEW", *TARGET).exit_code == 0
    item = table.get_item(TableName=TABLE, Key={"pk": {"S": "batch#NEW"}})["Item"]
    assert "claim_certificate_ids" not in item and item["batch"]["S"] == "NEW"
    shown = cli("batch", "show", "NEW", *TARGET)
    assert "not bound" in shown.stdout and "required for every serial" in shown.stdout
    assert json.loads(cli("batch", "show", "NEW", *TARGET, "--json").stdout)["claim_certificate_ids"] is None


def test_require_key_refuses_a_bad_batch_name(table: Any) -> None:
    result = cli("batch", "require-key", "bad batch", *TARGET)
    assert (
        result.exit_code == 2
        and result.stderr.strip() == "fleetctl: batch 'bad batch' is not a valid batch name"
    )
    assert table.scan(TableName=TABLE)["Count"] == 0


def test_manifest_rows_leave_batch_and_attributes_alone(table: Any, tmp_path: Path) -> None:
    """A row that states only a key (as a vendor manifest's does) must not wipe what a CSV stated."""
    put_serial(table, "SN-000001", batch="B1", attributes={"model": "X1"})
    from fleetctl.registry_store import RegistryStore
    from fleetctl.serial_csv import SerialRow

    key = key_fingerprint()
    row = SerialRow(1, "SN-000001", None, public_key_sha256=key, sets_batch=False, sets_attributes=False)
    store = RegistryStore(table, TABLE)
    existing = store.existing(["SN-000001"])["SN-000001"]
    assert not existing.same_data(row)
    assert store.update_available(row)
    item = get_serial_item(table, "SN-000001")
    assert item is not None and item["public_key_sha256"]["S"] == key
    assert item["batch"]["S"] == "B1" and item["attributes"]["M"] == {"model": {"S": "X1"}}
    assert store.existing(["SN-000001"])["SN-000001"].same_data(row)
