"""The device's own key pair: made on the device, never sent anywhere; only its CSR leaves.

`MemoryKey` keeps the key in process memory (saved as a 0600 PEM file after provisioning); `Pkcs11Key`
(`device_sim.pkcs11_store`) keeps it inside a PKCS#11 token, the way an MCU keeps it in its secure element.
What may leave is the public key's fingerprint (`public_key_sha256`), which the factory publishes so the
registry can bind the serial to this key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from awscrt import io as crt_io
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fleetctl.fingerprint import public_key_sha256


class DeviceKey(Protocol):
    def csr_pem(self, serial: str) -> str:
        """A PEM CSR with subject CN = serial, signed by this key."""

    def tls_options(self, certificate_pem: bytes) -> crt_io.TlsContextOptions:
        """mTLS options for connecting with the device's own certificate and this key."""

    def save(self, out_dir: Path) -> Path:
        """Persist what the device keeps of its key under out_dir; returns the file written."""

    def public_key_sha256(self) -> str:
        """The registry's fingerprint of this key: SHA-256 of its DER SubjectPublicKeyInfo, lowercase hex."""


class MemoryKey:
    """An EC P-256 key in memory, as a device without a secure element would keep it in flash."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None) -> None:
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> MemoryKey:
        """A PEM private key: one the endpoint made (CreateKeysAndCertificate), or the factory's file."""
        key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported key type {type(key).__name__}")
        return cls(key)

    def public_key_sha256(self) -> str:
        return public_key_sha256(self._key.public_key())

    def csr_pem(self, serial: str) -> str:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
            .sign(self._key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def tls_options(self, certificate_pem: bytes) -> crt_io.TlsContextOptions:
        return crt_io.TlsContextOptions.create_client_with_mtls(certificate_pem, self.private_pem())

    def save(self, out_dir: Path) -> Path:
        return write_private(out_dir / "private.key", self.private_pem())


def write_private(path: Path, data: bytes) -> Path:
    """Write a secret with mode 0600 from the first byte on (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        os.write(fd, data)
    finally:
        os.close(fd)
    return path
