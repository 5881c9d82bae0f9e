"""The device-key fingerprint that binds a serial to its device (`public_key_sha256`, docs/registry.md).

The one definition of the value, used by `registry import`, the manifest import, the simulator's factory
and the tests: the lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo. The hook computes the
same from the certificate a device presents (`lambdas/provisioning_hook/certificate.py`, its own copy because
the Lambda's asset holds `lambdas/` only), so the two must agree to the bit: tests/hook/test_fingerprint.py.
"""

from __future__ import annotations

import hashlib
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

FINGERPRINT_COLUMN = "public_key_sha256"
FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_ANY_CASE_RE = re.compile(r"[0-9a-fA-F]{64}")


def public_key_sha256(public_key: PublicKeyTypes) -> str:
    """The fingerprint of a public key (a certificate's, a CSR's, or a device key's public half)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki_sha256(der)


def spki_sha256(spki_der: bytes) -> str:
    """The fingerprint of a DER SubjectPublicKeyInfo (what a PKCS#11 token reports for its key)."""
    return hashlib.sha256(spki_der).hexdigest()


def normalise_fingerprint(text: str) -> tuple[str | None, str | None]:
    """(fingerprint, None) or (None, problem).

    Upper-case hex is accepted and lowered: it is the same 256-bit number, tools differ in how they print
    it (certutil, some vendor portals), and the stored form stays the canonical lowercase the hook compares.
    Anything else is refused, colons included: `openssl x509 -fingerprint` prints `AB:CD:...`, and that is
    the hash of the whole certificate, not of its public key, so it would never match.
    """
    if _ANY_CASE_RE.fullmatch(text):
        return text.lower(), None
    shown = text[:80]
    if ":" in text:
        return None, (
            f"public_key_sha256 {shown!r} has colons: that looks like a certificate fingerprint; "
            f"give the SHA-256 of the public key (64 hex digits)"
        )
    return None, f"public_key_sha256 {shown!r} is not 64 hex digits (SHA-256 of the DER public key)"
