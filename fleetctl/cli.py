"""Command line: typer options, rich progress and printing. The work is in the modules beside this one."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fleetctl import claims
from fleetctl.errors import FleetctlError
from fleetctl.importer import ImportReport, import_serials
from fleetctl.registry_store import RegistryStore
from fleetctl.serial_csv import BATCH_RE, SerialCsv
from fleetctl.target import Target, load_settings, resolve_target

CERTIFICATE_ID_RE = re.compile(r"[0-9a-fA-F]{64}")
LISTED = 20  # bad rows / kept serials shown in the table; --json lists up to 1000

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Operate the fleet provisioning backend: serial registry, batches, claim credentials.",
)
registry_app = typer.Typer(no_args_is_help=True, help="The serial registry (DynamoDB).")
batch_app = typer.Typer(no_args_is_help=True, help="Factory batches and the claim credentials bound to them.")
claim_app = typer.Typer(no_args_is_help=True, help="Claim credentials.")
app.add_typer(registry_app, name="registry")
app.add_typer(batch_app, name="batch")
app.add_typer(claim_app, name="claim")

Table_ = Annotated[str | None, typer.Option("--table", help="Serial table name (real AWS).")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region (default: AWS_REGION / profile).")]
EndpointFile = Annotated[Path | None, typer.Option("--endpoint-file", help="Emulator endpoint.json.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="cdk.json holding context.fleet (default: the repository's).")
]
SerialPattern = Annotated[
    str | None, typer.Option("--serial-pattern", help="Override the configured pattern.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]

F = TypeVar("F", bound=Callable[..., Any])


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def user_errors(command: F) -> F:
    """Every expected failure is one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FleetctlError as exc:
            message = str(exc)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, text = error.get("Code", "?"), error.get("Message", "")
            message = f"AWS refused {exc.operation_name}: {code}: {text}".strip()
        except BotoCoreError as exc:
            message = f"AWS call failed: {exc}"
        typer.echo(f"fleetctl: {' '.join(message.split())}", err=True)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _registry(
    table: str | None, region: str | None, endpoint_file: Path | None
) -> tuple[Target, RegistryStore]:
    target = resolve_target(table=table, region=region, endpoint_file=endpoint_file)
    return target, RegistryStore(target.client("dynamodb"), target.table)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


# -- registry ------------------------------------------------------------------------------------------


@registry_app.command("import")
@user_errors
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with a header row: serial[,batch][,attribute...]")],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the good rows, list the bad.")
    ] = False,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    config: ConfigFile = None,
    serial_pattern: SerialPattern = None,
    json_out: JsonOut = False,
) -> None:
    """Import serial numbers; every row is validated before anything is written."""
    target, store = _registry(table, region, endpoint_file)
    settings = load_settings(cdk_json=config, serial_pattern=serial_pattern, target=target)
    csv_file = SerialCsv(file, settings)
    err = _err()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:  # a bar only for a person watching
        checking = progress.add_task("validating", total=None)
        writing: list[Any] = []

        def before_write(valid: int) -> None:
            progress.update(checking, total=progress.tasks[0].completed)
            writing.append(progress.add_task("writing", total=valid))

        report = import_serials(
            csv_file,
            store,
            skip_invalid=skip_invalid,
            known_attributes=settings.thing_attributes,
            on_validate=lambda n: progress.advance(checking, n),
            on_write=lambda n: progress.advance(writing[0], n),
            before_write=before_write,
        )
    if json_out:
        _print_json({"file": str(file), "table": target.table, **report.as_dict()})
        return
    _print_import(report, file, target)


def _print_import(report: ImportReport, file: Path, target: Target) -> None:
    out, err = _out(), _err()
    summary = Table(title=f"import {file.name} → {target.table}", show_header=True)
    for column in ("rows", "valid", "invalid", "new", "updated", "unchanged", "kept"):
        summary.add_column(column, justify="right")
    summary.add_row(
        *(
            str(getattr(report, c))
            for c in ("rows", "valid", "invalid", "new", "updated", "unchanged", "kept")
        )
    )
    out.print(summary)
    if report.bad_rows:
        bad = Table(title=f"skipped rows ({report.invalid})")
        bad.add_column("line", justify="right")
        bad.add_column("reason")
        for row in report.bad_rows[:LISTED]:
            bad.add_row(str(row.line), row.reason)
        out.print(bad)
        if report.invalid > LISTED:
            out.print(f"... and {report.invalid - LISTED} more (--json lists up to 1000)")
    if report.kept:
        err.print(
            f"warning: {report.kept} serial(s) already RESERVED or REVOKED with different batch/attributes "
            f"were left as they are (e.g. {', '.join(report.kept_serials[:5])}); "
            f"`fleetctl registry reset` first to change them"
        )
    if report.unknown_attribute_columns:
        err.print(
            f"note: column(s) {', '.join(report.unknown_attribute_columns)} are stored but not in "
            f"thing_attributes, so the template does not apply them"
        )


@registry_app.command("show")
@user_errors
def show(
    serial: str,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Show one serial's registry item."""
    _, store = _registry(table, region, endpoint_file)
    item = store.get(serial)
    if item is None:
        raise FleetctlError(f"serial {serial!r} is not in the registry")
    if json_out:
        _print_json(item)
        return
    view = Table(show_header=False, title=f"serial {serial}")
    view.add_column("field", style="bold")
    view.add_column("value")
    for key in sorted(item):
        value = item[key]
        view.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    _out().print(view)


@registry_app.command("revoke")
@user_errors
def revoke(
    serial: str,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Never let this serial provision (again). Its existing thing and certificate are not touched."""
    _, store = _registry(table, region, endpoint_file)
    before = store.revoke(serial)
    if json_out:
        _print_json({"serial": serial, "status": "REVOKED", "previous_status": before.get("status")})
        return
    typer.echo(f"{serial}: {before.get('status')} -> REVOKED")
    if before.get("certificate_id"):
        typer.echo(
            f"note: certificate {before['certificate_id']} of {before.get('thing_name')} is still as it was "
            f"in AWS IoT; deactivate it there to cut the device off",
            err=True,
        )


@registry_app.command("reset")
@user_errors
def reset(
    serial: str,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Make a serial AVAILABLE again and forget its reservation (an RMA, a re-flash)."""
    _, store = _registry(table, region, endpoint_file)
    before = store.reset(serial)
    if json_out:
        _print_json(
            {
                "serial": serial,
                "status": "AVAILABLE",
                "previous_status": before.get("status"),
                "previous_certificate_id": before.get("certificate_id"),
            }
        )
        return
    typer.echo(f"{serial}: {before.get('status')} -> AVAILABLE")
    if before.get("certificate_id"):
        typer.echo(
            f"note: the reservation for certificate {before['certificate_id']} is forgotten; the thing "
            f"{before.get('thing_name')} and that certificate remain in AWS IoT",
            err=True,
        )


@registry_app.command("stats")
@user_errors
def stats(
    table: Table_ = None, region: Region = None, endpoint_file: EndpointFile = None, json_out: JsonOut = False
) -> None:
    """Counts by status and by batch (a full table scan)."""
    target, store = _registry(table, region, endpoint_file)
    result = store.stats()
    if json_out:
        _print_json({"table": target.table, **result})
        return
    out = _out()
    by_status = Table(title=f"{target.table}: {result['total']} serials")
    for status in result["by_status"]:
        by_status.add_column(status, justify="right")
    by_status.add_row(*(str(n) for n in result["by_status"].values()))
    out.print(by_status)
    by_batch = Table(title="by batch")
    for column in ("batch", "total", "AVAILABLE", "RESERVED", "REVOKED", "bound claims"):
        by_batch.add_column(column, justify="left" if column == "batch" else "right")
    for name, row in result["by_batch"].items():
        bound = row["bound_claims"]
        by_batch.add_row(
            name,
            str(row["total"]),
            str(row["AVAILABLE"]),
            str(row["RESERVED"]),
            str(row["REVOKED"]),
            "any claim" if bound is None else str(bound),
        )
    out.print(by_batch)


# -- batch ---------------------------------------------------------------------------------------------


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
    if not BATCH_RE.fullmatch(batch):
        raise FleetctlError(f"batch {batch[:80]!r} is not a valid batch name")
    bad = [c for c in claim_certificate_id if not CERTIFICATE_ID_RE.fullmatch(c)]
    if bad:
        raise FleetctlError(f"{bad[0][:80]!r} is not a certificate id (64 hex digits)")
    _, store = _registry(table, region, endpoint_file)
    bound = store.bind(batch, [c.lower() for c in claim_certificate_id])
    if json_out:
        _print_json({"batch": batch, "claim_certificate_ids": bound})
        return
    typer.echo(f"batch {batch}: bound to {len(bound)} claim certificate(s): {', '.join(bound)}")


@batch_app.command("show")
@user_errors
def batch_show(
    batch: str,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    json_out: JsonOut = False,
) -> None:
    """Which claim certificates a batch is bound to."""
    _, store = _registry(table, region, endpoint_file)
    item = store.batch(batch)
    claims_bound = None if item is None else item.get("claim_certificate_ids", [])
    if json_out:
        _print_json({"batch": batch, "claim_certificate_ids": claims_bound})
        return
    if claims_bound is None:
        typer.echo(f"batch {batch}: not bound (any claim of the template may provision its serials)")
    else:
        typer.echo(f"batch {batch}: {', '.join(claims_bound)}")


# -- claim ---------------------------------------------------------------------------------------------


@claim_app.command("export")
@user_errors
def export(
    name: str,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the credential into.")],
    region: Region = None,
    endpoint_file: EndpointFile = None,
    secret_id: Annotated[
        str | None,
        typer.Option(
            "--secret-id", help="Secret name or ARN (default: <stack_name>/claim-credentials/<NAME>)."
        ),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="AWS: the AmazonRootCA1.pem to ship alongside.")
    ] = None,
    config: ConfigFile = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Write a generated-mode claim credential: claim.cert.pem, claim.private.key (0600), ca.pem."""
    if endpoint_file is not None:
        target = resolve_target(table="-", region=region, endpoint_file=endpoint_file)
        material = claims.from_endpoint_file(target, name)
    else:
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise FleetctlError("say where: --region R (AWS) or --endpoint-file F (emulator)")
        settings = load_settings(cdk_json=config, serial_pattern=None)
        material = claims.from_secrets_manager(
            Target(table="-", region=region),
            name,
            stack_name=settings.stack_name,
            secret_id=secret_id,
            ca_file=ca_file,
        )
    manifest = claims.write_claim(material, out, force=force)
    if json_out:
        _print_json(manifest)
        return
    typer.echo(f"claim {name} ({material.certificate_id or 'id unknown'}) from {material.source} -> {out}")
    if "ca_note" in manifest:
        typer.echo(f"note: {manifest['ca_note']}", err=True)


def main() -> None:
    app(prog_name="fleetctl")
