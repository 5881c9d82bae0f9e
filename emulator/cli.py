"""`iot-emulator up` (also `python -m emulator up`) `--state-dir DIR [--cloud-assembly cdk.out] [--port 0]
[--alpn-port N] [--aws-port 0] [--host H] [--san NAME]... [--persist] [--token-ttl-s N]
[--session-expiry-s N] [--limits aws|off]
[--certificate-validity-days N] [--schedule-every-s N]`.

Exit codes as every tool of the project (cli_conventions): 2 a wrong option or an unusable cloud assembly or
state directory, 1 it could not start (a port in use), 130 interrupted while starting; once it serves,
SIGINT or SIGTERM is how it stops, with 0. Errors are one line on stderr, `iot-emulator: <message>`.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from cli_conventions import EXIT_CODES_HELP, CommandError, UsageError, one_line_errors
from emulator.logsafe import OneLineFormatter
from emulator.mqtt.limits import DEFAULT_LIMITS
from emulator.provisioning.tokens import DEFAULT_TTL_S

TOOL = "iot-emulator"
app = typer.Typer(
    cls=one_line_errors(TOOL),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Local emulator of the AWS IoT fleet-provisioning endpoint, built from the CDK stack.",
    epilog=EXIT_CODES_HELP + " `up` serves until SIGINT or SIGTERM and then exits 0.",
)
SHUTDOWN_LIMIT_S = 4.0  # SIGTERM to exit, at most (plus flushing the log, and the last save)
FINAL_SAVE_LIMIT_S = 20.0


@app.callback()
def _main() -> None:
    """Local AWS IoT fleet-provisioning endpoint."""


def _load_hook(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--hook must be module:function, got {spec!r}")
    return getattr(importlib.import_module(module_name), attribute)


OPERATIONS = ("RegisterThing", "CreateCertificateFromCsr", "CreateKeysAndCertificate")


def _lose_replies(items: list[str]) -> dict[str, int]:
    lost: dict[str, int] = {}
    for item in items:
        operation, _, count = item.partition("=")
        if operation not in OPERATIONS or not count.isdigit():
            raise ValueError(
                f"--lose-replies must be OPERATION=N with OPERATION one of {', '.join(OPERATIONS)}"
            )
        lost[operation] = int(count)
    return lost


@app.command()
def up(
    state_dir: Annotated[
        Path,
        typer.Option("--state-dir", help="Where endpoint.json, the CA and claim credentials are written."),
    ],
    cloud_assembly: Annotated[
        Path, typer.Option("--cloud-assembly", help="The synthesized app (cdk.out).")
    ] = Path("cdk.out"),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="MQTT port; 0 picks a free one.")] = 0,
    alpn_port: Annotated[
        int | None,
        typer.Option(
            "--alpn-port",
            min=0,
            max=65535,
            help=(
                "A second MQTT port, as AWS IoT's 443 (where the AWS SDKs connect by default, with ALPN "
                "x-amzn-mqtt-ca); 0 picks a free one. ALPN is accepted on every port."
            ),
        ),
    ] = None,
    session_expiry_s: Annotated[
        int,
        typer.Option(
            "--session-expiry-s",
            min=1,
            max=7 * 24 * 3600,
            help="How long a persistent session outlives its connection (AWS: 3600, adjustable to 7 days).",
        ),
    ] = DEFAULT_LIMITS.session_expiry_s,
    limits: Annotated[
        str | None,
        typer.Option(
            "--limits",
            help=(
                "aws: AWS IoT Core's rate throttles too (publishes/s per connection, CONNECT/s per client "
                "id, the provisioning APIs' TPS); off: no AWS limit at all. Default: AWS's per-connection "
                "limits (client id size, subscriptions, keep-alive, in-flight), no throttles."
            ),
        ),
    ] = None,
    aws_port: Annotated[
        int,
        typer.Option(
            "--aws-port", min=0, max=65535, help="AWS API port (aws_endpoint_url); 0 picks a free one."
        ),
    ] = 0,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Bind address of the MQTT and AWS API servers (0.0.0.0: every interface; see --san).",
        ),
    ] = "127.0.0.1",
    san: Annotated[
        list[str] | None,
        typer.Option(
            "--san",
            help="Another DNS name or IP address for the server certificate (repeatable); "
            "localhost, 127.0.0.1 and --host are always in it.",
        ),
    ] = None,
    persist: Annotated[
        bool,
        typer.Option(
            "--persist",
            help="Keep the state (registry, serial table, tokens, templates, claims) in STATE_DIR "
            "across restarts; without it every start is fresh.",
        ),
    ] = False,
    persist_interval_s: Annotated[float, typer.Option("--persist-interval-s", min=0.1, hidden=True)] = 1.0,
    claim_ttl_s: Annotated[float, typer.Option("--claim-ttl-s", min=0.1, hidden=True)] = 300.0,
    token_ttl_s: Annotated[
        float, typer.Option("--token-ttl-s", min=0.1, help="Lifetime of ownership tokens (AWS: 3600).")
    ] = DEFAULT_TTL_S,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Stack name, if the assembly has several.")
    ] = None,
    hook: Annotated[
        str | None,
        typer.Option("--hook", hidden=True, help="module:function replacing the stack's hook (tests)."),
    ] = None,
    hook_timeout_s: Annotated[float, typer.Option("--hook-timeout-s", hidden=True)] = 5.0,
    hook_isolation: Annotated[
        str,
        typer.Option(
            "--hook-isolation",
            help=(
                "process: the hook Lambda and the serial table in a second process (uses a second "
                "core); thread: on threads of this process."
            ),
        ),
    ] = "process",
    lose_replies: Annotated[
        list[str] | None,
        typer.Option(
            "--lose-replies",
            help="OPERATION=N: apply the first N requests of OPERATION (RegisterThing, "
            "CreateCertificateFromCsr, CreateKeysAndCertificate) but never send their accepted replies, "
            "to test how devices recover from a lost reply. Repeatable.",
        ),
    ] = None,
    certificate_validity_days: Annotated[
        float | None,
        typer.Option(
            "--certificate-validity-days",
            help="Validity of the device certificates the emulator issues, in days from their issue "
            "(fractions allowed: 0.0001 is about 9 s); default until 2049, as AWS IoT's.",
        ),
    ] = None,
    schedule_every_s: Annotated[
        float | None,
        typer.Option(
            "--schedule-every-s",
            help="Run the stack's EventBridge schedules (the certificate retirer's sweep) every N s "
            "instead of their rate(...), to try them in seconds.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    service_workers: Annotated[int, typer.Option("--service-workers", min=1, hidden=True)] = 32,
    hook_workers: Annotated[int, typer.Option("--hook-workers", min=1, hidden=True)] = 16,
    switch_interval_ms: Annotated[float, typer.Option("--switch-interval-ms", min=0.1, hidden=True)] = 5.0,
) -> None:
    """Serve until SIGINT/SIGTERM; write STATE_DIR/endpoint.json once accepting connections."""
    # Plain lines on stderr: one per connection and per request outcome, easy to grep.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from emulator.assembly.reader import AssemblyError
    from emulator.registry.persistence import PersistError
    from emulator.runtime import start_emulator

    if limits is not None and limits not in ("aws", "off"):
        raise UsageError(f"--limits must be aws or off, not {limits!r}")
    if hook_isolation not in ("process", "thread"):
        raise UsageError(f"--hook-isolation must be process or thread, not {hook_isolation!r}")
    for flag, value in (
        ("--certificate-validity-days", certificate_validity_days),
        ("--schedule-every-s", schedule_every_s),
    ):
        if value is not None and not 0 < value < 1e6:
            raise UsageError(f"{flag} must be a positive number, not {value:g}")
    try:
        lost = _lose_replies(lose_replies or [])
    except ValueError as exc:
        raise UsageError(exc) from None
    try:
        hook_function = _load_hook(hook) if hook else None
        emulator = start_emulator(
            cloud_assembly,
            state_dir,
            port=port,
            host=host,
            aws_port=aws_port,
            server_names=tuple(san or ()),
            persist=persist,
            persist_interval_s=persist_interval_s,
            claim_ttl_s=claim_ttl_s,
            token_ttl_s=token_ttl_s,
            hook=hook_function,
            hook_timeout_s=hook_timeout_s,
            stack_name=stack,
            hook_isolation=hook_isolation,
            service_workers=service_workers,
            hook_workers=hook_workers,
            alpn_port=alpn_port,
            session_expiry_s=session_expiry_s,
            lose_replies=lost,
            limits=limits or "default",
            certificate_validity_days=certificate_validity_days,
            schedule_every_s=schedule_every_s,
        )
    except (AssemblyError, PersistError, ValueError, ImportError, AttributeError) as exc:
        raise UsageError(exc) from None
    except OSError as exc:
        raise CommandError(f"cannot start: {exc}") from None

    # The event loop thread serves every socket: a shorter GIL switch interval lets it in sooner
    # while worker threads run moto and the hook.
    sys.setswitchinterval(switch_interval_ms / 1000)
    done = threading.Event()

    def on_signal(*_: object) -> None:
        if done.is_set():
            os._exit(1)  # a second signal while stopping: stop now
        done.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        while not done.wait(0.5):
            pass
    finally:
        # Bounded: one SIGTERM ends the process within a few seconds even while hook threads and
        # queued requests are still running (a Lambda runs on after its caller gave up, too).
        stopper = threading.Thread(target=emulator.stop, name="emulator-stop", daemon=True)
        stopper.start()
        stopper.join(SHUTDOWN_LIMIT_S)
        if emulator.saver is not None:
            # The last save (--persist) is what the next start restores: let it finish.
            emulator.saver.finished.wait(FINAL_SAVE_LIMIT_S)
        (emulator.state_dir / "endpoint.json").unlink(missing_ok=True)
        logging.getLogger("emulator").info("stopped")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # Worker threads (the hook's, moto's) are not daemons: the interpreter's exit would wait for
        # every one of them. Everything worth keeping is flushed; leave without waiting.
        os._exit(0)


def main() -> None:
    """The `iot-emulator` console script (and `python -m emulator`)."""
    app(prog_name=TOOL)


if __name__ == "__main__":
    main()
