"""`device-sim rotate --device-dir D`: renew one provisioned device's certificate in the field.

Registered on the app by `device_sim.cli`; its target options are cli_options', as every command's. Exit
codes as every command: 0 done, 1 rejected or failed (the device directory then still holds a working
identity), 2 bad input.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from device_sim.cli_options import (
    DEFAULT_MQTT,
    CaFile,
    Claim,
    ClaimCert,
    ClaimKey,
    Endpoint,
    EndpointFile,
    FormatOpt,
    MqttOpt,
    PayloadFormat,
    Port,
    TemplateName,
    TimeoutOpt,
    target_from_options,
)
from device_sim.errors import DeviceFailure, Rejected, UserError

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

DeviceDir = Annotated[
    Path,
    typer.Option(
        "--device-dir", help="The device's directory, as `provision --out-dir` wrote it (identity.json...)."
    ),
]
RotationTemplate = Annotated[
    str | None,
    typer.Option(
        "--rotation-template-name",
        help="The stack's rotation template (default: the endpoint file's rotation_template_name).",
    ),
]
Pkcs11Pin = Annotated[
    str, typer.Option("--pkcs11-pin", envvar="DEVICE_SIM_PKCS11_PIN", help="User PIN of the SoftHSM2 token.")
]


def rotation_template(target_endpoint_file: Path | None, given: str | None) -> str:
    """--rotation-template-name, else the endpoint file's; a UserError when neither names one."""
    if given:
        return given
    if target_endpoint_file is not None:
        import json

        try:
            name = json.loads(target_endpoint_file.read_text()).get("rotation_template_name")
        except (OSError, ValueError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            return name
        raise UserError(
            f"the endpoint file {target_endpoint_file} names no rotation template: the stack has rotation "
            'off ({"rotation": {"enabled": true}} in cdk.json), or give --rotation-template-name'
        )
    raise UserError("give --rotation-template-name (the stack's RotationTemplateName output)")


def rotate(
    device_dir: DeviceDir,
    endpoint_file: EndpointFile = None,
    claim: Claim = None,
    endpoint: Endpoint = None,
    port: Port = None,
    ca_file: CaFile = None,
    claim_cert_file: ClaimCert = None,
    claim_key_file: ClaimKey = None,
    template_name: TemplateName = None,
    rotation_template_name: RotationTemplate = None,
    fmt: FormatOpt = PayloadFormat.json,
    mqtt: MqttOpt = DEFAULT_MQTT,
    pkcs11_pin: Pkcs11Pin = "1234",
    timeout_s: TimeoutOpt = 30.0,
) -> None:
    """Rotate a provisioned device's certificate: a new key, a new certificate through the rotation template
    over the device's own connection, reconnect with it, publish once; print the new certificate id.

    The old identity stays in the device directory until the new one has connected. A lost reply, a retry or
    an earlier run cut short are recovered from (docs/rotation.md)."""
    from device_sim.device_dir import load_identity
    from device_sim.rotation import RotateOptions, rotate_device
    from device_sim.transport import Transport

    if not (device_dir / "identity.json").is_file():
        raise UserError(f"{device_dir} holds no provisioned device (no identity.json)")
    target = target_from_options(
        endpoint_file, claim, endpoint, port, ca_file, claim_cert_file, claim_key_file, template_name, None
    )
    options = RotateOptions(
        template_name=rotation_template(endpoint_file, rotation_template_name),
        fmt=fmt.value,
        pkcs11_pin=pkcs11_pin,
    )
    identity = load_identity(device_dir, pkcs11_pin=pkcs11_pin)
    transport = Transport(target, mqtt_version=mqtt.value, threads=1, timeout_s=timeout_s)
    retries: list[str] = []
    try:
        result = asyncio.run(
            rotate_device(transport, identity, options, on_retry=lambda step, why: retries.append(step))
        )
    except Rejected as exc:
        print(
            f"rejected: {exc.operation}: {exc.error_code} ({exc.status_code}): {exc.error_message}; "
            f"the device keeps its certificate {identity.certificate_id[:12]}…",
            file=sys.stderr,
        )
        raise typer.Exit(1) from None
    except DeviceFailure as exc:
        tried = f" (after {len(retries)} retries)" if retries else ""
        print(f"failed ({exc.kind}){tried}: {exc.detail}", file=sys.stderr)
        raise typer.Exit(1) from None
    steps = ", ".join(f"{k} {v:.0f} ms" for k, v in result.steps_ms.items())
    stderr.print(
        f"[green]rotated[/] {result.thing_name}: certificate {result.previous_certificate_id[:12]}… -> "
        f"[bold]{result.certificate_id[:12]}…[/]{' (resumed)' if result.resumed else ''}, identity in "
        f"{device_dir}; {steps}; total {result.total_ms:.0f} ms"
    )
    print(result.certificate_id)
