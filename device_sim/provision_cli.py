"""`device-sim provision`: one device's first boot, and the one line that says why it failed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cli_conventions import EXIT_REFUSED, say
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
    MqttOpt,
    Params,
    PayloadFormat,
    Port,
    TemplateName,
    TimeoutOpt,
    parse_parameters,
    target_from_options,
)
from device_sim.errors import TOOL, DeviceFailure, Rejected, UserError
from device_sim.factory import KeyStore
from device_sim.factory_cli import KeysDirOpt, factory_key

if TYPE_CHECKING:
    from device_sim.target import Target

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


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
    mqtt: MqttOpt = DEFAULT_MQTT,
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
    transport = Transport(target, mqtt_version=mqtt.value, threads=1, timeout_s=timeout_s)

    retries: list[str] = []

    def retried(step: str, reason: str) -> None:
        retries.append(f"{step} {reason}")

    try:
        result = asyncio.run(provision_device(transport, serial, options, on_retry=retried))
    except Rejected as exc:
        say(TOOL, rejection_line(exc, target.template_name))
        raise typer.Exit(EXIT_REFUSED) from None
    except DeviceFailure as exc:
        say(TOOL, failure_line(exc, target, serial, len(retries)))
        raise typer.Exit(EXIT_REFUSED) from None
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


def rejection_line(exc: Rejected, template_name: str) -> str:
    """AWS's errorCode and errorMessage; for a template the endpoint does not know, which name was asked."""
    from device_sim.identity import REGISTER_THING

    line = f"rejected: {exc.operation}: {exc.error_code} ({exc.status_code}): {exc.error_message}"
    if exc.operation == REGISTER_THING and (exc.status_code == 404 or "NotFound" in exc.error_code):
        line += (
            f"; the endpoint has no template '{template_name}': check --template-name "
            "(or the endpoint file's template_name)"
        )
    return line


def failure_line(exc: DeviceFailure, target: Target, serial: str, retries: int) -> str:
    """One line that says what most likely went wrong, then the raw cause."""
    from device_sim.identity import REGISTER_THING

    tried = f" (after {retries} retries)" if retries else ""
    template = target.template_name
    if exc.step == "claim_connect" and exc.kind in REFUSALS:
        # AWS IoT answers an unauthorised 3.1.1 CONNECT by closing the connection, with no reason; over MQTT
        # 5 a claim policy that refuses the client id gets CONNACK 0x87 (an inactive certificate still
        # gets the hang-up).
        answer = (
            "refused the claim connection"
            if exc.kind != "connection_closed"
            else "closed the claim connection"
        )
        return (
            f"failed: the endpoint {answer} after CONNECT{tried}: the claim certificate "
            f"is not active, or the claim policy does not allow client id '{target.claim_client_id(serial)}' "
            f"[{exc.detail}]"
        )
    if exc.step == "reconnect" and exc.kind in REFUSALS:
        return (
            f"failed: the endpoint refused the device's own certificate{tried}: is it ACTIVE, and does the "
            f"device policy allow client id = thing name? [{exc.detail}]"
        )
    if exc.kind == "subscribe_refused" and "$aws/provisioning-templates/" in exc.detail:
        # Not retried: the same SUBSCRIBE gets the same SUBACK.
        return (
            f"failed: the endpoint refused the subscription to template '{template}''s reply topics: it has "
            f"no template by that name, or the claim policy does not allow "
            f"$aws/provisioning-templates/{template}/provision/*; check --template-name and the claim "
            f"policy [{exc.detail}]"
        )
    if exc.kind == "subscribe_refused":
        return (
            f"failed: the endpoint refused the subscription to the certificate topics: the claim policy does "
            f"not allow $aws/certificates/create-from-csr/* (or create/* for --flow keys) [{exc.detail}]"
        )
    if exc.step == REGISTER_THING and exc.kind == "connection_closed" and retries:
        # Some endpoints (older AWS IoT behaviour) close the connection on a refused SUBSCRIBE or PUBLISH.
        return (
            f"failed (connection_closed){tried}: {exc.detail}; when every try ends so, the endpoint may be "
            f"closing the connection on a topic the claim policy refuses: check --template-name "
            f"('{template}') and the claim policy"
        )
    return f"failed ({exc.kind}){tried}: {exc.detail}"
