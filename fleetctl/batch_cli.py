"""`fleetctl batch ...`: which claims may provision a batch, and whether its serials need a device key."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from fleetctl.cli_common import EndpointFile, JsonOut, Region, Table_, print_json, registry, user_errors
from fleetctl.errors import UsageError
from fleetctl.serial_csv import BATCH_RE

CERTIFICATE_ID_RE = re.compile(r"[0-9a-fA-F]{64}")

batch_app = typer.Typer(
    no_args_is_help=True, help="Factory batches: the claim credentials bound to them, device-key attestation."
)


def _check_batch(batch: str) -> None:
    if not BATCH_RE.fullmatch(batch):
        raise UsageError(f"batch {batch[:80]!r} is not a valid batch name")


@batch_app.command("bind")
@user_errors
def bind(
    batch: str,
    claim_certificate_id: Annotated[
        list[str], typer.Option("--claim-certificate-id", help="Claim certificate id (repeatable).")
    ],
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Only these claim certificates may provision this batch's serials (adds to any already bound)."""
    _check_batch(batch)
    bad = [c for c in claim_certificate_id if not CERTIFICATE_ID_RE.fullmatch(c)]
    if bad:
        raise UsageError(f"{bad[0][:80]!r} is not a certificate id (64 hex digits)")
    _, store = registry(table, region, endpoint_file)
    bound = store.bind(batch, [c.lower() for c in claim_certificate_id])
    if json_out:
        print_json({"batch": batch, "claim_certificate_ids": bound})
        return
    typer.echo(f"batch {batch}: bound to {len(bound)} claim certificate(s): {', '.join(bound)}")


@batch_app.command("require-key")
@user_errors
def require_key(
    batch: str,
    off: Annotated[
        bool, typer.Option("--off", help="No longer require it (serials with a fingerprint still need it).")
    ] = False,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Every serial of this batch must have a device-key fingerprint (public_key_sha256) to provision."""
    _check_batch(batch)
    _, store = registry(table, region, endpoint_file)
    store.require_key(batch, not off)
    if json_out:
        print_json({"batch": batch, "require_device_key": not off})
        return
    if off:
        typer.echo(
            f"batch {batch}: a device key is no longer required (where a serial has one, it must match)"
        )
    else:
        typer.echo(f"batch {batch}: every serial needs a device-key fingerprint to provision")
        typer.echo("note: `fleetctl registry stats` shows how many of its serials have none", err=True)


@batch_app.command("show")
@user_errors
def show(
    batch: str,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Which claim certificates a batch is bound to, and whether its serials need a device key."""
    _, store = registry(table, region, endpoint_file)
    item = store.batch(batch)
    # No claim set, or no item: any claim may provision it (registry_store.bound_claims says why).
    claims = (item or {}).get("claim_certificate_ids")
    required = bool((item or {}).get("require_device_key", False))
    if json_out:
        print_json({"batch": batch, "claim_certificate_ids": claims, "require_device_key": required})
        return
    if claims is None:
        typer.echo(f"batch {batch}: not bound (any claim of the template may provision its serials)")
    else:
        typer.echo(f"batch {batch}: {', '.join(claims)}")
    typer.echo(
        f"batch {batch}: device key "
        + ("required for every serial" if required else "not required (checked where a serial has one)")
    )
