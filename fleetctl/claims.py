"""`claim export`: a generated-mode claim credential, as files for the factory programmer.

Where the credential comes from:
- emulator (--endpoint-file): the endpoint file's `claims[NAME]` (cert_file, key_file, certificate_id);
  the CA is the endpoint file's `ca_file` (the emulator's own CA);
- AWS (--region): the Secrets Manager secret `<stack_name>/claim-credentials/<NAME>` (or --secret-id),
  whose JSON value is {"claimName", "certificateId", "certificateArn", "certificatePem", "privateKey"}
  (written by the stack's Custom::ClaimCredential). AWS's server CA (AmazonRootCA1.pem) is public but
  not something fleetctl can produce offline: pass it with --ca-file, or download it from Amazon Trust
  Services yourself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from fleetctl.errors import FleetctlError
from fleetctl.target import Target

CERT_FILE = "claim.cert.pem"
KEY_FILE = "claim.private.key"
CA_FILE = "ca.pem"
MANIFEST_FILE = "claim.json"
AMAZON_ROOT_CA_URL = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"


def secret_name(stack_name: str, claim_name: str) -> str:
    """Same convention as infra/names.py claim_secret_name."""
    return f"{stack_name}/claim-credentials/{claim_name}"


@dataclass(frozen=True)
class ClaimMaterial:
    name: str
    certificate_id: str | None
    certificate_pem: str
    private_key_pem: str
    ca_pem: str | None
    source: str


def from_endpoint_file(target: Target, name: str) -> ClaimMaterial:
    endpoint = target.endpoint or {}
    claims = endpoint.get("claims")
    if not isinstance(claims, dict) or not claims:
        raise FleetctlError(f"endpoint file {target.endpoint_file} lists no claims")
    claim = claims.get(name)
    if not isinstance(claim, dict):
        raise FleetctlError(
            f"no claim {name!r} in {target.endpoint_file} (it has: {', '.join(sorted(claims))})"
        )
    ca = endpoint.get("ca_file")
    return ClaimMaterial(
        name=name,
        certificate_id=claim.get("certificate_id"),
        certificate_pem=_read(claim.get("cert_file"), "cert_file"),
        private_key_pem=_read(claim.get("key_file"), "key_file"),
        ca_pem=_read(ca, "ca_file") if ca else None,
        source=f"endpoint file {target.endpoint_file}",
    )


def from_secrets_manager(
    target: Target, name: str, *, stack_name: str, secret_id: str | None, ca_file: Path | None
) -> ClaimMaterial:
    secret = secret_id or secret_name(stack_name, name)
    try:
        value = target.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ResourceNotFoundException":
            raise FleetctlError(
                f"no secret {secret!r} in {target.region}: is claim {name!r} in mode "
                f"'generated' and the stack {stack_name} deployed there?"
            ) from None
        raise FleetctlError(f"cannot read secret {secret!r}: {code}") from None
    try:
        data: dict[str, Any] = json.loads(value)
        certificate_pem, private_key_pem = data["certificatePem"], data["privateKey"]
    except (ValueError, KeyError, TypeError):
        raise FleetctlError(
            f"secret {secret!r} is not a claim credential (JSON with certificatePem, privateKey)"
        ) from None
    return ClaimMaterial(
        name=name,
        certificate_id=data.get("certificateId"),
        certificate_pem=certificate_pem,
        private_key_pem=private_key_pem,
        ca_pem=_read(str(ca_file), "--ca-file") if ca_file else None,
        source=f"secret {secret} ({target.region})",
    )


def write_claim(material: ClaimMaterial, out_dir: Path, *, force: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    targets = [out_dir / CERT_FILE, out_dir / KEY_FILE] + ([out_dir / CA_FILE] if material.ca_pem else [])
    clash = [p.name for p in targets if p.exists()]
    if clash and not force:
        raise FleetctlError(f"{out_dir} already has {', '.join(clash)} (--force overwrites)")
    _write(out_dir / KEY_FILE, material.private_key_pem, 0o600)
    _write(out_dir / CERT_FILE, material.certificate_pem, 0o644)
    manifest: dict[str, Any] = {
        "claim": material.name,
        "certificate_id": material.certificate_id,
        "source": material.source,
        "cert_file": str((out_dir / CERT_FILE).resolve()),
        "key_file": str((out_dir / KEY_FILE).resolve()),
        "ca_file": None,
    }
    if material.ca_pem:
        _write(out_dir / CA_FILE, material.ca_pem, 0o644)
        manifest["ca_file"] = str((out_dir / CA_FILE).resolve())
    else:
        manifest["ca_note"] = (
            f"no CA written: fetch AmazonRootCA1.pem from {AMAZON_ROOT_CA_URL} or pass --ca-file"
        )
    _write(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n", 0o644)
    return manifest


def _write(path: Path, text: str, mode: int) -> None:
    # Created with its final mode (no window where the key is world-readable), fixed if it existed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: object, what: str) -> str:
    if not isinstance(path, str) or not path:
        raise FleetctlError(f"{what} is missing")
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise FleetctlError(f"cannot read {what} {path}: {exc.strerror}") from None
