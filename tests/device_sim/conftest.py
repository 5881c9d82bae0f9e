"""Fixtures of the simulator's end-to-end tests: one synthesized stack and one emulator process per xdist
worker (group "device-sim-e2e"), a serial registry seeded through the emulator's DynamoDB API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator import process as emulator_process
from fleetctl.registry_store import RegistryStore
from fleetctl.serial_csv import SerialRow

REPO_ROOT = Path(__file__).resolve().parents[2]
# The keys flow allowed (for its test), so no CN check (AWS names those certificates); an inactive claim
# for the refused-claim test.
FLEET_OVERRIDES = {
    "allow_create_keys_and_certificate": True,
    "require_cn_match": False,
    "claim_credentials": [
        {"name": "line-a", "mode": "generated", "active": True},
        {"name": "line-b", "mode": "generated", "active": False},
    ],
}


@dataclass
class Emulator:
    endpoint_file: Path
    data: dict[str, Any]
    log_path: Path

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.data["aws_endpoint_url"],
            region_name=self.data["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def import_serials(self, serials: list[str]) -> None:
        """AVAILABLE serial items, written by fleetctl's registry store (what `registry import` does)."""
        store = RegistryStore(self.client("dynamodb"), self.data["serial_table"])
        store.put_new(SerialRow(line, serial, None) for line, serial in enumerate(serials, 1))

    def serial_item(self, serial: str) -> dict[str, Any] | None:
        item = (
            self.client("dynamodb")
            .get_item(TableName=self.data["serial_table"], Key={"pk": {"S": f"serial#{serial}"}})
            .get("Item")
        )
        return None if item is None else {k: next(iter(v.values())) for k, v in item.items()}


@pytest.fixture(scope="session")
def sim_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import app

    return app.synthesize(FLEET_OVERRIDES, tmp_path_factory.mktemp("sim-cdk") / "cdk.out")


def started(assembly: Path, state: Path, *extra: str) -> Iterator[Emulator]:
    process = emulator_process.start(assembly, state, *extra)
    try:
        yield Emulator(process.endpoint_file, process.endpoint(), process.log_path)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def emulator(sim_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from started(sim_assembly, tmp_path_factory.mktemp("sim-emulator"))


@pytest.fixture
def lossy_emulator(sim_assembly: Path, tmp_path: Path) -> Iterator[Emulator]:
    """Applies the first RegisterThing and never sends its reply: a device that lost power or network."""
    yield from started(sim_assembly, tmp_path / "lossy", "--lose-replies", "RegisterThing=1")
