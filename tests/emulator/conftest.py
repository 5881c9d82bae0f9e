"""Fixtures of the emulator tests. The end-to-end ones share one synthesized stack and one emulator
process per xdist worker (group "emulator-e2e")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import process as emulator_process
from emulator.provisioning.ca import CertificateAuthority
from tests.emulator.device import Endpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
# A second, inactive claim: the emulator must register it INACTIVE (it cannot connect).
FLEET_OVERRIDES = {
    "claim_credentials": [
        {"name": "line-a", "mode": "generated", "active": True},
        {"name": "line-b", "mode": "generated", "active": False},
    ]
}


# The stack the AWS SDK's fleet-provisioning samples need: their client ids ("mqtt5-sample-<uuid>",
# "test-<uuid>") pass the claim policy, and CreateKeysAndCertificate is allowed (fleet_provisioning_basic),
# which the configuration only admits without the hook's CN check.
SAMPLE_OVERRIDES = {
    **FLEET_OVERRIDES,
    "claim_client_id_pattern": "*",
    "allow_create_keys_and_certificate": True,
    "require_cn_match": False,  # AWS names the certificates it makes for CreateKeysAndCertificate itself
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
    """`python -m emulator up` in a subprocess (`emulator.process`): its own moto state, its own
    environment (this process's at start, as `tests.load.support.environment` sets it)."""

    def __init__(self, assembly: Path, state_dir: Path, *extra: str) -> None:
        self.state_dir = state_dir
        try:
            self._child = emulator_process.start(assembly, state_dir, *extra, timeout_s=90)
        except emulator_process.EmulatorStartError as exc:
            log = (state_dir / "emulator.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{exc}\n{log}") from None
        self.process = self._child.process
        self.log_path = self._child.log_path
        self.endpoint = Endpoint.load(self._child.endpoint_file)
        self.raw = self._child.endpoint()

    def log(self) -> str:
        return self._child.log()

    def stop(self) -> int | None:
        return self._child.stop()


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


@pytest.fixture(scope="session")
def sample_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import app

    return app.synthesize(SAMPLE_OVERRIDES, tmp_path_factory.mktemp("cdk-samples") / "cdk.out")


def _port_443_free() -> bool:
    """The SDKs' default port; this machine may let the emulator bind it (root), or not."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", 443))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def mqtt5_emulator(
    sample_assembly: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorProcess]:
    """The samples' stack with a second MQTT port (443 where it can be bound, else a free one) and
    persistent sessions that expire after 3 s."""
    process = EmulatorProcess(
        sample_assembly,
        tmp_path_factory.mktemp("mqtt5-state"),
        "--alpn-port",
        "443" if _port_443_free() else "0",
        "--session-expiry-s",
        "3",
    )
    yield process
    process.stop()
