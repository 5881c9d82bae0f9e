"""A fleet's identities kept on disk, and a fleet of rotations: what `fleet` and `locust` do with
`--keep-identities DIR` and `--rotate`.

`--keep-identities DIR`: each device keeps what `provision --out-dir` writes, in DIR/<serial>. `--rotate`
rotates the devices kept there (every one, or `--serials`, or the first `--devices`), each with its own key
store (memory or the PKCS#11 token its identity names), and keeps their new identities there. The report is
the provisioning report's, with the rotation's steps (connect, create_certificate, register_thing,
reconnect, first_publish) and `run.operation: rotate`; a rotated device counts as `provisioned`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from device_sim.device import DeviceOptions, RetryPolicy, provision_device
from device_sim.device_dir import IDENTITY, load_identity
from device_sim.errors import UserError
from device_sim.fleet import read_serials
from device_sim.histogram import Histogram
from device_sim.pkcs11_store import DEFAULT_USER_PIN
from device_sim.report import TOTAL, FleetStats
from device_sim.rotation import ROTATION_STEPS, RotateOptions, rotate_device

RunDevice = Callable[..., Awaitable[Any]]  # (transport, serial, options, on_step=, on_retry=) -> result


def kept_devices(
    directory: Path | None, serials: Path | None = None, devices: int | None = None
) -> list[str]:
    """The serials to rotate: --serials (each must be kept in DIRECTORY), else every device kept there."""
    if directory is None:
        raise UserError("--rotate needs --keep-identities DIR: the devices provisioned earlier with it")
    if not directory.is_dir():
        raise UserError(f"--keep-identities {directory} is not a directory")
    if serials is not None:
        pool = read_serials(serials)
        missing = [s for s in pool if not (directory / s / IDENTITY).is_file()]
        if missing:
            raise UserError(
                f"{len(missing)} of the serials in {serials} have no identity in {directory} "
                f"(first: {missing[0]}); provision them with --keep-identities first"
            )
    else:
        pool = sorted(p.name for p in directory.iterdir() if (p / IDENTITY).is_file())
        if not pool:
            raise UserError(f"--keep-identities {directory} holds no provisioned device")
    if devices is not None:
        if devices > len(pool):
            raise UserError(f"--devices {devices} but {directory} holds only {len(pool)} devices")
        pool = pool[:devices]
    return pool


def device_runner(
    keep_identities: Path | None,
    *,
    rotate: bool,
    rotation_template_name: str | None = None,
    fmt: str = "json",
    attempts: int = 4,
) -> RunDevice:
    """What each device of the fleet runs: provisioning (its identity kept, or not), or a rotation."""
    if not rotate:
        if keep_identities is None:
            return provision_device

        async def provision_and_keep(
            transport: Any, serial: str, options: DeviceOptions, **hooks: Any
        ) -> Any:
            kept = replace(options, out_dir=keep_identities / serial)
            return await provision_device(transport, serial, kept, **hooks)

        return provision_and_keep
    assert keep_identities is not None and rotation_template_name
    pin = os.environ.get("DEVICE_SIM_PKCS11_PIN", DEFAULT_USER_PIN)
    rotate_options = RotateOptions(
        template_name=rotation_template_name, fmt=fmt, retry=RetryPolicy(attempts=attempts), pkcs11_pin=pin
    )

    async def rotate_kept(transport: Any, serial: str, _options: DeviceOptions, **hooks: Any) -> Any:
        identity = load_identity(keep_identities / serial, pkcs11_pin=pin)
        return await rotate_device(transport, identity, rotate_options, **hooks)

    return rotate_kept


def as_rotation_report(stats: FleetStats, rotation_template_name: str) -> FleetStats:
    """The fleet's statistics with the rotation's steps and what the run was."""
    stats.histograms = {name: Histogram() for name in (TOTAL, *ROTATION_STEPS)}
    stats.run |= {"operation": "rotate", "template_name": rotation_template_name}
    return stats


def check_rotate_options(
    keep_identities: Path | None, *, flow: str, keys_dir: Path | None, params: Sequence[str] | None
) -> None:
    """What --rotate cannot be combined with: one line each."""
    if keys_dir is not None:
        raise UserError("--rotate makes new keys in each device's own store: --keys-dir is for provisioning")
    if flow != "csr":
        raise UserError("--rotate needs --flow csr: the device's new key never leaves it")
    if params:
        raise UserError("--rotate sends only each device's serial: --param is for provisioning")
    if keep_identities is None:
        raise UserError("--rotate needs --keep-identities DIR: the devices provisioned earlier with it")
