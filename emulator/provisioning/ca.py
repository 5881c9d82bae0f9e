"""The emulator's certificate authority: TLS server certificate, claim certificates, device certificates.

AWS IoT signs device certificates with its own CA; locally one EC P-256 CA plays that role and is also
the root the devices trust for the server certificate (written to the state dir as `ca.pem`).
Certificate ids are AWS's: the SHA-256 of the certificate's DER encoding, in hex.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.provisioning.errors import InvalidCertificateSigningRequest

# AWS-issued certificates are valid until the end of 2049.
NOT_AFTER = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def certificate_id(certificate_pem: str | bytes) -> str:
    pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by the owner only (mode 0600 from the start, no window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class IssuedCredential:
    certificate_pem: str
    private_key_pem: str
    certificate_id: str


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        # Device certificates (CreateCertificateFromCsr, CreateKeysAndCertificate): valid this long from
        # their issue, or until NOT_AFTER as AWS's (None). `--certificate-validity-days`, so that expiry
        # and rotation can be tried without waiting for 2049. Claims and the server keep NOT_AFTER.
        self.device_validity: dt.timedelta | None = None

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        """Reuse the CA in `directory` if one is there (devices keep trusting it across restarts)."""
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        authority = cls.create()
        write_private(key_path, _key_pem(authority._key))
        cert_path.write_text(authority.certificate_pem)
        return authority

    @classmethod
    def create(cls, common_name: str = "Fleet provisioning emulator CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleet-provisioning emulator"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def _issue(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        *,
        server_names: list[str] | None = None,
        device: bool = False,
    ) -> str:
        now = dt.datetime.now(dt.UTC)
        not_after = NOT_AFTER
        if device and self.device_validity is not None:
            not_after = min(NOT_AFTER, now + self.device_validity)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if server_names is not None:
            alt: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alt.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()

    def issue_server_credential(
        self, names: tuple[str, ...] = ("localhost", "127.0.0.1")
    ) -> IssuedCredential:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        pem = self._issue(subject, key.public_key(), server_names=list(names))
        return IssuedCredential(pem, _key_pem(key).decode(), certificate_id(pem))

    def issue_client_credential(self, common_name: str) -> IssuedCredential:
        """A fresh EC key and certificate (the claim credentials)."""
        key = ec.generate_private_key(ec.SECP256R1())
        pem = self._issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
        return IssuedCredential(pem, _key_pem(key).decode(), certificate_id(pem))

    def create_keys_and_certificate(self) -> IssuedCredential:
        """CreateKeysAndCertificate: AWS generates an RSA 2048 key pair."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
        pem = self._issue(subject, key.public_key(), device=True)
        return IssuedCredential(pem, _key_pem(key).decode(), certificate_id(pem))

    def sign_csr(self, csr_pem: str) -> tuple[str, str]:
        """CreateCertificateFromCsr: (certificate PEM, certificate id); a bad CSR is a 400."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except (ValueError, TypeError):
            raise InvalidCertificateSigningRequest(
                "certificateSigningRequest is not a PEM-encoded PKCS#10 certificate signing request"
            ) from None
        if not csr.is_signature_valid:
            raise InvalidCertificateSigningRequest("The CSR's signature does not verify")
        public_key = csr.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise InvalidCertificateSigningRequest("RSA keys must be at least 2048 bits")
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(public_key.curve, ALLOWED_CURVES):
                raise InvalidCertificateSigningRequest(f"Unsupported EC curve {public_key.curve.name}")
        else:
            raise InvalidCertificateSigningRequest("Only RSA and EC (P-256/384/521) keys are supported")
        subject = (
            csr.subject
            if len(csr.subject)
            else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
        )
        pem = self._issue(subject, public_key, device=True)
        return pem, certificate_id(pem)
