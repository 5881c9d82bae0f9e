"""What the hook reads from the new device certificate: the key's fingerprint and the subject's CN.

`cryptography` comes with AWS's published Powertools layer, which is built with the `[all]` extras
(aws-lambda-powertools 3.x: `all` requires cryptography), as pydantic does: the function needs no bundling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID


class CertificateError(ValueError):
    """The event's certificatePem is missing or is not one PEM X.509 certificate."""


@dataclass(frozen=True)
class CertificateFacts:
    key_sha256: str  # lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (the registry's fingerprint)
    common_names: tuple[str, ...]  # every CN of the subject; a device certificate has exactly one
    not_after_ms: int = 0  # epoch milliseconds the certificate expires (`fleetctl certs expiring`)


def public_key_sha256(public_key: object) -> str:
    """The fingerprint the factory publishes: SHA-256 over the DER SubjectPublicKeyInfo, lowercase hex."""
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def certificate_facts(certificate_pem: str | None) -> CertificateFacts:
    if not certificate_pem:
        raise CertificateError("no certificatePem")
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        subject = certificate.subject
        names = tuple(str(cn.value) for cn in subject.get_attributes_for_oid(NameOID.COMMON_NAME))
        not_after = int(certificate.not_valid_after_utc.timestamp() * 1000)
        return CertificateFacts(public_key_sha256(certificate.public_key()), names, not_after)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise CertificateError(f"certificatePem is not a PEM certificate ({type(exc).__name__})") from None
