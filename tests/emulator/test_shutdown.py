"""One SIGTERM stops `python -m emulator up` within a few seconds, even while hook threads are busy
and requests are in flight (a fleet run that timed out left one emulator ignoring its first SIGTERM)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import RawClient, connect, disconnect, make_csr
from tests.emulator.test_e2e import CSR_TOPIC, template_topic

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("emulator-e2e")]

EXIT_WITHIN_S = 8.0


def test_one_sigterm_stops_it_while_hooks_are_running(cloud_assembly: Path, tmp_path: Path) -> None:
    process = EmulatorProcess(
        cloud_assembly,
        tmp_path / "state",
        "--hook",
        "tests.emulator.fault_hooks:linger",
        "--hook-timeout-s",
        "120",
    )
    connection = connect(process.endpoint, "prov-LINGER1")
    try:
        raw = RawClient(connection)
        register = template_topic(process.endpoint, "json")
        for suffix in ("accepted", "rejected"):
            raw.subscribe(f"{register}/{suffix}")
        for i in range(6):
            outcome, created = raw.request(
                f"{CSR_TOPIC}/json", json.dumps({"certificateSigningRequest": make_csr(f"d{i}")[1]}).encode()
            )
            assert outcome == "accepted"
            token = created["certificateOwnershipToken"]
            body = {"certificateOwnershipToken": token, "parameters": {"SerialNumber": f"LINGER{i}"}}
            raw.publish(register, json.dumps(body).encode()).result(10)
        time.sleep(1.0)  # the hook threads are now sleeping inside the lingering hook
        assert process.process.poll() is None

        started = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        returncode = process.process.wait(EXIT_WITHIN_S + 5)
        took = time.monotonic() - started
    finally:
        disconnect(connection)
        process.stop()
    assert returncode == 0
    assert took < EXIT_WITHIN_S, f"SIGTERM took {took:.1f} s"
    assert not (tmp_path / "state" / "endpoint.json").exists()
    assert "stopped" in process.log()
