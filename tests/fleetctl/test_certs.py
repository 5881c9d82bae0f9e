"""`fleetctl certs expiring` against moto (exactly the devices it should list, paginated), and `registry
reset` of a serial whose rotation was pending."""

from __future__ import annotations

import json
import time
from typing import Any

from typer.testing import CliRunner

from fleetctl.cli import app
from fleetctl.expiring import DAY_MS, expiring
from tests.hook.support import TABLE, get_serial_item, put_serial

from .conftest import TARGET

runner = CliRunner()


def provisioned(table: Any, serial: str, *, expires_in_days: float | None, status: str = "RESERVED") -> None:
    put_serial(table, serial, status=status, certificate_id=f"{len(serial):02d}" + serial.encode().hex()[:62])
    if expires_in_days is not None:
        expires = int(time.time() * 1000 + expires_in_days * DAY_MS)
        table.update_item(
            TableName=TABLE,
            Key={"pk": {"S": f"serial#{serial}"}},
            UpdateExpression="SET certificate_expires_at = :e, thing_name = :t",
            ExpressionAttributeValues={":e": {"N": str(expires)}, ":t": {"S": f"device-{serial}"}},
        )


def fleet(table: Any) -> None:
    """Provisioned devices expiring in -2 (expired), 1, 10, 29.5, 31 and 400 days; one without a recorded
    expiry; a revoked one and an available one that must never be listed."""
    for serial, days in (("SN-EXPIRED", -2), ("SN-D1", 1), ("SN-D10", 10), ("SN-D29", 29.5), ("SN-D31", 31)):
        provisioned(table, serial, expires_in_days=days)
    provisioned(table, "SN-D400", expires_in_days=400)
    provisioned(table, "SN-UNKNOWN", expires_in_days=None)
    provisioned(table, "SN-REVOKED", expires_in_days=1, status="REVOKED")
    put_serial(table, "SN-AVAILABLE")
    table.put_item(TableName=TABLE, Item={"pk": {"S": "batch#B1"}, "batch": {"S": "B1"}})


def test_expiring_lists_exactly_the_provisioned_devices_within_n_days(table: Any) -> None:
    fleet(table)
    result = runner.invoke(app, ["certs", "expiring", "--within-days", "30", *TARGET, "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [d["serial"] for d in listed["devices"]] == ["SN-EXPIRED", "SN-D1", "SN-D10", "SN-D29"]
    first = listed["devices"][0]
    assert (
        first["expired"] is True and first["days_left"] < -1.9 and first["thing_name"] == "device-SN-EXPIRED"
    )
    assert listed["without_expiry"] == 1
    none = runner.invoke(app, ["certs", "expiring", "--within-days", "0", *TARGET, "--json"])
    assert [d["serial"] for d in json.loads(none.stdout)["devices"]] == ["SN-EXPIRED"]


def test_the_table_and_its_note(table: Any) -> None:
    fleet(table)
    result = runner.invoke(app, ["certs", "expiring", "--within-days", "31.5", *TARGET])
    assert result.exit_code == 0, result.output
    assert "5 devices whose certificate expires before" in result.stdout
    for serial in ("SN-EXPIRED", "SN-D1", "SN-D10", "SN-D29", "SN-D31"):
        assert serial in result.stdout
    assert "SN-D400" not in result.stdout and "SN-REVOKED" not in result.stdout
    assert "expired" in result.stdout
    assert "1 provisioned serials have no recorded certificate expiry" in result.stderr


def test_a_long_scan_is_paginated_and_reports_progress(table: Any) -> None:
    for n in range(23):
        provisioned(table, f"SN-P{n:03d}", expires_in_days=n % 5)
    pages: list[tuple[int, int]] = []
    scan = expiring(
        table,
        TABLE,
        before_ms=int(time.time() * 1000 + 2.5 * DAY_MS),
        page_size=5,
        on_page=lambda scanned, found: pages.append((scanned, found)),
    )
    assert len(pages) >= 5 and pages[-1][0] == 23  # every item read, five at a time
    expected = sorted(f"SN-P{n:03d}" for n in range(23) if n % 5 <= 2)
    assert sorted(d.serial for d in scan.devices) == expected
    assert [d.expires_at_ms for d in scan.devices] == sorted(d.expires_at_ms for d in scan.devices)


def test_a_bad_within_days_is_one_line(table: Any) -> None:
    result = runner.invoke(app, ["certs", "expiring", "--within-days", "-1", *TARGET])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_reset_forgets_a_pending_rotation(table: Any) -> None:
    provisioned(table, "SN-ROT", expires_in_days=10)
    table.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "serial#SN-ROT"}},
        UpdateExpression="SET rotating_from = :f, rotating_from_key_sha256 = :k, rotation_pending = :p, "
        "rotation_started_at = :s",
        ExpressionAttributeValues={
            ":f": {"S": "f" * 64},
            ":k": {"S": "a" * 64},
            ":p": {"S": "1"},
            ":s": {"N": "1"},
        },
    )
    result = runner.invoke(app, ["registry", "reset", "SN-ROT", *TARGET, "--keep-certificate"])
    assert result.exit_code == 0, result.output
    item = get_serial_item(table, "SN-ROT")
    assert item is not None and item["status"]["S"] == "AVAILABLE"
    gone = {"rotating_from", "rotating_from_key_sha256", "rotation_pending", "rotation_started_at"}
    assert not (gone | {"certificate_id", "certificate_expires_at"}) & set(item)
