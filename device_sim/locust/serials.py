"""The serials of a Locust run, held by the master (or the single process) and handed out in small batches.

Only the master reads `--serials` (or generates `<prefix><n>`); a worker asks for as many serials as it has
users waiting, so no two workers ever get the same serial and no worker hoards the tail of the run. The
run is over when the pool is used up (all of `--serials`, or `--devices`) and every device handed out has
finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_sim.errors import UserError
from device_sim.fleet import GeneratedSerials, read_serials


def plan_serials(values: dict[str, Any]) -> Sequence[str]:
    """The run's serials from the options, as `fleet` takes them; raises UserError."""
    devices = values.get("devices")
    if values.get("rotate"):
        from device_sim.rotation_fleet import kept_devices

        identities = Path(values["keep_identities"]) if values.get("keep_identities") else None
        serials = Path(values["serials"]) if values.get("serials") else None
        return kept_devices(identities, serials, devices)
    if values.get("serials"):
        pool: Sequence[str] = read_serials(Path(values["serials"]))
        if devices is not None:
            if devices > len(pool):
                raise UserError(f"--devices {devices} but {values['serials']} holds only {len(pool)} serials")
            pool = pool[:devices]
        return pool
    if devices is not None:
        return GeneratedSerials(values.get("serial_prefix") or "SIM-", devices)
    raise UserError("give --devices N (generated serials) or --serials FILE")


class SerialPool:
    """Hands each serial out once, in order."""

    def __init__(self, serials: Sequence[str]) -> None:
        self._serials = serials
        self._next = 0

    def take(self, count: int) -> list[str]:
        batch = list(self._serials[self._next : self._next + max(0, count)])
        self._next += len(batch)
        return batch

    @property
    def handed_out(self) -> int:
        return self._next

    @property
    def size(self) -> int:
        return len(self._serials)

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._serials)
