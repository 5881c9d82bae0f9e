"""`fleetctl registry why SERIAL`: one screen on what happened to a serial (fleetctl/why.py gathers it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from fleetctl import why as diagnosis
from fleetctl.cli_common import (
    ConfigFile,
    EndpointFile,
    JsonOut,
    Region,
    Table_,
    err_console,
    out_console,
    print_json,
    registry,
    registry_app,
    user_errors,
)
from fleetctl.errors import UsageError
from fleetctl.serial_cli import certificate_history, when
from fleetctl.target import Target, load_settings

SHOWN = 15  # attempts in the table; --json has them all


@registry_app.command("why")
@user_errors
def why(
    serial: str,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="A log with the hook's decision lines. Emulator: default STATE_DIR/emulator.log beside the "
            "endpoint file (the emulator's output).",
        ),
    ] = None,
    log_group: Annotated[
        str | None,
        typer.Option(
            "--log-group", help="AWS: the hook's log group (default: found from the template's hook)."
        ),
    ] = None,
    template_name: Annotated[
        str | None,
        typer.Option(
            "--template-name", help="AWS: the provisioning template whose hook to ask (default: cdk.json's)."
        ),
    ] = None,
    since_days: Annotated[
        float, typer.Option("--since-days", min=0.01, max=3650, help="AWS: how far back the query looks.")
    ] = 30.0,
    table: Table_ = None,
    region: Region = None,
    endpoint_file: EndpointFile = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
) -> None:
    """What happened to a serial: each attempt the hook decided, its certificates, and the thing it became."""
    target, store = registry(table, region, endpoint_file)
    item = store.get(serial)
    iot = target.client("iot")
    history = certificate_history(target, store, item) if item else []
    settings = load_settings(cdk_json=config, serial_pattern=None, target=target)
    thing_name = (item or {}).get("thing_name") or f"{settings.thing_name_prefix}{serial}"
    thing_now = diagnosis.thing(iot, thing_name)
    attempts, source, events = _attempts(target, serial, log, log_group, template_name, since_days, settings)
    result = {
        "serial": serial,
        "verdict": diagnosis.verdict(item, attempts, thing_now),
        "registry": item,
        "certificates": history,
        "thing": thing_now,
        "attempts": None if attempts is None else [a.as_dict() for a in attempts],
        "attempts_source": source,
        "emulator_events": events,
    }
    if json_out:
        print_json(result)
        return
    _print(result, attempts or [])


def _attempts(
    target: Target,
    serial: str,
    log: Path | None,
    log_group: str | None,
    template_name: str | None,
    since_days: float,
    settings: Any,
) -> tuple[list[diagnosis.Attempt] | None, str, list[str]]:
    """The hook's decisions (None: no log to read them from), their source, the emulator's refusals."""
    if log is None and target.endpoint_file is not None:
        default = target.endpoint_file.parent / "emulator.log"
        if not default.is_file():
            # The demo, the tests and emulator.process write it; `iot-emulator up` in a terminal does not.
            return None, f"no log at {default} (redirect the emulator's output there, or give --log)", []
        log = default
    if log is not None:
        events: list[str] = []
        if target.endpoint is not None:
            pattern = str(target.endpoint.get("claim_client_id_pattern") or "prov-*")
            events = diagnosis.emulator_events(log, pattern.replace("*", serial, 1))
        return diagnosis.attempts_in_log(log, serial), str(log), events
    if target.endpoint_url is not None:
        raise UsageError("give --log FILE: the emulator's hook decisions are in its output")
    group = log_group or diagnosis.hook_log_group(
        target.client("iot"), target.client("lambda"), template_name or settings.template_name
    )
    err = err_console()

    def waiting(status: str) -> None:
        if not err.is_terminal:
            return
        err.print(f"Logs Insights query over {group}: {status.lower()}…", end="\r")

    attempts = diagnosis.attempts_in_insights(
        target.client("logs"), group, serial, since_s=since_days * 86400, on_wait=waiting
    )
    return attempts, f"CloudWatch Logs Insights over {group}, last {since_days:g} days", []


def _print(result: dict[str, Any], attempts: list[diagnosis.Attempt]) -> None:
    out = out_console()
    out.print(f"[bold]{result['serial']}[/]: {result['verdict']}", markup=True, highlight=False)
    item = result["registry"]
    if item is None:
        out.print("registry: no item")
    else:
        fields = ("status", "batch", "thing_name", "certificate_id", "claim_certificate_id", "client_id")
        shown = [f"{k}={item[k]}" for k in fields if item.get(k)]
        if item.get("reserved_at"):
            shown.append(f"reserved_at={when(item['reserved_at'])}")
        if item.get("public_key_sha256"):
            shown.append(f"public_key_sha256={str(item['public_key_sha256'])[:16]}…")
        out.print("registry: " + " ".join(shown), highlight=False, soft_wrap=True)
    # Six narrow columns, no vertical rules: one screen at 80 columns. The reason says allow or deny.
    table = Table(
        title=f"attempts the hook decided ({len(attempts)}; from {result['attempts_source']})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        show_edge=False,
    )
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("client id", overflow="fold")
    table.add_column("cert", no_wrap=True)
    table.add_column("claim", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for attempt in attempts[-SHOWN:]:
        table.add_row(
            (attempt.time or "?")[:19].replace("T", " "),
            f"[green]{attempt.reason}[/]" if attempt.allowed else f"[red]{attempt.reason}[/]",
            attempt.client_id or "",
            (attempt.certificate_id or "")[:8],
            (attempt.claim_certificate_id or "")[:8],
            attempt.detail or "",
        )
    if attempts:
        out.print(table)
        if len(attempts) > SHOWN:
            out.print(f"… and {len(attempts) - SHOWN} earlier (--json lists them all)")
    elif result["attempts"] is None:
        out.print(f"attempts: unknown, {result['attempts_source']}")
    else:
        out.print(f"attempts: none in {result['attempts_source']}")
    for event in result["emulator_events"]:
        out.print(f"refused before the hook: {event}", highlight=False, soft_wrap=True)
    if result["certificates"]:
        certificates = Table(
            title="certificates (oldest first)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 0),
            show_edge=False,
        )
        for column in ("certificate", "AWS IoT", "issued (UTC)", "as", "retired"):
            certificates.add_column(column, overflow="fold")
        for entry in result["certificates"]:
            retired = entry.get("retired_at")
            certificates.add_row(
                entry["certificate_id"][:12],
                entry.get("iot_status") or "gone",
                when(entry.get("issued_at")),
                str(entry.get("issued_reason") or "?"),
                f"{when(retired)} ({entry.get('retired_reason')})" if retired else "",
            )
        out.print(certificates)
    thing_now = result["thing"]
    if thing_now is None:
        out.print("thing: none")
    else:
        attributes = (
            json.dumps(thing_now["attributes"], sort_keys=True) if thing_now["attributes"] else "none"
        )
        owners = ", ".join(c[:12] for c in thing_now["certificate_ids"]) or "none"
        out.print(
            f"thing {thing_now['thing_name']}: attributes {attributes}; certificates {owners}",
            highlight=False,
        )
    sys.stdout.flush()
