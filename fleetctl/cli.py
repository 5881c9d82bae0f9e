"""Command line: the app and its registry commands (batch_cli and claim_cli hold the others).

Typer options, rich progress and printing live here; the work is in the modules beside this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cli_conventions import EXIT_CODES_HELP, one_line_errors
from fleetctl import serial_cli, why_cli  # noqa: F401 - register show, revoke, reset; why
from fleetctl.batch_cli import batch_app
from fleetctl.certs_cli import certs_app
from fleetctl.claim_cli import claim_app
from fleetctl.cli_common import (
    ConfigFile,
    EndpointFile,
    JsonOut,
    Region,
    SerialPattern,
    Table_,
    err_console,
    out_console,
    print_json,
    registry,
    registry_app,
    user_errors,
)
from fleetctl.errors import UsageError
from fleetctl.importer import ImportReport, RowSource, import_serials, plural
from fleetctl.manifest import (
    DEVICE_KEY_SLOT,
    SERIAL_SOURCES,
    ManifestOptions,
    MicrochipManifest,
    check_batch,
    load_serial_map,
    load_signers,
)
from fleetctl.serial_csv import SerialCsv
from fleetctl.target import Settings, Target, load_settings

LISTED = 20  # bad rows / kept serials shown in the table; --json lists up to 1000

app = typer.Typer(
    cls=one_line_errors("fleetctl"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Operate the fleet provisioning backend: serial registry, batches, claim credentials, certificates.",
    epilog=EXIT_CODES_HELP,
)
app.add_typer(registry_app, name="registry")
app.add_typer(batch_app, name="batch")
app.add_typer(claim_app, name="claim")
app.add_typer(certs_app, name="certs")


# -- registry ------------------------------------------------------------------------------------------


@registry_app.command("import")
@user_errors
def import_(
    file: Annotated[
        Path, typer.Argument(help="CSV with a header row: serial[,batch][,public_key_sha256][,attribute...]")
    ],
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
    target, store = registry(table, region, endpoint_file)
    settings = load_settings(cdk_json=config, serial_pattern=serial_pattern, target=target)
    _run_import(
        SerialCsv(file, settings), store, target, settings, skip_invalid=skip_invalid, json_out=json_out
    )


@registry_app.command("import-manifest")
@user_errors
def import_manifest(
    file: Annotated[
        Path, typer.Argument(help="A Microchip secure-element manifest (JSON), e.g. Trust&GO's.")
    ],
    serial_from: Annotated[
        str | None,
        typer.Option(
            "--serial-from",
            help="unique-id: the chip's serial number (lowercase hex) is the serial; certificate-cn: the CN "
            "of the device certificate (Trust&GO: sn<UNIQUEID>).",
        ),
    ] = None,
    serial_map: Annotated[
        Path | None,
        typer.Option("--serial-map", help="CSV unique_id,serial from the test station: the product serials."),
    ] = None,
    verify_signer: Annotated[
        list[Path] | None,
        typer.Option(
            "--verify-signer", help="Manifest signer certificate, PEM (repeatable): check every entry."
        ),
    ] = None,
    skip_signature_check: Annotated[
        bool, typer.Option("--skip-signature-check", help="Trust the file as it is (not recommended).")
    ] = False,
    key_slot: Annotated[
        str, typer.Option("--key-slot", help="The device key's slot (JWK kid); Trust&GO: 0.")
    ] = DEVICE_KEY_SLOT,
    batch: Annotated[str | None, typer.Option("--batch", help="Put every serial in this batch.")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the good entries, list the bad.")
    ] = False,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    config: ConfigFile = None,
    serial_pattern: SerialPattern = None,
    json_out: JsonOut = False,
) -> None:
    """Import serials with their device-key fingerprints from a secure-element vendor's manifest."""
    if (serial_from is None) == (serial_map is None):
        raise UsageError(
            "say where serials come from: --serial-from unique-id|certificate-cn or --serial-map FILE"
        )
    if serial_from is not None and serial_from not in SERIAL_SOURCES:
        raise UsageError(f"--serial-from {serial_from[:40]!r}: expected {' or '.join(SERIAL_SOURCES)}")
    if bool(verify_signer) == skip_signature_check:
        raise UsageError(
            "give --verify-signer CERT.pem (the vendor's manifest signer certificate) to check the entries' "
            "signatures, or --skip-signature-check to trust the file as it is"
            if not skip_signature_check
            else "--verify-signer and --skip-signature-check exclude each other"
        )
    target, store = registry(table, region, endpoint_file)
    settings = load_settings(cdk_json=config, serial_pattern=serial_pattern, target=target)
    options = ManifestOptions(
        serial_from=serial_from,
        serial_map=load_serial_map(serial_map, settings) if serial_map is not None else None,
        key_slot=key_slot,
        batch=check_batch(batch),
        signers=load_signers(verify_signer or []),
    )
    source = MicrochipManifest(file, settings, options)
    _run_import(source, store, target, settings, skip_invalid=skip_invalid, json_out=json_out)


def _run_import(
    source: RowSource, store: Any, target: Target, settings: Settings, *, skip_invalid: bool, json_out: bool
) -> None:
    err = err_console()
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
            source,
            store,
            skip_invalid=skip_invalid,
            known_attributes=settings.thing_attributes,
            on_validate=lambda n: progress.advance(checking, n),
            on_write=lambda n: progress.advance(writing[0], n),
            before_write=before_write,
        )
    if json_out:
        print_json({"file": str(source.path), "table": target.table, **report.as_dict()})
        return
    _print_import(report, source, target)


def _print_import(report: ImportReport, source: RowSource, target: Target) -> None:
    out, err = out_console(), err_console()
    summary = Table(title=f"import {source.path.name} → {target.table}", show_header=True)
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
        bad = Table(title=f"skipped {plural(source.unit)} ({report.invalid})")
        bad.add_column(source.unit, justify="right")
        bad.add_column("reason")
        for row in report.bad_rows[:LISTED]:
            bad.add_row(str(row.line), row.reason)
        out.print(bad)
        if report.invalid > LISTED:
            out.print(f"... and {report.invalid - LISTED} more (--json lists up to 1000)")
    if report.kept:
        err.print(
            f"warning: {report.kept} serial(s) already RESERVED or REVOKED with other batch, attributes "
            f"or key were left as they are (e.g. {', '.join(report.kept_serials[:5])}); "
            f"`fleetctl registry reset` first to change them"
        )
    if report.unknown_attribute_columns:
        err.print(
            f"note: column(s) {', '.join(report.unknown_attribute_columns)} are stored but not in "
            f"thing_attributes, so the template does not apply them"
        )


@registry_app.command("stats")
@user_errors
def stats(
    table: Table_ = None, region: Region = None, endpoint_file: EndpointFile = None, json_out: JsonOut = False
) -> None:
    """Counts by status, by batch, and of serials with a device-key fingerprint (a full table scan)."""
    target, store = registry(table, region, endpoint_file)
    result = store.stats()
    if json_out:
        print_json({"table": target.table, **result})
        return
    out = out_console()
    by_status = Table(title=f"{target.table}: {result['total']} serials")
    for column in (*result["by_status"], "with key", "without key"):
        by_status.add_column(column, justify="right")
    keys = result["public_key_sha256"]
    by_status.add_row(
        *(str(n) for n in result["by_status"].values()), str(keys["with"]), str(keys["without"])
    )
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
    _print_device_keys(result)


def _print_device_keys(result: dict[str, Any]) -> None:
    """Device keys by batch, once any serial has a key or any batch requires one."""
    batches = result["by_batch"]
    if not result["public_key_sha256"]["with"] and not any(r["require_device_key"] for r in batches.values()):
        return
    keys = Table(title="device keys (public_key_sha256) by batch")
    for column in ("batch", "with key", "without key", "key required"):
        keys.add_column(column, justify="left" if column == "batch" else "right")
    locked_out = []
    for name, row in batches.items():
        without = row["total"] - row["with_public_key_sha256"]
        keys.add_row(
            name,
            str(row["with_public_key_sha256"]),
            str(without),
            "yes" if row["require_device_key"] else "no",
        )
        if row["require_device_key"] and without:
            locked_out.append(f"{name} ({without})")
    out_console().print(keys)
    if locked_out:
        err_console().print(
            "warning: serials without a key in batches that require one cannot provision: "
            + ", ".join(locked_out)
        )


def main() -> None:
    app(prog_name="fleetctl")
