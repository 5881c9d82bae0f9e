"""The rotation stack, synthesized once per worker, and its emulators (group "rotation-e2e": one worker).

`rotation_emulator` runs the retirer's schedules every second and issues 30-day device certificates; its
registry is shared by the tests of the group, so each test uses serials of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device_sim.conftest import Emulator, started

ROTATION_OVERRIDES = {
    "rotation": {"enabled": True, "grace_s": 60},
    "claim_credentials": [{"name": "line-a", "mode": "generated", "active": True}],
}


@pytest.fixture(scope="session")
def rotation_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import app

    return app.synthesize(ROTATION_OVERRIDES, tmp_path_factory.mktemp("rotation-cdk") / "cdk.out")


@pytest.fixture(scope="session")
def rotation_emulator(
    rotation_assembly: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    yield from started(
        rotation_assembly,
        tmp_path_factory.mktemp("rotation-emulator"),
        "--schedule-every-s",
        "1",
        "--certificate-validity-days",
        "30",
    )
