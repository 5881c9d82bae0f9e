"""`fleetctl certs expiring --within-days N`: the devices whose certificate to rotate soon."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetctl.cli_common import (
    EndpointFile,
    JsonOut,
    Region,
    Table_,
    err_console,
    out_console,
    print_json,
    registry,
    user_errors,
)
from fleetctl.expiring import DAY_MS, ExpiringScan, expiring, iso

PLAIN_PROGRESS_EVERY_S = 5.0  # when stderr is not a terminal: one line this often on a long scan

certs_app = typer.Typer(no_args_is_help=True, help="Device certificates: which expire soon.")


@certs_app.command("expiring")
@user_errors
def expiring_command(
    within_days: Annotated[
        float,
        typer.Option(
            "--within-days", min=0, help="List devices whose certificate expires within N days (0: expired)."
        ),
    ],
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Provisioned devices whose current certificate expires within N days, soonest first (expired too).
    Reads the serial registry only (one paginated scan): what the hook recorded for each certificate."""
    target, store = registry(table, region, endpoint_file)
    now_ms = int(time.time() * 1000)
    before_ms = now_ms + int(within_days * DAY_MS)
    scan = _scan(store.db, target.table, before_ms)
    if json_out:
        print_json(
            {
                "within_days": within_days,
                "before": iso(before_ms),
                "devices": [device.as_dict(now_ms) for device in scan.devices],
                "scanned": scan.scanned,
                "without_expiry": scan.without_expiry,
            }
        )
        return
    out = out_console()
    listing = Table(
        title=f"{len(scan.devices)} devices whose certificate expires before {iso(before_ms)} "
        f"(within {within_days:g} days)",
        title_justify="left",
    )
    for column in ("serial", "thing", "certificate", "expires (UTC)", "days left"):
        # Folded, never cut: a serial or an id must survive a narrow terminal whole.
        listing.add_column(column, justify="right" if column == "days left" else "left", overflow="fold")
    for device in scan.devices:
        days = device.days_left(now_ms)
        listing.add_row(
            device.serial,
            device.thing_name or "",
            (device.certificate_id or "")[:12] + ("… (rotating)" if device.rotation_pending else "…"),
            iso(device.expires_at_ms)[:16].replace("T", " "),
            "expired" if days <= 0 else f"{days:.1f}",
        )
    out.print(listing)
    if scan.without_expiry:
        err_console().print(
            f"note: {scan.without_expiry} provisioned serials have no recorded certificate expiry "
            "(reserved before the hook recorded it); they are not listed"
        )


def _scan(dynamodb: object, table: str, before_ms: int) -> ExpiringScan:
    """The scan, with a spinner for a person watching and a plain line every few seconds otherwise."""
    err = err_console()
    last = time.monotonic()

    def plain(scanned: int, found: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PLAIN_PROGRESS_EVERY_S:
            last = time.monotonic()
            print(f"fleetctl: scanned {scanned:,} items, {found:,} expiring", file=sys.stderr, flush=True)

    if not err.is_terminal:
        return expiring(dynamodb, table, before_ms=before_ms, on_page=plain)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("scanning the registry", total=None)

        def spin(scanned: int, found: int) -> None:
            progress.update(task, description=f"scanned {scanned:,} items, {found:,} expiring")

        return expiring(dynamodb, table, before_ms=before_ms, on_page=spin)
