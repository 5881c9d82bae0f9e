"""`python -m device_sim factory`: the test station's command (registered on the app in `device_sim.cli`)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from device_sim.errors import UserError
from device_sim.factory import KeysDir, KeyStore, run_factory
from device_sim.keys import DeviceKey
from device_sim.pkcs11_store import DEFAULT_USER_PIN

PLAIN_PROGRESS_EVERY_S = 2.0  # when stderr is not a terminal: one line this often

KeysDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys-dir",
        help="Keys the factory made (`device_sim factory`): each device uses its own instead of a new one.",
    ),
]


def factory(
    keys_dir: Annotated[
        Path, typer.Option("--keys-dir", help="Where the keys stay (0600 PEM files, or the SoftHSM2 token).")
    ],
    manifest: Annotated[
        Path,
        typer.Option("--manifest", help="CSV to write for `fleetctl registry import` (public data only)."),
    ],
    serials: Annotated[
        Path | None, typer.Option("--serials", help="Serials file (one a line, or CSV with a serial column).")
    ] = None,
    devices: Annotated[
        int | None,
        typer.Option("--devices", min=1, help="Generated serials <prefix><index>, as `fleet` makes."),
    ] = None,
    serial_prefix: Annotated[
        str, typer.Option("--serial-prefix", help="Prefix of generated serials.")
    ] = "SIM-",
    key_store: Annotated[
        KeyStore,
        typer.Option("--key-store", help="memory: PEM files in --keys-dir; pkcs11: the SoftHSM2 token."),
    ] = KeyStore.memory,
    pkcs11_pin: Annotated[
        str,
        typer.Option("--pkcs11-pin", envvar="DEVICE_SIM_PKCS11_PIN", help="User PIN of the SoftHSM2 token."),
    ] = "1234",
    batch: Annotated[str | None, typer.Option("--batch", help="Batch column for every serial.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress on stderr.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="The result as JSON on stdout.")] = False,
) -> None:
    """The factory's test station: a key pair per serial, and the manifest of their keys' fingerprints."""
    from device_sim.fleet import GeneratedSerials, read_serials

    if (serials is None) == (devices is None):
        raise UserError("give --serials FILE or --devices N (with --serial-prefix)")
    pool: Any = (
        read_serials(serials) if serials is not None else GeneratedSerials(serial_prefix, devices or 0)
    )
    if manifest.resolve().is_relative_to(keys_dir.resolve()):
        # The manifest crosses the factory; the keys directory must not. Keep them apart from the start.
        raise UserError(
            "--manifest must be outside --keys-dir: the manifest leaves the station, the keys do not"
        )
    station = KeysDir.create(keys_dir, key_store, pkcs11_pin=pkcs11_pin)
    with _Progress(len(pool), enabled=progress) as tick:
        result = run_factory(pool, station, manifest, batch=batch, on_key=tick)
    summary = {
        "serials": result.serials,
        "made": result.made,
        "kept": result.kept,
        "key_store": key_store.value,
        "keys_dir": str(keys_dir),
        "manifest": str(result.manifest),
    }
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    typer.echo(
        f"{result.serials} serials: {result.made} keys made, {result.kept} already there ({key_store.value} "
        f"store in {keys_dir}); manifest {result.manifest}: "
        f"`fleetctl registry import {result.manifest}` binds each serial to its key"
    )


def factory_key(
    keys_dir: Path, key_store: KeyStore | None, pin: str, *, csr_flow: bool, serial: str
) -> Callable[[str], DeviceKey]:
    """`provision --keys-dir`: the key the factory gave this serial, found before anything connects."""
    if not csr_flow:
        raise UserError("--keys-dir needs --flow csr: with --flow keys the endpoint makes the device's key")
    key = KeysDir.open(keys_dir, key_store, pkcs11_pin=pin).load(serial)
    return lambda _serial: key


def fleet_keys(keys_dir: Path | None, pool: Sequence[str], *, csr_flow: bool) -> dict[str, Any]:
    """`fleet --keys-dir`: DeviceOptions' make_key. Every serial must have its key before the first device
    boots: a missing key is a setup error, and a fleet that ran half way would mix it into the outcomes."""
    if keys_dir is None:
        return {}
    if not csr_flow:
        raise UserError("--keys-dir needs --flow csr: with --flow keys the endpoint makes each device's key")
    pin = os.environ.get("DEVICE_SIM_PKCS11_PIN", DEFAULT_USER_PIN)
    station = KeysDir.open(keys_dir, None, pkcs11_pin=pin)
    missing = station.missing(pool)
    if missing:
        raise UserError(
            f"--keys-dir {keys_dir} has no key for {len(missing)} of {len(pool)} serials "
            f"(first: {missing[0]}); run `device-sim factory` for them first"
        )
    return {"make_key": station.load}


class _Progress:
    """A bar on a terminal; elsewhere one plain line every few seconds (CI logs, pipes)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.total, self.enabled = total, enabled
        self.done = self.made = 0
        self.last = time.monotonic()
        self.bar = Progress(
            TextColumn("[bold]keys"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not (enabled and self.console.is_terminal),
        )
        self.task = self.bar.add_task("keys", total=total)

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, serial: str, made: bool) -> None:
        self.done += 1
        self.made += made
        self.bar.advance(self.task)
        now = time.monotonic()
        if self.enabled and not self.console.is_terminal and now - self.last >= PLAIN_PROGRESS_EVERY_S:
            self.last = now
            print(f"factory: {self.done}/{self.total} keys ({self.made} made)", file=sys.stderr, flush=True)
