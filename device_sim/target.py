"""Where the devices connect: an emulator's endpoint file, or a real AWS IoT endpoint given by options."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim.errors import UserError

DEFAULT_PORT = 8883
DEFAULT_CLIENT_ID_PATTERN = "prov-*"
DEFAULT_TOPIC_ROOT = "devices"


@dataclass(frozen=True)
class Target:
    """An AWS IoT endpoint (or the emulator) and the claim credential the devices carry from the factory."""

    host: str
    port: int
    ca_file: Path
    claim_cert_file: Path
    claim_key_file: Path
    template_name: str
    claim_client_id_pattern: str = DEFAULT_CLIENT_ID_PATTERN
    region: str | None = None
    aws_endpoint_url: str | None = None
    serial_table: str | None = None
    thing_name_prefix: str | None = None

    def claim_client_id(self, serial: str) -> str:
        """The claim connection's client id: the stack's pattern with its `*` replaced by the serial."""
        if "*" in self.claim_client_id_pattern:
            return self.claim_client_id_pattern.replace("*", serial, 1).replace("*", "")
        # A pattern without a wildcard names one fixed client id; IoT would let only one device in at a time.
        return self.claim_client_id_pattern

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def read_ca(self) -> bytes:
        return _read(self.ca_file, "CA file")

    def read_claim(self) -> tuple[bytes, bytes]:
        return _read(self.claim_cert_file, "claim certificate file"), _read(
            self.claim_key_file, "claim key file"
        )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def load_endpoint_file(path: Path, claim: str | None = None) -> Target:
    """Read the emulator's endpoint.json; `claim` picks one of its named claim credentials."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read the endpoint file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"the endpoint file {path} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"the endpoint file {path} must hold a JSON object")

    def field(name: str, kind: type, source: dict[str, Any] = data, required: bool = True) -> Any:
        value = source.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, str) and not value):
            raise UserError(f'the endpoint file {path} has no valid "{name}" ({kind.__name__} expected)')
        return value

    cert_file, key_file = field("claim_cert_file", str), field("claim_key_file", str)
    if claim is not None:
        claims = data.get("claims")
        if not isinstance(claims, dict) or claim not in claims or not isinstance(claims[claim], dict):
            known = ", ".join(sorted(claims)) if isinstance(claims, dict) else "none"
            raise UserError(
                f"the endpoint file {path} has no claim credential named '{claim}' (known: {known})"
            )
        cert_file = field("cert_file", str, claims[claim])
        key_file = field("key_file", str, claims[claim])
    port = field("port", int)
    if not 0 < port < 65536:
        raise UserError(f'the endpoint file {path} has an invalid "port" {port}')
    return Target(
        host=field("host", str),
        port=port,
        ca_file=Path(field("ca_file", str)),
        claim_cert_file=Path(cert_file),
        claim_key_file=Path(key_file),
        template_name=field("template_name", str),
        claim_client_id_pattern=field("claim_client_id_pattern", str, required=False)
        or DEFAULT_CLIENT_ID_PATTERN,
        region=field("region", str, required=False),
        aws_endpoint_url=field("aws_endpoint_url", str, required=False),
        serial_table=field("serial_table", str, required=False),
        thing_name_prefix=field("thing_name_prefix", str, required=False),
    )


def resolve_target(
    *,
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
    """The target from either `--endpoint-file` (emulator) or the explicit real-AWS options, never both."""
    explicit = {
        "--endpoint": endpoint,
        "--ca-file": ca_file,
        "--claim-cert-file": claim_cert_file,
        "--claim-key-file": claim_key_file,
        "--template-name": template_name,
    }
    if endpoint_file is not None:
        given = [name for name, value in explicit.items() if value is not None]
        if given:
            raise UserError(f"give either --endpoint-file or {', '.join(given)}, not both")
        target = load_endpoint_file(endpoint_file, claim)
        if port is not None:
            target = _replace(target, port=port)
        if client_id_pattern is not None:
            target = _replace(target, claim_client_id_pattern=client_id_pattern)
        return target
    if claim is not None:
        raise UserError(
            "--claim picks a claim credential from --endpoint-file; give --claim-cert-file instead"
        )
    missing = [name for name, value in explicit.items() if value is None]
    if len(missing) == len(explicit):
        raise UserError(
            "give --endpoint-file (emulator) or --endpoint, --ca-file, --claim-cert-file, "
            "--claim-key-file and --template-name (AWS IoT)"
        )
    if missing:
        raise UserError(f"--endpoint also needs {', '.join(missing)}")
    assert endpoint and ca_file and claim_cert_file and claim_key_file and template_name
    return Target(
        host=endpoint,
        port=port or DEFAULT_PORT,
        ca_file=ca_file,
        claim_cert_file=claim_cert_file,
        claim_key_file=claim_key_file,
        template_name=template_name,
        claim_client_id_pattern=client_id_pattern or DEFAULT_CLIENT_ID_PATTERN,
    )


def _replace(target: Target, **changes: Any) -> Target:
    from dataclasses import replace

    return replace(target, **changes)
