"""Fixtures of the emulator tests. The end-to-end ones share one synthesized stack and one emulator
process per xdist worker (group "emulator-e2e")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.ca import CertificateAuthority
from tests.emulator.device import Endpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
# A second, inactive claim: the emulator must register it INACTIVE (it cannot connect).
FLEET_OVERRIDES = {
    "claim_credentials": [
        {"name": "line-a", "mode": "generated", "active": True},
        {"name": "line-b", "mode": "generated", "active": False},
    ]
}


@pytest.fixture(scope="session")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real stack, synthesized once per test process (~20 s)."""
    import app

    return app.synthesize(FLEET_OVERRIDES, tmp_path_factory.mktemp("cdk") / "cdk.out")


class EmulatorProcess:
    """`python -m emulator up` in a subprocess: its own moto state, its own environment."""

    def __init__(self, assembly: Path, state_dir: Path, *extra: str) -> None:
        self.state_dir = state_dir
        self.log_path = state_dir / "emulator.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            env.pop(name, None)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulator",
                "up",
                "--state-dir",
                str(state_dir),
                "--cloud-assembly",
                str(assembly),
                *extra,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        endpoint_file = state_dir / "endpoint.json"
        deadline = time.monotonic() + 90
        while not endpoint_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        self.endpoint = Endpoint.load(endpoint_file)
        self.raw = json.loads(endpoint_file.read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def emulator(cloud_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(cloud_assembly, tmp_path_factory.mktemp("emulator-state"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def fault_emulator(
    cloud_assembly: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorProcess]:
    """Hooks that raise, sleep past 5 s or deny, and ownership tokens that live 2 s."""
    process = EmulatorProcess(
        cloud_assembly,
        tmp_path_factory.mktemp("fault-state"),
        "--hook",
        "tests.emulator.fault_hooks:hook",
        "--token-ttl-s",
        "2",
    )
    yield process
    process.stop()
