"""The options `provision`, `fleet` and `locust` share (the `Annotated` aliases), and how they become a
target and RegisterThing parameters: one declaration each, so "the same options as `fleet`" holds."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from device_sim import mqtt_versions
from device_sim.errors import UserError

if TYPE_CHECKING:
    from device_sim.target import Target


class PayloadFormat(StrEnum):
    json = "json"
    cbor = "cbor"


class CertificateFlow(StrEnum):
    csr = "csr"
    keys = "keys"


class MqttChoice(StrEnum):
    """mqtt_versions.MQTT_VERSIONS as the command line's choices (an enum member's name must be a name)."""

    v3 = "3.1.1"
    v5 = "5"


DEFAULT_MQTT = MqttChoice(mqtt_versions.DEFAULT_MQTT)


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
MqttOpt = Annotated[MqttChoice, typer.Option("--mqtt", help=mqtt_versions.MQTT_HELP)]
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


def target_from_options(
    endpoint_file: Path | None,
    claim: str | None,
    endpoint: str | None,
    port: int | None,
    ca_file: Path | None,
    claim_cert_file: Path | None,
    claim_key_file: Path | None,
    template_name: str | None,
    client_id_pattern: str | None,
) -> Target:
    """The target options, in the order the commands declare them, as a Target (or a UserError)."""
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


def parse_parameters(params: list[str] | None) -> dict[str, str]:
    """`--param k=v` items as RegisterThing parameters; the serial comes from --serial only."""
    parameters: dict[str, str] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param must be k=v, not '{item}'")
        if key == "SerialNumber":
            raise UserError("--param SerialNumber: the serial is given by --serial")
        parameters[key] = value
    return parameters
