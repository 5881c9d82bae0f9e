"""`device-sim fleet` and `device-sim report merge|show`: many devices, the report, and its thresholds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli_conventions import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, say
from device_sim.cli_options import (
    DEFAULT_MQTT,
    CaFile,
    CertificateFlow,
    Claim,
    ClaimCert,
    ClaimKey,
    ClientIdPattern,
    Endpoint,
    EndpointFile,
    FlowOpt,
    FormatOpt,
    KeepIdentities,
    MaxFailed,
    MaxP99,
    MaxRejected,
    MqttOpt,
    Params,
    PayloadFormat,
    Port,
    ProgressEvery,
    Rotate,
    RotationTemplateOpt,
    TemplateName,
    TimeoutOpt,
    parse_parameters,
    target_from_options,
)
from device_sim.errors import TOOL, UserError
from device_sim.factory_cli import KeysDirOpt, fleet_keys
from device_sim.rotate_cli import rotation_template


def fleet(
    endpoint_file: EndpointFile = None,
    claim: Claim = None,
    endpoint: Endpoint = None,
    port: Port = None,
    ca_file: CaFile = None,
    claim_cert_file: ClaimCert = None,
    claim_key_file: ClaimKey = None,
    template_name: TemplateName = None,
    client_id_pattern: ClientIdPattern = None,
    devices: Annotated[
        int | None,
        typer.Option("--devices", min=1, help="How many devices (default: all serials of --serials)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=10_000, help="Devices in flight at once.")
    ] = 50,
    rate: Annotated[float | None, typer.Option("--rate", min=0.001, help="Arrivals per second.")] = None,
    ramp_s: Annotated[
        float, typer.Option("--ramp-s", min=0, help="Ramp the rate up from 0 over this.")
    ] = 0.0,
    serials: Annotated[
        Path | None, typer.Option("--serials", help="Serials file (one a line, or CSV).")
    ] = None,
    serial_prefix: Annotated[
        str, typer.Option("--serial-prefix", help="Prefix of generated serials.")
    ] = "SIM-",
    shard: Annotated[
        str | None, typer.Option("--shard", help="I/N: run the I-th of N slices of the serials.")
    ] = None,
    fmt: FormatOpt = PayloadFormat.json,
    mqtt: MqttOpt = DEFAULT_MQTT,
    flow: FlowOpt = CertificateFlow.csr,
    keys_dir: KeysDirOpt = None,
    params: Params = None,
    report: Annotated[Path, typer.Option("--report", help="Report JSON to write.")] = Path(
        "reports/fleet.json"
    ),
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    timeout_s: TimeoutOpt = 30.0,
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, max=20, help="Tries per device on throttling and time-outs.")
    ] = 4,
    threads: Annotated[
        int, typer.Option("--threads", min=0, help="CRT event-loop threads (0: one per core).")
    ] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Live progress line.")] = True,
    progress_every_s: ProgressEvery = 10.0,
    max_p99_ms: MaxP99 = None,
    max_failed: MaxFailed = 0,
    max_rejected: MaxRejected = None,
    keep_identities: KeepIdentities = None,
    rotate: Rotate = False,
    rotation_template_name: RotationTemplateOpt = None,
) -> None:
    """Provision many devices and write the load-test report (with --rotate: rotate their certificates).

    Exit 0 when the run passed its thresholds, 1 when it did not (a device failed, by default; every device
    rejected; or a --max-* limit), 2 on bad input, 130 when interrupted (the partial report is written).
    """
    from device_sim.device import KEY_CROSSED_NETWORK, DeviceOptions, RetryPolicy
    from device_sim.fleet import FleetPlan, GeneratedSerials, Shard, read_serials, run_fleet
    from device_sim.html_report import write_html
    from device_sim.preflight import check_target
    from device_sim.report import FleetStats, write_report
    from device_sim.transport import Transport

    target = target_from_options(
        endpoint_file,
        claim,
        endpoint,
        port,
        ca_file,
        claim_cert_file,
        claim_key_file,
        template_name,
        client_id_pattern,
    )
    parameters = parse_parameters(params)
    if rate is None and ramp_s:
        raise UserError("--ramp-s needs --rate")
    from device_sim import rotation_fleet

    if rotate:
        rotation_fleet.check_rotate_options(
            keep_identities, flow=flow.value, keys_dir=keys_dir, params=params
        )
        pool: Any = rotation_fleet.kept_devices(keep_identities, serials, devices)
    elif serials is not None:
        pool = read_serials(serials)
        if devices is not None:
            if devices > len(pool):
                raise UserError(f"--devices {devices} but {serials} holds only {len(pool)} serials")
            pool = pool[:devices]
    elif devices is not None:
        pool = GeneratedSerials(serial_prefix, devices)
    else:
        raise UserError("give --devices N (generated serials) or --serials FILE")
    the_shard = Shard.parse(shard) if shard else None
    if the_shard is not None:
        pool = the_shard.take(pool)
    if not len(pool):
        raise UserError(f"shard {the_shard} of {devices or 'the'} serials is empty")
    key_options = fleet_keys(keys_dir, pool, csr_flow=flow is CertificateFlow.csr)
    check_target(target, timeout_s=min(timeout_s, 5.0))
    if flow is CertificateFlow.keys:
        print(KEY_CROSSED_NETWORK, file=sys.stderr)

    transport = Transport(target, mqtt_version=mqtt.value, threads=threads, timeout_s=timeout_s)
    options = DeviceOptions(
        fmt=fmt.value,
        flow=flow.value,
        parameters=parameters,
        retry=RetryPolicy(attempts=attempts),
        **key_options,
    )
    plan = FleetPlan(serials=pool, concurrency=concurrency, rate_per_s=rate, ramp_s=ramp_s)
    stats = FleetStats(
        run={
            "target": target.address,
            "template_name": target.template_name,
            "format": fmt.value,
            "mqtt": mqtt.value,
            "flow": flow.value,
            "concurrency": concurrency,
            "rate_per_s": rate,
            "ramp_s": ramp_s,
            "shard": str(the_shard) if the_shard else None,
        }
    )
    run_device = rotation_fleet.device_runner(
        keep_identities,
        rotate=rotate,
        rotation_template_name=rotation_template(endpoint_file, rotation_template_name) if rotate else None,
        fmt=fmt.value,
        attempts=attempts,
    )
    if rotate:
        rotation_fleet.as_rotation_report(stats, rotation_template(endpoint_file, rotation_template_name))
    from device_sim.progress import FleetProgress
    from device_sim.thresholds import Thresholds

    thresholds = Thresholds(max_p99_ms=max_p99_ms, max_failed=max_failed, max_rejected=max_rejected)
    with FleetProgress(len(pool), enabled=progress, every_s=progress_every_s) as live:
        try:
            asyncio.run(
                run_fleet(transport, plan, options, stats, on_tick=live.update, run_device=run_device)
            )
        except KeyboardInterrupt:
            stats.run["interrupted"] = True
            write_report(stats, report)
            if html is not None:
                write_html(stats, html)
            say(TOOL, f"interrupted; partial report in {report}" + (f" and {html}" if html else ""))
            raise typer.Exit(EXIT_INTERRUPTED) from None
    write_report(stats, report)
    if html is not None:
        write_html(stats, html)
    print_summary(stats, report, html)
    raise typer.Exit(verdict(stats, thresholds))


def verdict(stats: Any, thresholds: Any) -> int:
    """Print each broken threshold as one line on stderr; the exit code (0 passed, 1 not)."""
    breaches = thresholds.breaches(stats)
    for line in breaches:
        say(TOOL, f"threshold: {line}")
    return EXIT_REFUSED if breaches else EXIT_OK


def print_summary(stats: Any, report: Path | None, html: Path | None, console: Console | None = None) -> None:
    from device_sim.report import TOTAL

    console = console or Console(highlight=False)
    data = stats.to_json()
    interrupted = f", {data['interrupted']:,} interrupted" if data["interrupted"] else ""
    table = Table(
        title=f"{data['devices']:,} devices in {data['duration_s']:.1f} s: "
        f"{data['provisioned']:,} {'rotated' if stats.run.get('operation') == 'rotate' else 'provisioned'}, "
        f"{data['rejected']:,} rejected, "
        f"{data['failed']:,} failed{interrupted}; {data['throughput_per_s']:.1f}/s; "
        f"{data['retries']['total']} retries",
        title_justify="left",
    )
    columns = ("p50", "p90", "p95", "p99", "max", "mean")
    table.add_column("latency ms")
    for column in (*columns, "count"):
        table.add_column(column, justify="right")
    for name in (TOTAL, *(s for s in stats.histograms if s != TOTAL)):  # the run's steps, in order
        values = data["latency_ms"].get(name)
        if values is None:
            continue
        table.add_row(
            name,
            *(f"{values.get(k, 0):,.1f}" for k in columns),
            f"{stats.histograms[name].count:,}",
        )
    console.print(table)
    for code, n in data["rejections"].items():
        console.print(f"  rejected [yellow]{code}[/]: {n}")
    for kind, n in data["failures"].items():
        console.print(f"  failed [red]{kind}[/]: {n}")
    if report is not None:
        console.print(f"report: {report}" + (f"   html: {html}" if html else ""))


def report_merge(
    reports: Annotated[list[Path], typer.Argument(help="Fleet reports of the shards.")],
    out: Annotated[Path, typer.Option("--out", help="Merged report JSON.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write the HTML report.")] = None,
    max_p99_ms: MaxP99 = None,
    max_failed: Annotated[
        int | None, typer.Option("--max-failed", min=0, help="Exit 1 when more devices than this failed.")
    ] = None,
    max_rejected: MaxRejected = None,
) -> None:
    """Combine shard reports exactly (counts and latency histograms add up); exit 1 past a given threshold."""
    from device_sim.html_report import write_html
    from device_sim.report import merge_stats, read_report, write_report
    from device_sim.thresholds import Thresholds

    merged = merge_stats([read_report(path) for path in reports])
    write_report(merged, out)
    if html is not None:
        write_html(merged, html)
    print_summary(merged, out, html)
    raise typer.Exit(
        verdict(merged, Thresholds(max_p99_ms, max_failed, max_rejected, require_provisioned=False))
    )


def report_show(report: Annotated[Path, typer.Argument(help="A fleet report.")]) -> None:
    """Print a report's table."""
    from device_sim.report import read_report

    print_summary(read_report(report), None, None)
