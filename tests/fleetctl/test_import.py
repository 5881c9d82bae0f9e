"""`fleetctl registry import` against moto: good file, bad rows, re-import, --skip-invalid."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fleetctl.cli import app
from fleetctl.importer import ImportReport, _serial_index, validate
from fleetctl.serial_csv import SerialCsv
from fleetctl.target import load_settings
from tests.hook.support import get_serial_item, put_serial

from .conftest import TARGET

runner = CliRunner()


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def scan(table: Any) -> dict[str, dict[str, Any]]:
    items = table.scan(TableName="fleet-serials")["Items"]
    return {item["pk"]["S"]: item for item in items}


def run_import(path: Path, *extra: str) -> Any:
    return runner.invoke(app, ["registry", "import", str(path), *TARGET, *extra])


GOOD = "serial,batch,model,hw_rev\nSN-000001,B1,X1,3\nSN-000002,B1,X1,\nSN-000003,,X2,4\n"


def test_good_file(table: Any, tmp_path: Path) -> None:
    result = run_import(write_csv(tmp_path / "s.csv", GOOD), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["rows"], report["valid"], report["new"], report["invalid"]) == (3, 3, 3, 0)
    items = scan(table)
    assert set(items) == {"serial#SN-000001", "serial#SN-000002", "serial#SN-000003"}
    one = items["serial#SN-000001"]
    assert one["status"]["S"] == "AVAILABLE" and one["batch"]["S"] == "B1"
    assert one["attributes"]["M"] == {"model": {"S": "X1"}, "hw_rev": {"S": "3"}}
    assert items["serial#SN-000002"]["attributes"]["M"] == {"model": {"S": "X1"}}  # empty cell: not set
    assert "batch" not in items["serial#SN-000003"]
    assert one["imported_at"]["S"] == one["updated_at"]["S"]


def test_table_output_and_many_rows(table: Any, tmp_path: Path) -> None:
    rows = "".join(f"SN-{n:06d},B{n % 3}\n" for n in range(260))  # > 2 BatchGet chunks, > 10 BatchWrite calls
    result = run_import(write_csv(tmp_path / "s.csv", "serial,batch\n" + rows))
    assert result.exit_code == 0, result.output
    assert "260" in result.stdout and "new" in result.stdout
    assert len(scan(table)) == 260


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("serial\nSN-000001\nbad serial\nSN-000003\n", 3, "does not match"),
        ("serial,model\nSN-000001,X1\nSN-000002,X 1\n", 3, "attribute model value"),
        ("serial\nSN-000001\nSN-000002\nSN-000001\n", 4, "repeats line 2"),
        ("serial,batch\nSN-000001,B1\nSN-000002,B1,extra\n", 3, "has 3 fields"),
        ("serial,batch\nSN-000001,B 1\n", 2, "batch 'B 1'"),
        ("serial\n" + "S" * 125 + "\n", 2, "does not match"),
    ],
)
def test_bad_row_stops_everything(table: Any, tmp_path: Path, content: str, line: int, reason: str) -> None:
    result = run_import(write_csv(tmp_path / "s.csv", content))
    assert result.exit_code == 1
    assert result.stdout == ""
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in error
    assert f"line {line}: " in error and reason in error and "nothing was written" in error
    assert scan(table) == {}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty file"),
        ("batch,model\nB1,X1\n", "no 'serial' column"),
        ("serial,model,model\n", "appears twice"),
        ("serial,SerialNumber\n", "reserved template parameter"),
        ("serial,bad name\n", "not a thing attribute name"),
    ],
)
def test_bad_header(table: Any, tmp_path: Path, content: str, reason: str) -> None:
    result = run_import(write_csv(tmp_path / "s.csv", content))
    assert result.exit_code == 1 and "line 1: " in result.stderr and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_reimport_changes_nothing(table: Any, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", GOOD)
    assert run_import(path).exit_code == 0
    # A device provisions SN-000001 meanwhile.
    table.update_item(
        TableName="fleet-serials",
        Key={"pk": {"S": "serial#SN-000001"}},
        UpdateExpression="SET #s = :r, certificate_id = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "RESERVED"}, ":c": {"S": "a" * 64}},
    )
    before = scan(table)
    result = run_import(path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["new"], report["updated"], report["unchanged"], report["kept"]) == (0, 0, 3, 0)
    assert scan(table) == before


def test_changed_data_updates_available_and_keeps_reserved(table: Any, tmp_path: Path) -> None:
    put_serial(table, "SN-000001", batch="OLD", attributes={"model": "X0"})
    put_serial(table, "SN-000002", status="RESERVED", batch="OLD", certificate_id="b" * 64, reserved_at=1)
    put_serial(table, "SN-000003", status="REVOKED", batch="OLD")
    content = "serial,batch,model\nSN-000001,NEW,X1\nSN-000002,NEW,X1\nSN-000003,NEW,X1\n"
    result = run_import(write_csv(tmp_path / "s.csv", content), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["updated"], report["kept"], report["kept_serials"]) == (1, 2, ["SN-000002", "SN-000003"])
    one = get_serial_item(table, "SN-000001")
    assert one is not None and one["batch"]["S"] == "NEW" and one["attributes"]["M"] == {"model": {"S": "X1"}}
    assert one["imported_at"]["S"] == "2026-01-01T00:00:00+00:00"  # the original import time stays
    two = get_serial_item(table, "SN-000002")
    assert two is not None and two["batch"]["S"] == "OLD" and two["certificate_id"]["S"] == "b" * 64
    assert get_serial_item(table, "SN-000003")["batch"]["S"] == "OLD"  # type: ignore[index]


def test_skip_invalid_imports_the_good_rows(table: Any, tmp_path: Path) -> None:
    content = "serial,model\nSN-000001,X1\nbad serial,X1\nSN-000002,X 2\nSN-000003,X3\nSN-000001,X9\n"
    result = run_import(write_csv(tmp_path / "s.csv", content), "--skip-invalid")
    assert result.exit_code == 0, result.output
    for line in ("3", "4", "6"):
        assert line in result.stdout
    assert "repeats line 2" in result.stdout
    assert set(scan(table)) == {"serial#SN-000001", "serial#SN-000003"}
    assert get_serial_item(table, "SN-000001")["attributes"]["M"]["model"]["S"] == "X1"  # type: ignore[index]
    again = run_import(tmp_path / "s.csv", "--skip-invalid", "--json")
    report = json.loads(again.stdout)
    assert (report["invalid"], report["new"], report["unchanged"]) == (3, 0, 2)
    assert [b["line"] for b in report["bad_rows"]] == [3, 4, 6]


def test_unknown_columns_are_noted(table: Any, tmp_path: Path) -> None:
    result = run_import(write_csv(tmp_path / "s.csv", "serial,colour\nSN-000001,red\n"))
    assert result.exit_code == 0 and "colour" in result.stderr and "not in thing_attributes" in result.stderr


def test_missing_file_and_table(table: Any, tmp_path: Path) -> None:
    result = run_import(tmp_path / "nope.csv")
    assert (
        result.exit_code == 2 and result.stderr.strip() == f"fleetctl: {tmp_path / 'nope.csv'}: no such file"
    )
    path = write_csv(tmp_path / "s.csv", GOOD)
    result = runner.invoke(
        app, ["registry", "import", str(path), "--table", "no-such", "--region", "us-east-1"]
    )
    assert result.exit_code == 1 and "ResourceNotFoundException" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_target_is_one_line(aws_env: None, tmp_path: Path) -> None:
    result = runner.invoke(app, ["registry", "import", str(write_csv(tmp_path / "s.csv", GOOD))])
    assert result.exit_code == 2 and "--table NAME" in result.stderr and "--endpoint-file" in result.stderr


def test_validation_streams_in_flat_memory(tmp_path: Path) -> None:
    """Pass 1 over 50k rows: Python memory does not grow with the file (duplicates are found on disk)."""
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write("serial,batch,model\n")
        for n in range(50_000):
            handle.write(f"SN-{n:08d},BATCH-{n // 10_000},MODEL-X1\n")
    csv_file = SerialCsv(path, load_settings(cdk_json=None, serial_pattern=None))
    report = ImportReport()
    tracemalloc.start()
    with _serial_index() as index:
        validate(csv_file, index, report, lambda n: None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (report.rows, report.valid, report.invalid) == (50_000, 50_000, 0)
    assert peak < 3_000_000, peak  # 50k rows kept as SerialRow objects would be > 15 MB
