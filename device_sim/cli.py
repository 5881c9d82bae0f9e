"""`python -m device_sim`: provision one device, run a fleet (also on Locust: `locust`, `fargate`), merge
reports, run the demo; and the factory's test station (`factory`, in `device_sim.factory_cli`).

This layer alone owns options, printing and exit codes. Exit codes: 0 done; 1 a device was rejected or failed
(for `fleet`, `locust` and `report merge`: the run broke a threshold, see device_sim/thresholds.py;
rejections alone are outcomes, not errors); 2 bad input or an unusable target; 130 interrupted. Every error
is one line on stderr. One file over 400 lines because the commands share their option declarations (the
`Annotated` aliases below), which is the point of "the same options as `fleet`".
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from device_sim.errors import DeviceFailure, Rejected, UserError
from device_sim.factory import KeyStore
from device_sim.factory_cli import KeysDirOpt, factory, factory_key, fleet_keys

try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class OneLineErrors(TyperGroup):
    """Usage errors and our own UserError as one line on stderr, never a box or a traceback."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click_exceptions.NoArgsIsHelpError:
            code = 2  # typer has printed the help already
        except click_exceptions.ClickException as exc:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            code = exc.exit_code
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except (typer.Abort, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            code = 130
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulated devices for AWS IoT fleet provisioning by claim (emulator or AWS).",
)
report_app = typer.Typer(
    cls=OneLineErrors, add_completion=False, no_args_is_help=True, help="Work with fleet reports."
)
app.add_typer(report_app, name="report")
app.command()(factory)


class PayloadFormat(StrEnum):
    json = "json"
    cbor = "cbor"


class CertificateFlow(StrEnum):
    csr = "csr"
    keys = "keys"


EndpointFile = Annotated[Path | None, typer.Option("--endpoint-file", help="The emulator's endpoint.json.")]
Claim = Annotated[str | None, typer.Option(help="A named claim credential of the endpoint file.")]
Endpoint = Annotated[str | None, typer.Option(help="AWS IoT data endpoint host (real AWS).")]
Port = Annotated[int | None, typer.Option(help="MQTT port (default 8883, or the endpoint file's).")]
CaFile = Annotated[Path | None, typer.Option("--ca-file", help="CA bundle that signs the endpoint.")]
ClaimCert = Annotated[Path | None, typer.Option("--claim-cert-file", help="Claim certificate (PEM).")]
ClaimKey = Annotated[Path | None, typer.Option("--claim-key-file", help="Claim private key (PEM).")]
TemplateName = Annotated[str | None, typer.Option("--template-name", help="Provisioning template name.")]
ClientIdPattern = Annotated[
    str | None,
    typer.Option(
        "--client-id-pattern", help="Claim client id pattern; `*` becomes the serial (default prov-*)."
    ),
]
FormatOpt = Annotated[
    PayloadFormat, typer.Option("--format", help="Payload format of the provisioning topics.")
]
FlowOpt = Annotated[
    CertificateFlow,
    typer.Option(
        "--flow",
        help="csr: the device's own key signs a CSR; keys: CreateKeysAndCertificate (key crosses the net).",
    ),
]
Params = Annotated[
    list[str] | None, typer.Option("--param", help="Extra RegisterThing parameter k=v (repeatable).")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout-s", min=0.5, help="Time-out of each connect and request (AWS uses 30 s).")
]
MaxP99 = Annotated[
    float | None,
    typer.Option("--max-p99-ms", min=0, help="Exit 1 when the total latency's p99 is above this."),
]
MaxFailed = Annotated[
    int, typer.Option("--max-failed", min=0, help="Exit 1 when more devices than this failed.")
]
MaxRejected = Annotated[
    int | None,
    typer.Option(
        "--max-rejected", min=0, help="Exit 1 when more devices than this were rejected (default: no limit)."
    ),
]
KeepIdentities = Annotated[
    Path | None,
    typer.Option(
        "--keep-identities",
        help="Keep each device's identity in DIR/<serial> (as `provision --out-dir`); with --rotate, the "
        "devices to rotate.",
    ),
]
Rotate = Annotated[
    bool,
    typer.Option(
        "--rotate",
        help="Rotate the certificates of devices provisioned earlier with --keep-identities DIR (all of "
        "them, --serials, or the first --devices) instead of provisioning.",
    ),
]
RotationTemplateOpt = Annotated[
    str | None,
    typer.Option(
        "--rotation-template-name",
        help="With --rotate: the rotation template (default: the endpoint file's).",
    ),
]
ProgressEvery = Annotated[
    float,
    typer.Option(
        "--progress-every-s", min=0.1, help="When stderr is not a terminal: a progress line this often."
    ),
]


def _target(
    endpoint_file: Path | None,
    claim: str | None,
    endpoint: str | None,
    port: int | None,
    ca_file: Path | None,
    claim_cert_file: Path | None,
    claim_key_file: Path | None,
    template_name: str | None,
    client_id_pattern: str | None,
):  # type: ignore[no-untyped-def]
    from device_sim.target import resolve_target

    return resolve_target(
        endpoint_file=endpoint_file,
        claim=claim,
        endpoint=endpoint,
        port=port,
        ca_file=ca_file,
        claim_cert_file=claim_cert_file,
        claim_key_file=claim_key_file,
        template_name=template_name,
        client_id_pattern=client_id_pattern,
    )


def _parameters(params: list[str] | None) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param must be k=v, not '{item}'")
        if key == "SerialNumber":
            raise UserError("--param SerialNumber: the serial is given by --serial")
        parameters[key] = value
    return parameters


@app.command()
def provision(
    serial: Annotated[
        str, typer.Option("--serial", help="The device's serial number (CSR CN and SerialNumber).")
    ],
    endpoint_file: EndpointFile = None,
    claim: Claim = None,
    endpoint: Endpoint = None,
    port: Port = None,
    ca_file: CaFile = None,
    claim_cert_file: ClaimCert = None,
    claim_key_file: ClaimKey = None,
    template_name: TemplateName = None,
    client_id_pattern: ClientIdPattern = None,
    fmt: FormatOpt = PayloadFormat.json,
    flow: FlowOpt = CertificateFlow.csr,
    key_store: Annotated[
        KeyStore | None,
        typer.Option("--key-store", help="Where the device keeps its key (default memory, or --keys-dir's)."),
    ] = None,
    keys_dir: KeysDirOpt = None,
    pkcs11_pin: Annotated[
        str,
        typer.Option("--pkcs11-pin", envvar="DEVICE_SIM_PKCS11_PIN", help="User PIN of the SoftHSM2 token."),
    ] = "1234",
    params: Params = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", help="Where the device keeps its identity (default .state/devices/<serial>)."
        ),
    ] = None,
    timeout_s: TimeoutOpt = 30.0,
) -> None:
    """Provision one device, reconnect with its own certificate, publish once; print the thing name."""
    from device_sim.device import KEY_CROSSED_NETWORK, DeviceOptions, provision_device
    from device_sim.keys import MemoryKey
    from device_sim.preflight import check_target
    from device_sim.transport import Transport

    target = _target(
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
    parameters = _parameters(params)
    if flow is CertificateFlow.keys and key_store is KeyStore.pkcs11:
        raise UserError(
            "--flow keys cannot use --key-store pkcs11: the key would come from the network, "
            "not from the token"
        )
    out_dir = out_dir or Path(".state/devices") / serial
    make_key: Any = lambda _serial: MemoryKey()  # noqa: E731
    kept_key = out_dir / "private.key"
    unfinished = kept_key.exists() and not (out_dir / "thing_name").exists()
    if unfinished and keys_dir is None and key_store is not KeyStore.pkcs11 and flow is CertificateFlow.csr:
        # An earlier run kept its key before RegisterThing and never finished (a lost reply, a crash): the
        # device proves it is the same device with that key (docs/security.md, "A lost reply").
        pem = kept_key.read_bytes()
        make_key = lambda _serial: MemoryKey.from_pem(pem)  # noqa: E731
        print(f"note: resuming with the key kept in {kept_key} by an unfinished run", file=sys.stderr)
    if keys_dir is not None:
        make_key = factory_key(
            keys_dir, key_store, pkcs11_pin, csr_flow=flow is CertificateFlow.csr, serial=serial
        )
    elif key_store is KeyStore.pkcs11:
        from device_sim.pkcs11_store import Pkcs11Key, prepare_softhsm_token

        token = prepare_softhsm_token(out_dir / "softhsm2", user_pin=pkcs11_pin)
        make_key = lambda s: Pkcs11Key.generate(token, s)  # noqa: E731
    check_target(target, timeout_s=min(timeout_s, 5.0))
    if flow is CertificateFlow.keys:
        print(KEY_CROSSED_NETWORK, file=sys.stderr)
    options = DeviceOptions(
        fmt=fmt.value, flow=flow.value, parameters=parameters, out_dir=out_dir, make_key=make_key
    )
    transport = Transport(target, threads=1, timeout_s=timeout_s)

    retries: list[str] = []

    def retried(step: str, reason: str) -> None:
        retries.append(f"{step} {reason}")

    try:
        result = asyncio.run(provision_device(transport, serial, options, on_retry=retried))
    except Rejected as exc:
        print(
            f"rejected: {exc.operation}: {exc.error_code} ({exc.status_code}): {exc.error_message}",
            file=sys.stderr,
        )
        raise typer.Exit(1) from None
    except DeviceFailure as exc:
        print(failure_line(exc, target.claim_client_id(serial), len(retries)), file=sys.stderr)
        raise typer.Exit(1) from None
    steps = ", ".join(f"{k} {v:.0f} ms" for k, v in result.steps_ms.items())
    stderr.print(
        f"[green]provisioned[/] {serial} as [bold]{result.thing_name}[/] (certificate "
        f"{result.certificate_id[:12]}…), identity in {result.saved_to}; published to "
        f"{result.telemetry_topic}; {steps}; total {result.total_ms:.0f} ms"
    )
    print(result.thing_name)


REFUSALS = {
    "connection_closed",
    "connect_refused",
    "connack_not_authorized",
    "connack_bad_username_or_password",
}


def failure_line(exc: DeviceFailure, claim_client_id: str, retries: int) -> str:
    """One line that says what most likely went wrong, then the raw cause."""
    tried = f" (after {retries} retries)" if retries else ""
    if exc.step == "claim_connect" and exc.kind in REFUSALS:
        # AWS IoT answers an unauthorised CONNECT by closing the connection: no reason is ever sent.
        return (
            f"failed: the endpoint closed the claim connection after CONNECT{tried}: the claim certificate "
            f"is "
            f"not active, or the claim policy does not allow client id '{claim_client_id}' [{exc.detail}]"
        )
    if exc.step == "reconnect" and exc.kind in REFUSALS:
        return (
            f"failed: the endpoint refused the device's own certificate{tried}: is it ACTIVE, and does the "
            f"device policy allow client id = thing name? [{exc.detail}]"
        )
    return f"failed ({exc.kind}){tried}: {exc.detail}"


@app.command()
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

    target = _target(
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
    parameters = _parameters(params)
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

    transport = Transport(target, threads=threads, timeout_s=timeout_s)
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
        rotation_template_name=_rotation_template(endpoint_file, rotation_template_name) if rotate else None,
        fmt=fmt.value,
        attempts=attempts,
    )
    if rotate:
        rotation_fleet.as_rotation_report(stats, _rotation_template(endpoint_file, rotation_template_name))
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
            print(
                f"interrupted; partial report in {report}" + (f" and {html}" if html else ""), file=sys.stderr
            )
            raise typer.Exit(130) from None
    write_report(stats, report)
    if html is not None:
        write_html(stats, html)
    print_summary(stats, report, html)
    raise typer.Exit(verdict(stats, thresholds))


def _rotation_template(endpoint_file: Path | None, given: str | None) -> str:
    from device_sim.rotate_cli import rotation_template

    return rotation_template(endpoint_file, given)


def verdict(stats: Any, thresholds: Any) -> int:
    """Print each broken threshold as one line on stderr; the exit code (0 passed, 1 not)."""
    breaches = thresholds.breaches(stats)
    for line in breaches:
        print(f"threshold: {line}", file=sys.stderr)
    return 1 if breaches else 0


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


@app.command(
    "locust",
    help=LOCUST_HELP,
    context_settings={"allow_extra_args": True},
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
        "flow": flow.value,
        "keys_dir": keys_dir,
        "param": [f"{k}={v}" for k, v in _parameters(params).items()],
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
        "rotation_template_name": _rotation_template(endpoint_file, rotation_template_name)
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


@report_app.command("merge")
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


@report_app.command("show")
def report_show(report: Annotated[Path, typer.Argument(help="A fleet report.")]) -> None:
    """Print a report's table."""
    from device_sim.report import read_report

    print_summary(read_report(report), None, None)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="State of the demo (emulator, serials).")] = Path(
        ".state/demo"
    ),
    reports: Annotated[Path, typer.Option("--reports", help="Where the reports go.")] = Path("reports"),
    devices: Annotated[int, typer.Option("--devices", min=1, help="Serials to import and provision.")] = 100,
) -> None:
    """The whole story on the local emulator: synth, import, provision, show rejections, report."""
    from device_sim.demo import run_demo

    started = time.monotonic()
    run_demo(workdir=workdir, reports=reports, devices=devices)
    stderr.print(f"demo finished in {time.monotonic() - started:.0f} s")


def _add_fargate() -> None:
    from device_sim.locust.fargate_cli import fargate_app

    app.add_typer(fargate_app, name="fargate")


def _add_rotate() -> None:
    from device_sim.rotate_cli import rotate

    app.command()(rotate)


_add_fargate()
_add_rotate()
