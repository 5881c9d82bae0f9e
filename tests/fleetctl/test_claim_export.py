"""`fleetctl claim export`: from the emulator's endpoint file, and from Secrets Manager (moto)."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws
from typer.testing import CliRunner

from fleetctl.cli import app
from tests.hook.support import REGION

runner = CliRunner()


def credential() -> tuple[str, str]:
    """A throwaway claim certificate and key, made now (no key material is committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "claim")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_export_from_endpoint_file(tmp_path: Path) -> None:
    cert, key = credential()
    state = tmp_path / "state"
    state.mkdir()
    (state / "claim-line-a.cert.pem").write_text(cert)
    (state / "claim-line-a.key").write_text(key)
    (state / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nemulator CA\n-----END CERTIFICATE-----\n")
    endpoint = state / "endpoint.json"
    endpoint.write_text(
        json.dumps(
            {
                "region": REGION,
                "aws_endpoint_url": "http://127.0.0.1:1",
                "serial_table": "t",
                "ca_file": str(state / "ca.pem"),
                "claims": {
                    "line-a": {
                        "cert_file": str(state / "claim-line-a.cert.pem"),
                        "key_file": str(state / "claim-line-a.key"),
                        "certificate_id": "d" * 64,
                        "active": True,
                    }
                },
            }
        )
    )
    out = tmp_path / "factory"
    result = runner.invoke(
        app, ["claim", "export", "line-a", "--out", str(out), "--endpoint-file", str(endpoint)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "claim.cert.pem").read_text() == cert
    assert (out / "claim.private.key").read_text() == key
    assert mode(out / "claim.private.key") == 0o600
    assert (out / "ca.pem").read_text() == (state / "ca.pem").read_text()
    manifest = json.loads((out / "claim.json").read_text())
    assert manifest["certificate_id"] == "d" * 64 and "PRIVATE" not in (out / "claim.json").read_text()

    again = runner.invoke(
        app, ["claim", "export", "line-a", "--out", str(out), "--endpoint-file", str(endpoint)]
    )
    assert again.exit_code == 1 and "--force" in again.stderr
    (out / "claim.private.key").chmod(0o644)
    forced = runner.invoke(
        app, ["claim", "export", "line-a", "--out", str(out), "--endpoint-file", str(endpoint), "--force"]
    )
    assert forced.exit_code == 0 and mode(out / "claim.private.key") == 0o600

    unknown = runner.invoke(
        app, ["claim", "export", "line-z", "--out", str(out), "--endpoint-file", str(endpoint)]
    )
    assert unknown.exit_code == 1 and "no claim 'line-z'" in unknown.stderr and "line-a" in unknown.stderr


def test_export_from_secrets_manager(tmp_path: Path, monkeypatch: Any) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    cert, key = credential()
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        # The name the stack gives it: <stack_name>/claim-credentials/<claim> (stack_name from cdk.json).
        secrets.create_secret(
            Name="FleetProvisioning/claim-credentials/line-a",
            SecretString=json.dumps(
                {
                    "claimName": "line-a",
                    "certificateId": "e" * 64,
                    "certificateArn": "arn:aws:iot:x",
                    "certificatePem": cert,
                    "privateKey": key,
                }
            ),
        )
        out = tmp_path / "factory"
        result = runner.invoke(app, ["claim", "export", "line-a", "--out", str(out), "--region", REGION])
        assert result.exit_code == 0, result.output
        assert (out / "claim.private.key").read_text() == key and mode(out / "claim.private.key") == 0o600
        assert not (out / "ca.pem").exists() and "AmazonRootCA1.pem" in result.stderr

        ca = tmp_path / "AmazonRootCA1.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n")
        with_ca = runner.invoke(
            app,
            [
                "claim",
                "export",
                "line-a",
                "--out",
                str(out),
                "--region",
                REGION,
                "--ca-file",
                str(ca),
                "--force",
            ],
        )
        assert with_ca.exit_code == 0 and (out / "ca.pem").read_text() == ca.read_text()

        missing = runner.invoke(
            app, ["claim", "export", "line-b", "--out", str(tmp_path / "b"), "--region", REGION]
        )
        assert missing.exit_code == 1 and "FleetProvisioning/claim-credentials/line-b" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1
