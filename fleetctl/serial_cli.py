"""`fleetctl registry show|revoke|reset`: one serial's life after provisioning, and its certificates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from fleetctl import certificates
from fleetctl.cli_common import (
    EndpointFile,
    JsonOut,
    Region,
    Table_,
    print_json,
    registry,
    registry_app,
    user_errors,
)
from fleetctl.errors import FleetctlError
from fleetctl.registry_store import RegistryStore
from fleetctl.target import Target


@registry_app.command("show")
@user_errors
def show(
    serial: str,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Show one serial's registry item and its certificate history (with AWS IoT's status of each)."""
    target, store = registry(table, region, endpoint_file)
    item = store.get(serial)
    if item is None:
        raise FleetctlError(f"serial {serial!r} is not in the registry")
    history = certificate_history(target, store, item)
    if json_out:
        print_json({**item, "certificates": history})
        return
    # Plain lines, not a table: a fingerprint or certificate id must survive a narrow terminal unbroken.
    width = max(map(len, item))
    lines = [f"serial {serial}"]
    for key in sorted(item):
        value = item[key]
        lines.append(f"  {key:<{width}}  {json.dumps(value) if isinstance(value, dict | list) else value}")
    if history:
        lines.append("certificates (oldest first)")
        for entry in history:
            issued = when(entry.get("issued_at"))
            retired = (
                f", retired {when(entry['retired_at'])} ({entry.get('retired_reason')})"
                if entry.get("retired_at")
                else ""
            )
            lines.append(
                f"  {entry['certificate_id']}  {entry.get('iot_status') or 'not in AWS IoT'}; "
                f"issued {issued} ({entry.get('issued_reason', '?')}){retired}"
            )
    typer.echo("\n".join(lines))


def certificate_history(target: Target, store: RegistryStore, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The serial's certificates (registry `cert#` items, oldest first), each with AWS IoT's status now."""
    ids = certificates.serial_certificate_ids(item)
    if not ids:
        return []
    history = store.certificate_history(ids)
    iot = target.client("iot")
    for entry in history:
        entry["iot_status"] = certificates.status(iot, entry["certificate_id"])[0]
    history.sort(key=lambda entry: entry.get("issued_at") or 0)
    return history


def when(epoch_ms: Any) -> str:
    """Epoch milliseconds as ISO-8601 UTC to the second; `?` for anything else."""
    if not isinstance(epoch_ms, int | float):
        return "?"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds")


@registry_app.command("revoke")
@user_errors
def revoke(
    serial: str,
    deactivate: Annotated[
        bool,
        typer.Option(
            "--deactivate", help="Also deactivate its certificates in AWS IoT: the device is cut off at once."
        ),
    ] = False,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Never let this serial provision (again); with --deactivate, cut the device off too."""
    target, store = registry(table, region, endpoint_file)
    before = store.revoke(serial)
    retired: list[certificates.Retired] = []
    if deactivate:
        ids = certificates.serial_certificate_ids(before)
        retired = certificates.retire(target.client("iot"), ids, detach=False)
        store.mark_retired([r.certificate_id for r in retired if r.previous_status], "revoked")
    if json_out:
        print_json(
            {
                "serial": serial,
                "status": "REVOKED",
                "previous_status": before.get("status"),
                "deactivated": [r.as_dict() for r in retired],
            }
        )
        return
    typer.echo(f"{serial}: {before.get('status')} -> REVOKED")
    for record in retired:
        typer.echo(
            f"  certificate {record.certificate_id}: {record.previous_status or 'not in AWS IoT'} -> INACTIVE"
        )
    if before.get("certificate_id") and not deactivate:
        typer.echo(
            f"note: certificate {before['certificate_id']} of {before.get('thing_name')} still works in AWS "
            f"IoT; `registry revoke --deactivate` cuts the device off",
            err=True,
        )


@registry_app.command("reset")
@user_errors
def reset(
    serial: str,
    keep_certificate: Annotated[
        bool,
        typer.Option(
            "--keep-certificate",
            help="Leave the serial's certificates as they are in AWS IoT (by default they are deactivated "
            "and detached from their thing and policies).",
        ),
    ] = False,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Make a serial AVAILABLE again (an RMA, a re-flash), retiring the certificates it had."""
    target, store = registry(table, region, endpoint_file)
    item = store.get(serial)
    if item is None:
        raise FleetctlError(f"serial {serial!r} is not in the registry")
    retired: list[certificates.Retired] = []
    if not keep_certificate:
        # Certificates first: if AWS IoT fails half way, the serial is still reserved and a re-run finishes.
        retired = certificates.retire(
            target.client("iot"), certificates.serial_certificate_ids(item), detach=True
        )
        store.mark_retired([r.certificate_id for r in retired if r.previous_status], "reset")
    before = store.reset(serial)
    if json_out:
        print_json(
            {
                "serial": serial,
                "status": "AVAILABLE",
                "previous_status": before.get("status"),
                "previous_certificate_id": before.get("certificate_id"),
                "retired": [r.as_dict() for r in retired],
            }
        )
        return
    typer.echo(f"{serial}: {before.get('status')} -> AVAILABLE")
    for record in retired:
        detached = ", ".join(record.things + record.policies) or "nothing"
        was = record.previous_status or "not in AWS IoT"
        typer.echo(f"  certificate {record.certificate_id}: {was} -> INACTIVE, detached from {detached}")
    if keep_certificate and before.get("certificate_id"):
        typer.echo(
            f"note: certificate {before['certificate_id']} is left as it is in AWS IoT (--keep-certificate)",
            err=True,
        )
