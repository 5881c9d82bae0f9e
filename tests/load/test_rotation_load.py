"""500 provisioned devices rotate at concurrency 50 (issue 15): every one ends with exactly one ACTIVE
certificate, the one it holds, attached to its thing, and nothing pending in the registry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.cli import app as device_sim
from device_sim.device_dir import load_identity
from tests.load.support import Snapshot, aws, import_serials, snapshot, start_emulator
from tests.rotation.conftest import rotation_assembly  # noqa: F401 - the shared session fixture
from tests.rotation.support import wait_for

pytestmark = [pytest.mark.load, pytest.mark.e2e, pytest.mark.xdist_group("load-rotation")]
DEVICES, CONCURRENCY = 500, 50


def fleet(endpoint: Path, kept: Path, report: Path, *extra: str) -> None:
    result = CliRunner().invoke(
        device_sim,
        ["fleet", "--endpoint-file", str(endpoint), "--concurrency", str(CONCURRENCY), "--keep-identities",
         str(kept), "--no-progress", "--timeout-s", "30", "--report", str(report), *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output[-3000:]


def test_500_devices_rotate_at_concurrency_50(rotation_assembly: Path, tmp_path: Path) -> None:  # noqa: F811
    emulator = start_emulator(rotation_assembly, tmp_path / "state")
    try:
        serials = [f"LOAD-ROT-{n:05d}" for n in range(DEVICES)]
        import_serials(emulator.raw, serials)
        (tmp_path / "serials.txt").write_text("\n".join(serials) + "\n")
        kept = tmp_path / "identities"
        fleet(
            emulator.state_dir / "endpoint.json",
            kept,
            tmp_path / "provision.json",
            "--serials",
            str(tmp_path / "serials.txt"),
        )
        before = {s: load_identity(kept / s, pkcs11_pin="1234").certificate_id for s in serials}

        fleet(emulator.state_dir / "endpoint.json", kept, tmp_path / "rotate.json", "--rotate")
        after = {s: load_identity(kept / s, pkcs11_pin="1234").certificate_id for s in serials}
        assert all(after[s] != before[s] for s in serials)

        iot = aws(emulator.raw, "iot")

        def settled() -> bool:
            """Only the devices' current certificates are ACTIVE (claims aside): the retirer is done."""
            claims = {c["certificate_id"] for c in emulator.raw["claims"].values()}
            active = set()
            for page in iot.get_paginator("list_certificates").paginate(PaginationConfig={"PageSize": 250}):
                active |= {c["certificateId"] for c in page["certificates"] if c["status"] == "ACTIVE"}
            return active - claims == set(after.values())

        wait_for("every device with exactly one ACTIVE certificate", settled, timeout_s=120)

        def things_hold_their_certificate_only() -> Snapshot | None:
            state = snapshot(emulator.raw)
            for serial in serials:
                if {arn.rsplit("/", 1)[-1] for arn in state.things[f"device-{serial}"]} != {after[serial]}:
                    return None
            return state

        deadline = time.monotonic() + 60
        while (state := things_hold_their_certificate_only()) is None:
            assert time.monotonic() < deadline, "a thing still holds a certificate other than its device's"
            time.sleep(0.5)
        for serial in serials:
            item = state.serials[serial]
            assert item["certificate_id"] == after[serial] and "rotation_pending" not in item
            assert state.certificates[before[serial]] == "INACTIVE"
    finally:
        emulator.stop()
