"""`device-sim locust`: the fleet as Locust users on many processes or machines (device_sim/locust/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer

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
)
from device_sim.errors import UserError
from device_sim.factory_cli import KeysDirOpt
from device_sim.rotate_cli import rotation_template

LOCUST_HELP = "\n\n".join(
    (
        "Provision many devices as Locust users: live statistics, a web UI, many processes or machines.",
        "One machine: --processes N (one master, N worker processes). Many machines: --master on one, and "
        "--worker --master-host H on each of the others. Without --headless, Locust's web UI starts "
        "(http://0.0.0.0:8089 by default) and the run begins from there.",
        "The master reads the serials (--serials, or generated) and hands each out once; the run ends when "
        "they are used up. It merges every worker's statistics into the same report `fleet` writes "
        "(--report, --html), with the same thresholds and exit codes.",
        "Workers take every option from the master. The files the target options name (the endpoint file, or "
        "the CA, claim certificate and claim key) must exist on EACH worker machine under the same paths: a "
        "worker that lacks one says so in one line, and the run stops with exit code 2.",
        "Arguments after -- go to Locust unchanged (for example: -- --loglevel WARNING).",
    )
)


def locust_command(
    ctx: typer.Context,
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
        int,
        typer.Option("--concurrency", min=1, max=100_000, help="Locust users: devices in flight at once."),
    ] = 50,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="Arrivals per second, all workers together.")
    ] = None,
    ramp_s: Annotated[
        float, typer.Option("--ramp-s", min=0, help="Start the users over this many seconds.")
    ] = 0.0,
    serials: Annotated[
        Path | None, typer.Option("--serials", help="Serials file (one a line, or CSV); read by the master.")
    ] = None,
    serial_prefix: Annotated[
        str, typer.Option("--serial-prefix", help="Prefix of generated serials.")
    ] = "SIM-",
    fmt: FormatOpt = PayloadFormat.json,
    mqtt: MqttOpt = DEFAULT_MQTT,
    flow: FlowOpt = CertificateFlow.csr,
    keys_dir: KeysDirOpt = None,
    params: Params = None,
    report: Annotated[Path, typer.Option("--report", help="Report JSON the master writes.")] = Path(
        "reports/locust.json"
    ),
    html: Annotated[Path | None, typer.Option("--html", help="Also write the project's HTML report.")] = None,
    timeout_s: TimeoutOpt = 30.0,
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, max=20, help="Tries per device on throttling and time-outs.")
    ] = 4,
    threads: Annotated[
        int, typer.Option("--threads", min=0, help="CRT event-loop threads per process (0: one per core).")
    ] = 0,
    progress_every_s: ProgressEvery = 10.0,
    max_p99_ms: MaxP99 = None,
    max_failed: MaxFailed = 0,
    max_rejected: MaxRejected = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No web UI: start at once, stop when the serials are used up.")
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option("--processes", min=1, help="Worker processes on this machine (also with --worker)."),
    ] = None,
    master: Annotated[
        bool, typer.Option("--master", help="Be the master of workers on other machines.")
    ] = False,
    expect_workers: Annotated[
        int, typer.Option("--expect-workers", min=1, help="Headless master: start once this many are in.")
    ] = 1,
    master_bind_host: Annotated[
        str | None, typer.Option("--master-bind-host", help="Master: interface to listen on (default all).")
    ] = None,
    master_bind_port: Annotated[
        int | None, typer.Option("--master-bind-port", help="Master: port to listen on (default 5557).")
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker", help="Run devices for the master at --master-host; every other option comes from it."
        ),
    ] = False,
    master_host: Annotated[
        str | None, typer.Option("--master-host", help="Worker: the master's address.")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option("--master-port", help="Worker: the master's port.")
    ] = None,
    web_host: Annotated[str | None, typer.Option("--web-host", help="Web UI: interface.")] = None,
    web_port: Annotated[int | None, typer.Option("--web-port", help="Web UI: port (default 8089).")] = None,
    run_time: Annotated[
        str | None,
        typer.Option("--run-time", help="Stop after this long (Locust's 30s, 5m, 1h): partial report."),
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Locust's CSV statistics: PREFIX_stats.csv and others.")
    ] = None,
    keep_identities: KeepIdentities = None,
    rotate: Rotate = False,
    rotation_template_name: RotationTemplateOpt = None,
) -> None:
    from device_sim.locust import launcher
    from device_sim.locust.serials import plan_serials

    if importlib.util.find_spec("locust") is None:
        raise UserError("Locust is not installed: pip install '.[locust]' (make setup installs it)")
    if master and (processes or worker):
        raise UserError("--master runs no devices: give --processes to the --worker machines instead")
    values = {
        "endpoint_file": endpoint_file,
        "claim": claim,
        "endpoint": endpoint,
        "port": port,
        "ca_file": ca_file,
        "claim_cert_file": claim_cert_file,
        "claim_key_file": claim_key_file,
        "template_name": template_name,
        "client_id_pattern": client_id_pattern,
        "format": fmt.value,
        "mqtt": mqtt.value,
        "flow": flow.value,
        "keys_dir": keys_dir,
        "param": [f"{k}={v}" for k, v in parse_parameters(params).items()],
        "attempts": attempts,
        "timeout_s": timeout_s,
        "threads": threads,
        "serials": serials,
        "serial_prefix": serial_prefix,
        "devices": devices,
        "rate": rate,
        "rate_per_user": rate / concurrency if rate else None,
        "concurrency": concurrency,
        "report": report,
        "html": html,
        "max_p99_ms": max_p99_ms,
        "max_failed": max_failed,
        "max_rejected": max_rejected,
        "progress_every_s": progress_every_s,
        "keep_identities": keep_identities,
        "rotate": rotate,
        "rotation_template_name": rotation_template(endpoint_file, rotation_template_name)
        if rotate
        else None,
    }
    if rotate and not worker:
        from device_sim.rotation_fleet import check_rotate_options

        check_rotate_options(keep_identities, flow=flow.value, keys_dir=keys_dir, params=params)
    if worker:
        given = [
            f"--{k.replace('_', '-')}"
            for k in (
                "endpoint_file",
                "endpoint",
                "serials",
                "devices",
                "ca_file",
                "claim_cert_file",
                "keys_dir",
                "keep_identities",
            )
            if values[k] is not None
        ]
        if given:
            raise UserError(
                f"--worker takes its options from the master: give {', '.join(given)} to the master"
            )
        values = {}
    else:
        values = {k: (str(v.resolve()) if isinstance(v, Path) else v) for k, v in values.items()}
        pool = plan_serials(values)  # a bad serials file or count: one line here, before anything starts
        if not master:
            from device_sim.factory_cli import fleet_keys

            fleet_keys(keys_dir, pool, csr_flow=flow is CertificateFlow.csr)  # every serial has its key
            # The workers run here: check the target as `fleet` does. A --master's workers check their own.
            from device_sim.locust.devices import target_of
            from device_sim.preflight import check_target

            check_target(target_of(values), timeout_s=min(timeout_s, 5.0))
        if flow is CertificateFlow.keys:
            from device_sim.device import KEY_CROSSED_NETWORK

            print(KEY_CROSSED_NETWORK, file=sys.stderr)
    argv = launcher.locust_argv(
        values,
        headless=headless,
        concurrency=concurrency,
        spawn_rate=concurrency / ramp_s if ramp_s else concurrency,
        processes=processes,
        master=master,
        worker=worker,
        master_host=master_host,
        master_port=master_port,
        master_bind_host=master_bind_host,
        master_bind_port=master_bind_port,
        expect_workers=expect_workers,
        web_host=web_host,
        web_port=web_port,
        run_time=run_time,
        csv=csv,
        extra=list(ctx.args),
    )
    raise typer.Exit(launcher.run(argv, env=_child_env()))


def _child_env() -> dict[str, str]:
    """This environment with this device_sim's repository first on PYTHONPATH, for Locust's processes."""
    import os

    import device_sim

    root = str(Path(device_sim.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
