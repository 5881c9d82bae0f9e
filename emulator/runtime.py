"""Starting and stopping the emulator: `start_emulator(...)` builds everything from the cloud assembly
and serves on a background thread with its own event loop; the CLI and the tests both use it.

This module wires the layers; what is built from the stack is in `stack_setup.py`, the broker's thread
in `serving.py`, the AWS API front end in `awsapi/`, the state file in `registry/persistence.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from emulator import stack_setup
from emulator.assembly.reader import AssemblyError, ClaimIdentity, ClaimSpec, StackModel, load_stack
from emulator.awsapi.control_plane import IotControlPlane, MqttAddress
from emulator.awsapi.gateway import AwsGateway
from emulator.awsapi.server import LocalAwsServer
from emulator.awsapi.trusted_user import CLAIM_TTL_S, TemporaryClaims
from emulator.mqtt.broker import Broker
from emulator.mqtt.limits import DEFAULT_LIMITS, PROFILES
from emulator.mqtt.provisioning import Outcome
from emulator.options import EmulatorOptions
from emulator.provisioning import hook as hooks
from emulator.provisioning.ca import CertificateAuthority, certificate_id, write_private
from emulator.provisioning.hook_host import HookHost
from emulator.provisioning.hook_log import RejectionNotes
from emulator.provisioning.service import ProvisioningService
from emulator.provisioning.template_catalog import TemplateCatalog
from emulator.provisioning.template_records import HOOK_PAYLOAD_VERSION, HookConfig, HookUnavailable
from emulator.provisioning.tokens import DEFAULT_TTL_S, TokenStore
from emulator.registry.persistence import STATE_FILE, PeriodicSaver, StateFile
from emulator.registry.store import ACTIVE, Registry, use_der_certificate_ids
from emulator.rules.wiring import Automation
from emulator.serving import serve

log = logging.getLogger("emulator")


@dataclass
class ClaimFiles:
    name: str
    cert_file: Path
    key_file: Path
    certificate_id: str
    active: bool


@dataclass
class Emulator:
    """A running emulator. `stop()` ends it; `endpoint` is what endpoint.json holds."""

    state_dir: Path
    endpoint: dict[str, Any]
    registry: Registry
    service: ProvisioningService
    model: StackModel
    catalog: TemplateCatalog | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    saver: PeriodicSaver | None = None
    broker: Broker | None = None
    _stop: Callable[[], None] | None = None

    @property
    def port(self) -> int:
        return int(self.endpoint["port"])

    @property
    def aws_endpoint_url(self) -> str:
        return str(self.endpoint["aws_endpoint_url"])

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_emulator(
    assembly_dir: Path | str,
    state_dir: Path | str,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    aws_port: int = 0,
    server_names: tuple[str, ...] = (),
    persist: bool = False,
    persist_interval_s: float = 1.0,
    hook: hooks.HookFunction | None = None,
    use_stack_hook: bool = True,
    token_ttl_s: float = DEFAULT_TTL_S,
    claim_ttl_s: float = CLAIM_TTL_S,
    hook_timeout_s: float = hooks.HOOK_TIMEOUT_S,
    hook_workers: int = 16,
    service_workers: int = 32,
    stack_name: str | None = None,
    record_outcomes: bool = False,
    hook_isolation: str = "process",
    lose_replies: dict[str, int] | None = None,
    alpn_port: int | None = None,
    session_expiry_s: int = DEFAULT_LIMITS.session_expiry_s,
    limits: str = "default",
    certificate_validity_days: float | None = None,
    schedule_every_s: float | None = None,
) -> Emulator:
    """Build the emulator from the cloud assembly and start serving; returns once it accepts connections.

    `host` is the bind address of both the broker and the AWS API (`port`, `aws_port`: 0 picks a free
    one); `server_names` are added to the server certificate's names. `persist` loads the state saved
    in `state_dir` by an earlier run and saves it while running (registry/persistence.py).
    `service_workers` is how many RegisterThing requests are served at once (each waits for its hook).
    `hook` replaces the stack's hook Lambda with a Python callable (tests: raise, sleep, deny);
    `use_stack_hook=False` runs the template without any hook. `hook_isolation`: "process" runs the
    stack's Lambda in the hook process, next to the serial table (provisioning/hook_host.py: nothing leaks
    into the caller's process, and the hook's CPU is not under this process's GIL); "thread" runs it on
    threads of this process, with its environment set here and the table in this process's moto.
    `alpn_port` opens a second MQTT port (AWS IoT's 443; 0 picks a free one); ALPN `x-amzn-mqtt-ca` is
    accepted on both. `session_expiry_s` is how long a persistent session outlives its connection.
    `limits`: "default" (AWS's per-connection limits, no rate throttles), "aws" (the throttles too) or
    "off" (no AWS limit); emulator/mqtt/limits.py.
    `certificate_validity_days` bounds the device certificates the emulator issues (None: 2049, as AWS's);
    `schedule_every_s` runs the stack's EventBridge schedules this often instead of their rates.
    """
    if limits not in PROFILES:
        raise ValueError(f"limits must be one of {', '.join(PROFILES)}, not {limits!r}")
    options = EmulatorOptions(
        port=port,
        host=host,
        aws_port=aws_port,
        server_names=tuple(server_names),
        persist=persist,
        persist_interval_s=persist_interval_s,
        hook=hook,
        use_stack_hook=use_stack_hook,
        token_ttl_s=token_ttl_s,
        claim_ttl_s=claim_ttl_s,
        hook_timeout_s=hook_timeout_s,
        hook_workers=hook_workers,
        service_workers=service_workers,
        stack_name=stack_name,
        record_outcomes=record_outcomes,
        hook_isolation=hook_isolation,
        lose_replies=dict(lose_replies or {}),
        alpn_port=alpn_port,
        session_expiry_s=session_expiry_s,
        limits=limits,
        certificate_validity_days=certificate_validity_days,
        schedule_every_s=schedule_every_s,
    )
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    # A killed emulator leaves its endpoint.json: nobody must take it for this one's until it is ready.
    (state / "endpoint.json").unlink(missing_ok=True)
    authority = CertificateAuthority.load_or_create(state)
    if options.certificate_validity_days is not None:
        authority.device_validity = timedelta(days=options.certificate_validity_days)
    server = authority.issue_server_credential(options.certificate_names())
    (state / "server.pem").write_text(server.certificate_pem)
    write_private(state / "server.key", server.private_key_pem.encode())

    cleanups: list[Callable[[], None]] = []
    try:
        return _start(assembly_dir, state, authority, cleanups, options)
    except BaseException:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:
                log.debug("cleanup failed", exc_info=True)
        raise


def _reset_moto() -> None:
    """This process's moto state belongs to the emulator: start from an empty account."""
    from moto.backends import get_backend

    for service in ("iot", "dynamodb"):
        get_backend(service).reset()


def _start(
    assembly_dir: Path | str,
    state: Path,
    authority: CertificateAuthority,
    cleanups: list[Callable[[], None]],
    options: EmulatorOptions,
) -> Emulator:
    from emulator.assembly.reader import find_stack_template, stack_region

    assembly_path = Path(assembly_dir).resolve()
    region = stack_region(assembly_path, find_stack_template(assembly_path, options.stack_name))
    saved = _load_state(state, options.persist)
    _reset_moto()
    use_der_certificate_ids()
    registry = Registry(region=region, state=saved.get("registry") if saved else None)

    # The hook runners by function ARN, filled once the hook process runs; the catalog resolves a
    # template's hook through it (created templates too), the control plane needs the catalog first.
    runners: dict[str, hooks.Hook] = {}
    stack_hook_arns: set[str] = set()
    override = (
        hooks.callable_hook(options.hook, timeout_s=options.hook_timeout_s)
        if options.hook is not None
        else None
    )
    if override is not None:
        cleanups.append(override.close)

    def resolve_hook(target_arn: str) -> hooks.Hook:
        if target_arn in stack_hook_arns and override is not None:
            return override
        runner = runners.get(target_arn)
        if runner is not None:
            return runner
        if not options.use_stack_hook and override is None:
            raise HookUnavailable("this run has the stack's hooks turned off")
        known = ", ".join(sorted(stack_hook_arns)) or "none"
        raise HookUnavailable(
            f"it runs only the hook functions of the stack, with their code asset ({known})"
        )

    catalog = TemplateCatalog(region=region, account_id=registry.account_id, resolve_hook=resolve_hook)
    mqtt_address = MqttAddress()
    claims_api = TemporaryClaims(
        authority=authority, registry=registry, catalog=catalog, ttl_s=options.claim_ttl_s
    )
    control_plane = IotControlPlane(catalog=catalog, claims=claims_api, mqtt=mqtt_address)
    aws: LocalAwsServer | None = None

    def count_change() -> None:
        if aws is not None:
            aws.count_change()

    aws = LocalAwsServer(
        registry.lock,
        host=options.host,
        port=options.aws_port,
        front=lambda inner: AwsGateway(inner, control_plane, on_change=count_change),
    )
    aws.start()
    cleanups.append(aws.stop)

    claims: dict[str, ClaimFiles] = {}

    def issue_claim(spec: ClaimSpec) -> ClaimIdentity:
        directory = state / "claims"
        cert_file, key_file = directory / f"{spec.name}.cert.pem", directory / f"{spec.name}.private.key"
        if saved is not None and cert_file.exists() and key_file.exists():
            # A restored state: the claim devices already hold stays valid.
            known = registry.certificate(certificate_id(cert_file.read_text()))
            if known is not None:
                claims[spec.name] = ClaimFiles(
                    spec.name, cert_file, key_file, known.certificate_id, known.status == ACTIVE
                )
                return ClaimIdentity(known.certificate_id)
        # The factory's claim key never leaves its HSM (csr mode) or Secrets Manager (generated
        # mode): locally each claim gets a fresh key and certificate from the emulator's CA.
        credential = authority.issue_client_credential(f"claim {spec.name}")
        directory.mkdir(exist_ok=True)
        cert_file.write_text(credential.certificate_pem)
        write_private(key_file, credential.private_key_pem.encode())
        registry.register_certificate(credential.certificate_pem, ACTIVE if spec.active else "INACTIVE")
        claims[spec.name] = ClaimFiles(spec.name, cert_file, key_file, credential.certificate_id, spec.active)
        return ClaimIdentity(credential.certificate_id)

    model = load_stack(assembly_path, issue_claim, stack_name=options.stack_name)
    stack_hook_arns.update(spec.hook_function_arn for spec in model.templates if spec.hook_function_arn)
    automation = Automation.read(
        model,
        stack_setup.runnable_functions(model),
        functions_run=options.hook is None and options.use_stack_hook,
        schedule_every_s=options.schedule_every_s,
    )
    targets = automation.targets
    unused = [
        (f.logical_id, "AWS::Lambda::Function")
        for f in model.functions
        if f.arn not in stack_hook_arns and f.arn not in targets
    ]
    # One line per resource the local run leaves out: nothing is skipped silently.
    for logical_id, kind in [*model.not_emulated, *automation.left_out, *unused]:
        log.info("not emulated: %s (%s)", logical_id, kind)
    if not model.templates:
        raise AssemblyError("the stack has no AWS::IoT::ProvisioningTemplate")

    hook_host, invoke = stack_setup.start_hooks(
        model, options, aws, region, runners, cleanups, saved, stack_setup.target_specs(model, targets)
    )
    if hook_host is None and saved is not None and saved.get("dynamodb") is not None:
        registry.restore_dynamodb(saved["dynamodb"])
    stack_setup.create_resources(model, aws.url)
    if saved is not None:
        catalog.restore(saved["templates"])
    for spec in model.templates:
        runner = override if override is not None else runners.get(spec.hook_function_arn or "")
        catalog.add_stack_template(
            name=spec.name,
            arn=spec.arn,
            body=spec.body,
            enabled=spec.enabled,
            template_type=spec.template_type,
            role_arn=spec.provisioning_role_arn,
            description=spec.description,
            hook_config=(
                HookConfig(spec.hook_function_arn, spec.hook_payload_version or HOOK_PAYLOAD_VERSION)
                if spec.hook_function_arn
                else None
            ),
            hook=runner,
        )
        log.info(
            "template %s (%s) hook=%s",
            spec.name,
            "enabled" if spec.enabled else "disabled",
            runner.description if runner else "none",
        )

    tokens = TokenStore(options.token_ttl_s)
    if saved is not None:
        tokens.restore(saved["tokens"])
    notes = RejectionNotes()
    front_end_log = logging.getLogger("emulator.provisioning")
    front_end_log.addFilter(notes)
    cleanups.append(lambda: front_end_log.removeFilter(notes))
    service = ProvisioningService(
        registry=registry,
        authority=authority,
        tokens=tokens,
        templates=catalog,
        claim_expired=registry.claim_expired,
        on_rejection=lambda requester, _operation, error: notes.note(requester.client_id, error),
    )
    emulator = Emulator(
        state_dir=state, endpoint={}, registry=registry, service=service, model=model, catalog=catalog
    )
    if options.persist:
        emulator.saver = _saver(state, registry, tokens, catalog, aws, hook_host, options.persist_interval_s)
        emulator.saver.start()
        cleanups.append(emulator.saver.stop)  # runs first: after the broker stopped, before the hook process
    served = serve(
        emulator,
        model,
        claims,
        state,
        authority,
        registry,
        service,
        aws,
        mqtt_address,
        options,
        cleanups,
        lifecycle_listeners=automation.listeners(invoke, cleanups),
    )
    automation.start_schedules(invoke, region=region, account=registry.account_id, cleanups=cleanups)
    return served


def _load_state(state: Path, persist: bool) -> dict[str, Any] | None:
    if persist:
        saved = StateFile(state).load()
        log.info(
            "state: %s", f"restored from {state / STATE_FILE}" if saved else f"none saved yet in {state}"
        )
        return saved
    if (state / STATE_FILE).exists():
        log.info("state: fresh start; %s is left alone (--persist would restore it)", state / STATE_FILE)
    return None


def _saver(
    state: Path,
    registry: Registry,
    tokens: TokenStore,
    catalog: TemplateCatalog,
    aws: LocalAwsServer,
    hook_host: HookHost | None,
    interval_s: float,
) -> PeriodicSaver:
    def collect() -> dict[str, Any]:
        # The registry before the serial table: a RegisterThing reserves its serial (hook) before it
        # writes the thing, so a save between the two holds a reservation without its thing, which
        # the hook's take-over rule resolves; the other order could hold a thing whose serial is free.
        sections: dict[str, Any] = {"registry": registry.snapshot(), "tokens": tokens.snapshot()}
        sections["templates"] = catalog.snapshot()
        sections["dynamodb"] = hook_host.snapshot() if hook_host is not None else registry.dynamodb_snapshot()
        return sections

    def version() -> tuple[int, ...]:
        hosted = hook_host.changes() if hook_host is not None else 0
        return (aws.changes, registry.generation, tokens.changes, hosted)

    return PeriodicSaver(StateFile(state), collect, version, interval_s)
