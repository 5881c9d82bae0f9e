"""Starting and stopping the emulator: `start_emulator(...)` builds everything from the cloud assembly
and serves on a background thread with its own event loop; the CLI and the tests both use it."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.assembly.reader import AssemblyError, ClaimIdentity, ClaimSpec, StackModel, load_stack
from emulator.awsapi.server import LocalAwsServer
from emulator.mqtt.auth import IotGatekeeper
from emulator.mqtt.broker import ALPN_PROTOCOL, Broker
from emulator.mqtt.limits import DEFAULT_LIMITS, Limits
from emulator.mqtt.provisioning import Outcome, ProvisioningTopics
from emulator.provisioning import hook as hooks
from emulator.provisioning.ca import CertificateAuthority, write_private
from emulator.provisioning.hook_host import HookHost
from emulator.provisioning.service import ProvisioningService, ProvisioningTemplate
from emulator.provisioning.tokens import DEFAULT_TTL_S, TokenStore
from emulator.registry.store import ACTIVE, Registry, use_der_certificate_ids

log = logging.getLogger("emulator")

ENV_SERIAL_TABLE = "SERIAL_TABLE_NAME"  # infra.constants.ENV_SERIAL_TABLE
ENV_THING_NAME_PREFIX = "THING_NAME_PREFIX"  # infra.constants.ENV_THING_NAME_PREFIX
HOOK_HANDLER = "provisioning_hook.handler.lambda_handler"  # infra.constants.HOOK_HANDLER
STOP_GRACE_S = 2.0  # how long stop() lets requests already running finish
CERTIFICATE_WORKERS = 8  # CreateCertificateFromCsr / CreateKeysAndCertificate, and the token sweep
ADMISSION_WORKERS = 4  # CONNECT: the certificate's identity, a few dict reads


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
    outcomes: list[Outcome] = field(default_factory=list)
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
    hook: hooks.HookFunction | None = None,
    use_stack_hook: bool = True,
    token_ttl_s: float = DEFAULT_TTL_S,
    hook_timeout_s: float = hooks.HOOK_TIMEOUT_S,
    hook_workers: int = 16,
    service_workers: int = 32,
    stack_name: str | None = None,
    record_outcomes: bool = False,
    hook_isolation: str = "process",
    alpn_port: int | None = None,
    session_expiry_s: int = DEFAULT_LIMITS.session_expiry_s,
) -> Emulator:
    """Build the emulator from the cloud assembly and start serving; returns once it accepts connections.

    `service_workers` is how many RegisterThing requests are served at once (each waits for its hook).
    `hook` replaces the stack's hook Lambda with a Python callable (tests: raise, sleep, deny);
    `use_stack_hook=False` runs the template without any hook. `hook_isolation`: "process" runs the
    stack's Lambda in the hook process, next to the serial table (provisioning/hook_host.py: nothing leaks
    into the caller's process, and the hook's CPU is not under this process's GIL); "thread" runs it on
    threads of this process, with its environment set here and the table in this process's moto.
    `alpn_port` opens a second MQTT port (AWS IoT's 443; 0 picks a free one); ALPN `x-amzn-mqtt-ca` is
    accepted on both. `session_expiry_s` is how long a persistent session outlives its connection.
    """
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    authority = CertificateAuthority.load_or_create(state)
    server = authority.issue_server_credential()
    (state / "server.pem").write_text(server.certificate_pem)
    write_private(state / "server.key", server.private_key_pem.encode())

    cleanups: list[Callable[[], None]] = []
    try:
        return _start(
            assembly_dir,
            state,
            authority,
            cleanups,
            port=port,
            host=host,
            hook=hook,
            use_stack_hook=use_stack_hook,
            token_ttl_s=token_ttl_s,
            hook_timeout_s=hook_timeout_s,
            hook_workers=hook_workers,
            service_workers=service_workers,
            stack_name=stack_name,
            record_outcomes=record_outcomes,
            hook_isolation=hook_isolation,
            alpn_port=alpn_port,
            limits=Limits(session_expiry_s=session_expiry_s),
        )
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
    *,
    port: int,
    host: str,
    hook: hooks.HookFunction | None,
    use_stack_hook: bool,
    token_ttl_s: float,
    hook_timeout_s: float,
    hook_workers: int,
    service_workers: int,
    stack_name: str | None,
    record_outcomes: bool,
    hook_isolation: str,
    alpn_port: int | None,
    limits: Limits,
) -> Emulator:
    from emulator.assembly.reader import find_stack_template, stack_region

    assembly_path = Path(assembly_dir).resolve()
    region = stack_region(assembly_path, find_stack_template(assembly_path, stack_name))
    _reset_moto()
    use_der_certificate_ids()
    registry = Registry(region=region)
    aws = LocalAwsServer(registry.lock, host=host)
    aws.start()
    cleanups.append(aws.stop)

    claims: dict[str, ClaimFiles] = {}

    def issue_claim(spec: ClaimSpec) -> ClaimIdentity:
        # The factory's claim key never leaves its HSM (csr mode) or Secrets Manager (generated
        # mode): locally each claim gets a fresh key and certificate from the emulator's CA.
        credential = authority.issue_client_credential(f"claim {spec.name}")
        directory = state / "claims"
        directory.mkdir(exist_ok=True)
        cert_file, key_file = directory / f"{spec.name}.cert.pem", directory / f"{spec.name}.private.key"
        cert_file.write_text(credential.certificate_pem)
        write_private(key_file, credential.private_key_pem.encode())
        registry.register_certificate(credential.certificate_pem, ACTIVE if spec.active else "INACTIVE")
        claims[spec.name] = ClaimFiles(spec.name, cert_file, key_file, credential.certificate_id, spec.active)
        return ClaimIdentity(credential.certificate_id)

    model = load_stack(assembly_path, issue_claim, stack_name=stack_name)
    hook_arns = {spec.hook_function_arn for spec in model.templates}
    unused = [(f.logical_id, "AWS::Lambda::Function") for f in model.functions if f.arn not in hook_arns]
    # One line per resource the local run leaves out: nothing is skipped silently.
    for logical_id, kind in [*model.not_emulated, *unused]:
        log.info("not emulated: %s (%s)", logical_id, kind)
    if not model.templates:
        raise AssemblyError("the stack has no AWS::IoT::ProvisioningTemplate")

    lambdas = _lambda_specs(model) if hook is None and use_stack_hook else {}
    hook_host: HookHost | None = None
    if lambdas and hook_isolation == "process":
        # The serial table lives with the hook (provisioning/hook_host.py); this endpoint forwards to it.
        hook_host = HookHost(
            list(lambdas.values()), iot_endpoint_url=aws.url, region=region, workers=hook_workers
        )
        cleanups.append(hook_host.close)
        aws.route("dynamodb", hook_host.dynamodb_url)
        log.info(
            "hook process %s: the hook Lambda, and DynamoDB at %s", hook_host.pid, hook_host.dynamodb_url
        )
    _create_resources(model, aws.url)

    templates: dict[str, ProvisioningTemplate] = {}
    for spec in model.templates:
        runner: hooks.Hook | None = None
        if hook is not None:
            runner = hooks.callable_hook(hook, timeout_s=hook_timeout_s)
        elif spec.hook_function_arn in lambdas:
            lambda_spec = lambdas[spec.hook_function_arn]
            if hook_host is not None:
                runner = hooks.hosted_lambda_hook(hook_host, lambda_spec, timeout_s=hook_timeout_s)
            else:
                aws.install_shortcut()
                runner = hooks.in_process_lambda_hook(
                    lambda_spec,
                    aws_endpoint_url=aws.url,
                    region=region,
                    workers=hook_workers,
                    timeout_s=hook_timeout_s,
                )
        if runner is not None:
            cleanups.append(runner.close)
        templates[spec.name] = ProvisioningTemplate(spec.name, spec.arn, spec.body, spec.enabled, runner)
        log.info(
            "template %s (%s) hook=%s",
            spec.name,
            "enabled" if spec.enabled else "disabled",
            runner.description if runner else "none",
        )

    tokens = TokenStore(token_ttl_s)
    service = ProvisioningService(registry=registry, authority=authority, tokens=tokens, templates=templates)
    # One pool per kind of work, so that none queues behind another. A RegisterThing thread mostly
    # waits for the hook (up to its time-out); with one shared pool, a burst of them held every thread
    # while CONNECT admissions and CSR signings queued behind, and the CPU idled (concurrency 100:
    # ~10 % fewer devices/s than with threads to spare). The RegisterThing pool's size also bounds how
    # many invocations wait at the hook at once, which is where the hook's clock runs.
    register = ThreadPoolExecutor(service_workers, thread_name_prefix="register-thing")
    certificates = ThreadPoolExecutor(CERTIFICATE_WORKERS, thread_name_prefix="certificates")
    admission = ThreadPoolExecutor(ADMISSION_WORKERS, thread_name_prefix="admission")
    pools = (register, certificates, admission)

    def stop_pools() -> None:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)

    cleanups.append(stop_pools)
    emulator = Emulator(state_dir=state, endpoint={}, registry=registry, service=service, model=model)
    on_outcome = emulator.outcomes.append if record_outcomes else None
    topics = ProvisioningTopics(service, certificates, on_outcome, register_executor=register)
    gatekeeper = IotGatekeeper(
        region=region, account_id=registry.account_id, identity=registry.identity, executor=admission
    )
    broker = Broker(
        ssl_context=_server_ssl_context(state, authority),
        gatekeeper=gatekeeper,
        handlers=[topics],
        host=host,
        port=port,
        extra_ports=() if alpn_port is None else (alpn_port,),
        limits=limits,
    )
    emulator.broker = broker

    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    stopping: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        try:
            await broker.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        sweeper = asyncio.create_task(_expire_tokens(service, registry, certificates, token_ttl_s))
        started.set()
        await stopping.wait()
        sweeper.cancel()
        # Queued requests are dropped (their connections close now, no reply could reach them);
        # requests already running get a short grace, then are abandoned like a timed-out hook.
        stop_pools()
        await broker.stop()
        await topics.drain(timeout=STOP_GRACE_S)

    thread = threading.Thread(
        target=loop.run_until_complete, args=(main(),), name="emulator-loop", daemon=True
    )
    thread.start()
    started.wait()
    if failure:
        raise failure[0]

    def stop() -> None:
        if stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=STOP_GRACE_S + 3)
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:
                log.debug("cleanup failed", exc_info=True)

    emulator._stop = stop
    emulator.endpoint = _endpoint(model, claims, state, host, broker.port, aws.url)
    emulator.endpoint.update(
        {
            "mqtt_versions": ["3.1.1", "5"],
            "alpn_port": broker.ports[1] if alpn_port is not None else None,
            "alpn_protocols": [ALPN_PROTOCOL],
            "session_expiry_s": limits.session_expiry_s,
        }
    )
    _write_json(state / "endpoint.json", emulator.endpoint)
    log.info(
        "listening on %s:%s%s (MQTT 3.1.1 and 5 over TLS, ALPN %s), AWS APIs at %s, state in %s",
        host,
        broker.port,
        f" and :{broker.ports[1]}" if alpn_port is not None else "",
        ALPN_PROTOCOL,
        aws.url,
        state,
    )
    return emulator


def _lambda_specs(model: StackModel) -> dict[str, hooks.LambdaSpec]:
    """The hook functions the templates name, by ARN, each with its code asset."""
    specs: dict[str, hooks.LambdaSpec] = {}
    for template in model.templates:
        if not template.hook_function_arn or template.hook_function_arn in specs:
            continue
        function = model.hook_for(template)
        if function is None or function.asset_dir is None or not function.asset_dir.is_dir():
            raise AssemblyError(
                f"template {template.name}: hook {template.hook_function_arn} has no code asset "
                "in the cloud assembly"
            )
        specs[template.hook_function_arn] = hooks.LambdaSpec(
            asset_dir=str(function.asset_dir),
            handler=function.handler,
            environment=function.environment,
            function_name=function.name,
            function_arn=function.arn,
            memory_mb=function.memory_mb,
        )
    return specs


def _server_ssl_context(state: Path, authority: CertificateAuthority) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(state / "server.pem", state / "server.key")
    context.load_verify_locations(cadata=authority.certificate_pem)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as AWS IoT's port 8883
    # AWS IoT's port 443 takes MQTT with client certificates from clients offering ALPN x-amzn-mqtt-ca
    # (the SDKs' default: port 443 with that ALPN). Offered on every port here: a client that offers it gets
    # it, a client that offers no ALPN (or none of ours: OpenSSL then answers without ALPN) still connects.
    context.set_alpn_protocols([ALPN_PROTOCOL])
    # No TLS 1.3 session tickets. OpenSSL sends two after every handshake by default, which took a
    # third of the server's handshake CPU here (1.7 -> 1.2 ms). No device in this flow could use one:
    # awscrt's MQTT client does not resume sessions, and a device's second connection presents a new
    # certificate. AWS IoT's documentation says nothing on session resumption (UNCONFIRMED); a client
    # that asks for it simply gets a full handshake, which every TLS client must accept.
    context.num_tickets = 0
    return context


async def _expire_tokens(
    service: ProvisioningService, registry: Registry, executor: ThreadPoolExecutor, ttl_s: float
) -> None:
    period = max(0.2, min(ttl_s / 4, 30.0))
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(period)
        try:
            deleted = await loop.run_in_executor(
                executor, service.expire_tokens, registry.delete_unactivated_certificate
            )
            for certificate_id in deleted:
                log.info("ownership token expired: deleted unactivated certificate %.12s", certificate_id)
        except Exception:
            log.exception("token expiry sweep failed")


def _create_resources(model: StackModel, aws_url: str) -> None:
    """Policies, groups, types, attachments and tables, through the public API (boto3 at the moto server)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=model.region
    )
    iot = session.client("iot", endpoint_url=aws_url)
    dynamodb = session.client("dynamodb", endpoint_url=aws_url)
    for policy in model.policies:
        iot.create_policy(policyName=policy.name, policyDocument=json.dumps(policy.document))
    for group in model.thing_groups:
        iot.create_thing_group(thingGroupName=group)
    for thing_type in model.thing_types:
        iot.create_thing_type(thingTypeName=thing_type)
    for attachment in model.attachments:
        iot.attach_policy(policyName=attachment.policy_name, target=attachment.principal_arn)
    for table in model.tables:
        dynamodb.create_table(
            TableName=table.name,
            KeySchema=table.key_schema,
            AttributeDefinitions=table.attribute_definitions,
            BillingMode="PAY_PER_REQUEST",
        )


def _claim_client_id_pattern(model: StackModel) -> str | None:
    """The claim policy's iot:Connect client pattern (e.g. `prov-*`), for the simulator."""
    claim_policies = {a.policy_name for a in model.attachments}
    for policy in model.policies:
        if policy.name not in claim_policies:
            continue
        statements = policy.document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            actions = statement.get("Action", [])
            if "iot:Connect" in (actions if isinstance(actions, list) else [actions]):
                resources = statement.get("Resource", [])
                for resource in resources if isinstance(resources, list) else [resources]:
                    match = re.search(r":client/(.+)$", str(resource))
                    if match:
                        return match.group(1)
    return None


def _endpoint(
    model: StackModel, claims: dict[str, ClaimFiles], state: Path, host: str, port: int, aws_url: str
) -> dict[str, Any]:
    template = model.templates[0]
    hook_env = next((f.environment for f in model.functions if f.handler == HOOK_HANDLER), {})
    serial_table = hook_env.get(ENV_SERIAL_TABLE) or (model.tables[0].name if model.tables else None)
    first_active = next((c for c in claims.values() if c.active), None)
    return {
        "host": host,
        "port": port,
        "ca_file": str(state / "ca.pem"),
        "claim_cert_file": str(first_active.cert_file) if first_active else None,
        "claim_key_file": str(first_active.key_file) if first_active else None,
        "template_name": template.name,
        "region": model.region,
        "aws_endpoint_url": aws_url,
        "serial_table": serial_table,
        "account_id": model.account_id,
        "claim_client_id_pattern": _claim_client_id_pattern(model),
        "claims": {
            c.name: {
                "cert_file": str(c.cert_file),
                "key_file": str(c.key_file),
                "certificate_id": c.certificate_id,
                "active": c.active,
            }
            for c in claims.values()
        },
        "thing_name_prefix": hook_env.get(ENV_THING_NAME_PREFIX, ""),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)  # readers never see a half-written file
