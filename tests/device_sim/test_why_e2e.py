"""`fleetctl registry why` against the emulator, after real devices tried: a provisioned serial (and its
clone), a denied one and one never seen; the hook's decisions come from the emulator's log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from device_sim.cli import app as device_sim
from fleetctl.cli import app as fleetctl
from tests.device_sim.conftest import Emulator

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("device-sim-e2e")]
runner = CliRunner()


def provision(emulator: Emulator, serial: str, out_dir: Path) -> int:
    result = runner.invoke(
        device_sim,
        [
            "provision",
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serial",
            serial,
            "--out-dir",
            str(out_dir),
        ],
    )
    return result.exit_code


def why(emulator: Emulator, serial: str, *extra: str) -> Any:
    return runner.invoke(
        fleetctl, ["registry", "why", serial, "--endpoint-file", str(emulator.endpoint_file), *extra]
    )


def test_why_tells_provisioned_denied_and_never_seen_apart(emulator: Emulator, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    provisioned, denied, never = f"W{tag}OK", f"W{tag}NO", f"W{tag}NEVER"
    emulator.import_serials([provisioned])
    assert provision(emulator, provisioned, tmp_path / "device") == 0
    assert provision(emulator, provisioned, tmp_path / "clone") == 1  # a second key: TAKEN
    assert provision(emulator, denied, tmp_path / "unknown") == 1  # never imported: UNKNOWN_SERIAL
    item = emulator.serial_item(provisioned)
    assert item is not None

    result = why(emulator, provisioned, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["attempts_source"] == str(emulator.log_path)
    assert [(a["decision"], a["reason"]) for a in report["attempts"]] == [
        ("allow", "ALLOWED_NEW"),
        ("deny", "TAKEN"),
    ]
    first, clone = report["attempts"]
    assert first["certificate_id"] == item["certificate_id"] and first["client_id"] == f"prov-{provisioned}"
    assert clone["certificate_id"] != item["certificate_id"] and clone["detail"] == "reserved for another key"
    assert first["claim_certificate_id"] == emulator.data["claims"]["line-a"]["certificate_id"]
    assert first["time"] < clone["time"]
    assert report["verdict"].startswith(f"provisioned as device-{provisioned} on ")
    assert "1 later attempt(s) denied, last TAKEN" in report["verdict"]
    assert report["registry"]["status"] == "RESERVED"
    assert [(c["certificate_id"], c["iot_status"]) for c in report["certificates"]] == [
        (item["certificate_id"], "ACTIVE")
    ]
    assert report["thing"]["thing_name"] == f"device-{provisioned}"
    assert report["thing"]["certificate_ids"] == [item["certificate_id"]]

    result = why(emulator, denied, "--json")
    report = json.loads(result.stdout)
    assert report["registry"] is None and report["thing"] is None and report["certificates"] == []
    assert [(a["decision"], a["reason"]) for a in report["attempts"]] == [("deny", "UNKNOWN_SERIAL")]
    assert report["verdict"].startswith(
        "not in the registry; 1 attempt(s) reached the hook, last UNKNOWN_SERIAL"
    )

    result = why(emulator, never, "--json")
    report = json.loads(result.stdout)
    assert (report["registry"], report["attempts"], report["thing"]) == (None, [], None)
    assert report["verdict"] == "never seen: not in the registry, and no attempt reached the hook"

    # The same for people: one screen, the verdict first.
    screen = why(emulator, provisioned)
    assert screen.exit_code == 0
    lines = screen.stdout.splitlines()
    assert lines[0].startswith(f"{provisioned}: provisioned as device-{provisioned}")
    assert (
        "ALLOWED_NEW" in screen.stdout
        and "TAKEN" in screen.stdout
        and "reserved for another key" in screen.stdout
    )
    assert f"thing device-{provisioned}" in screen.stdout and len(lines) < 40


def test_why_reads_a_given_log_and_says_when_there_is_none(emulator: Emulator, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.log"
    result = why(emulator, "ANY-SERIAL", "--log", str(missing))
    assert (
        result.exit_code == 2
        and result.stderr.strip() == f"fleetctl: no log at {missing}: give --log FILE (the emulator's output)"
    )
    other = tmp_path / "other.log"
    other.write_text(
        "2026-01-01 00:00:00,000 INFO emulator started\n"
        + json.dumps(
            {
                "message": "provisioning decision",
                "serial": "ELSEWHERE",
                "decision": "deny",
                "reason": "REVOKED",
            }
        )
        + "\n"
        + json.dumps(
            {
                "message": "provisioning decision",
                "serial": "ANY-SERIAL",
                "decision": "deny",
                "reason": "REVOKED",
            }
        )
        + "\nnot json {\n"
    )
    report = json.loads(why(emulator, "ANY-SERIAL", "--log", str(other), "--json").stdout)
    assert [(a["reason"], a["time"]) for a in report["attempts"]] == [("REVOKED", None)]
