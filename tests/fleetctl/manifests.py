"""Microchip-style secure-element manifests built at test time, from keys made in the test.

The shape follows Microchip's "Trust Platform Manifest File Format": a JSON array of JWS objects in the
flattened JSON serialization, protected header {alg, kid, x5t#S256}, payload a SecureElement whose
publicKeySet holds one JWK per slot, slot 0 with x5c = [device certificate, device signer certificate].
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.registry import HeaderParameter

from fleetctl.fingerprint import public_key_sha256

REGISTRY = jws.JWSRegistry(header_registry={"uniqueId": HeaderParameter("id", "str")}, algorithms=["ES256"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class Authority:
    """A self-signed EC P-256 certificate and its key: a manifest signer, or a device-certificate signer."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        self.cert = self.issue(subject, self.key.public_key(), issuer=subject, ca=True)

    def issue(
        self, subject: x509.Name, public_key: Any, *, issuer: x509.Name | None = None, ca: bool = False
    ) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        return builder.sign(self.key, hashes.SHA256())

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def jwk(kid: str, public_key: ec.EllipticCurvePublicKey, x5c: list[str] | None = None) -> dict[str, Any]:
    numbers = public_key.public_numbers()
    key: dict[str, Any] = {
        "kid": kid,
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    if x5c is not None:
        key["x5c"] = x5c
    return key


@dataclass
class Chip:
    """One Trust&GO part: its serial number, its slot-0 device key and that key's certificate chain."""

    unique_id: str
    device_signer: Authority
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    slot1: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def cn(self) -> str:
        return "sn" + self.unique_id.upper()  # what Trust&GO puts in the device certificate

    @property
    def fingerprint(self) -> str:
        return public_key_sha256(self.key.public_key())

    def secure_element(self) -> dict[str, Any]:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Silicon"),
                x509.NameAttribute(NameOID.COMMON_NAME, self.cn),
            ]
        )
        device_cert = self.device_signer.issue(subject, self.key.public_key())
        return {
            "version": 1,
            "model": "ATECC608B",
            "partNumber": "ATECC608B-TNGTLS",
            "manufacturer": {"organizationName": "Example Silicon", "organizationalUnitName": "Test"},
            "provisioningTimestamp": "2026-01-01T00:00:00.000Z",
            "uniqueId": self.unique_id,
            "publicKeySet": {
                "keys": [
                    jwk("0", self.key.public_key(), [der_b64(device_cert), der_b64(self.device_signer.cert)]),
                    jwk("1", self.slot1.public_key()),
                ]
            },
        }


def sign_entry(element: dict[str, Any], signer: Authority, *, alg: str = "ES256") -> dict[str, Any]:
    ski = signer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    protected = {
        "typ": "JWT",
        "alg": alg,
        "kid": b64url(ski),
        "x5t#S256": b64url(signer.cert.fingerprint(hashes.SHA256())),
    }
    member = {"protected": protected, "header": {"uniqueId": element["uniqueId"]}}
    signed = jws.serialize_json(
        member, json.dumps(element).encode(), ECKey.import_key(signer.key), registry=REGISTRY
    )
    return dict(signed)


def manifest(chips: list[Chip], signer: Authority) -> list[dict[str, Any]]:
    return [sign_entry(chip.secure_element(), signer) for chip in chips]


def chips(n: int, start: int = 1) -> list[Chip]:
    device_signer = Authority("Example Signer 2C00")
    return [Chip(f"0123{start + i:012x}01", device_signer) for i in range(n)]
