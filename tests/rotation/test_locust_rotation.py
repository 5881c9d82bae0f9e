"""The Locust user rotates too: `locust --rotate --keep-identities DIR`, in subprocesses (importing Locust
would monkey-patch this test process), with the rotation's steps as Locust request types."""

from __future__ import annotations

import csv
import importlib.util
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
from device_sim.rotation import ROTATION_STEPS
from tests.device_sim.conftest import REPO_ROOT, Emulator
from tests.rotation.support import attached, identity_of, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("rotation-e2e"),
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="no locust extra installed"),
]


def test_locust_processes_rotate_each_kept_device_once(rotation_emulator: Emulator, tmp_path: Path) -> None:
    prefix = f"L{uuid.uuid4().hex[:6].upper()}-"
    serials = list(GeneratedSerials(prefix, 8))
    rotation_emulator.import_serials(serials)
    kept, endpoint = tmp_path / "identities", str(rotation_emulator.endpoint_file)
    made = CliRunner().invoke(
        device_sim,
        ["fleet", "--endpoint-file", endpoint, "--devices", "8", "--serial-prefix", prefix,
         "--concurrency", "4", "--keep-identities", str(kept), "--no-progress",
         "--report", str(tmp_path / "provision.json")],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    before = {s: identity_of(kept / s).certificate_id for s in serials}

    report, stats = tmp_path / "rotate.json", tmp_path / "locust"
    result = subprocess.run(
        [sys.executable, "-m", "device_sim", "locust", "--headless", "--processes", "2", "--endpoint-file",
         endpoint, "--rotate", "--keep-identities", str(kept), "--concurrency", "4", "--report", str(report),
         "--csv", str(stats)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert (data["devices"], data["provisioned"], data["failed"], data["rejected"]) == (8, 8, 0, 0)
    assert data["run"]["operation"] == "rotate" and data["run"]["driver"] == "locust"
    assert set(data["latency_ms"]) == {"total", *ROTATION_STEPS}
    with Path(f"{stats}_stats.csv").open() as handle:
        rows = {row["Type"]: row for row in csv.DictReader(handle)}
    for step in (*ROTATION_STEPS, "total"):
        assert int(rows[step]["Request Count"]) == 8 and int(rows[step]["Failure Count"]) == 0, step
    assert {row["Name"] for row in rows.values()} == {"json/rotate", "Aggregated"}
    for serial in serials:
        after = identity_of(kept / serial)
        assert after.certificate_id != before[serial]
        wait_for(
            f"{after.thing_name}: one certificate",
            lambda t=after.thing_name, c={after.certificate_id}: attached(rotation_emulator, t) == c,
        )
