"""Test-time PKI and a minimal mTLS MQTT endpoint: keys are generated per test run, never committed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, cn: str = "test CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self, cn: str, public_key=None, server: bool = False
    ) -> tuple[ec.EllipticCurvePrivateKey | None, x509.Certificate]:
        key = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return key, builder.sign(self.key, hashes.SHA256())

    def sign_csr(self, csr_pem: str) -> x509.Certificate:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return self.issue(str(cn), public_key=csr.public_key())[1]


@dataclass
class Files:
    ca_file: Path
    claim_cert_file: Path
    claim_key_file: Path


def write_pki(directory: Path, authority: Authority, client_authority: Authority | None = None) -> Files:
    """The CA file of `authority`, and a claim certificate/key from client_authority (default the same)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = (client_authority or authority).issue("claim")
    files = Files(directory / "ca.pem", directory / "claim.pem", directory / "claim.key")
    files.ca_file.write_bytes(cert_pem(authority.cert))
    files.claim_cert_file.write_bytes(cert_pem(cert))
    assert key is not None
    files.claim_key_file.write_bytes(key_pem(key))
    return files


class MiniBroker:
    """Just enough MQTT 3.1.1 over mTLS to accept a CONNECT and acknowledge QoS 1 publishes.

    `connack` is the CONNACK return code it answers with; it records the client ids and publish topics it saw
    and the subject CN of each client certificate.
    """

    def __init__(self, directory: Path, authority: Authority, connack: int = 0) -> None:
        key, cert = authority.issue("localhost", server=True)
        assert key is not None
        (directory / "server.pem").write_bytes(cert_pem(cert))
        (directory / "server.key").write_bytes(key_pem(key))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "server.pem", directory / "server.key")
        self.context.verify_mode = ssl.CERT_REQUIRED
        (directory / "server-ca.pem").write_bytes(cert_pem(authority.cert))
        self.context.load_verify_locations(directory / "server-ca.pem")
        self.connack = connack
        self.client_ids: list[str] = []
        self.client_cns: list[str] = []
        self.published: list[tuple[str, bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(raw,), daemon=True).start()

    def _session(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                peer = tls.getpeercert()
                cn = dict(x[0] for x in peer["subject"]).get("commonName", "") if peer else ""
                while True:
                    header = tls.recv(1)
                    if not header:
                        return
                    length, shift = 0, 0
                    while True:
                        byte = tls.recv(1)[0]
                        length |= (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                    body = b""
                    while len(body) < length:
                        chunk = tls.recv(length - len(body))
                        if not chunk:
                            return
                        body += chunk
                    kind = header[0] >> 4
                    if kind == 1:  # CONNECT: protocol name, level, flags, keep-alive, then the client id
                        name_len = int.from_bytes(body[0:2], "big")
                        at = 2 + name_len + 4
                        id_len = int.from_bytes(body[at : at + 2], "big")
                        self.client_ids.append(body[at + 2 : at + 2 + id_len].decode())
                        self.client_cns.append(cn)
                        tls.sendall(bytes([0x20, 2, 0, self.connack]))
                    elif kind == 3:  # PUBLISH
                        topic_len = int.from_bytes(body[0:2], "big")
                        topic = body[2 : 2 + topic_len].decode()
                        qos = (header[0] >> 1) & 3
                        rest = body[2 + topic_len :]
                        packet_id = b""
                        if qos:
                            packet_id, rest = rest[:2], rest[2:]
                        self.published.append((topic, rest))  # before the PUBACK: the test reads it after
                        if qos:
                            tls.sendall(bytes([0x40, 2]) + packet_id)
                    elif kind == 12:  # PINGREQ
                        tls.sendall(bytes([0xD0, 0]))
                    elif kind == 14:  # DISCONNECT
                        return
        except (OSError, ssl.SSLError, IndexError):
            return
