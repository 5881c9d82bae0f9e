"""The emulator's TLS server context, handshaken in memory with Python's ssl as the device side."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from emulator.provisioning.ca import CertificateAuthority, write_private
from emulator.serving import server_ssl_context as _server_ssl_context


def server_context(tmp_path: Path, authority: CertificateAuthority) -> ssl.SSLContext:
    server = authority.issue_server_credential()
    (tmp_path / "server.pem").write_text(server.certificate_pem)
    write_private(tmp_path / "server.key", server.private_key_pem.encode())
    return _server_ssl_context(tmp_path, authority)


def client_context(tmp_path: Path, authority: CertificateAuthority, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=authority.certificate_pem)
    if with_certificate:
        device = authority.issue_client_credential("device")
        (tmp_path / "device.pem").write_text(device.certificate_pem)
        write_private(tmp_path / "device.key", device.private_key_pem.encode())
        context.load_cert_chain(tmp_path / "device.pem", tmp_path / "device.key")
    return context


def exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> ssl.SSLObject:
    """Handshake, then one record each way (TLS 1.3 tickets travel after the handshake), in memory."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(to_server, from_server, server_side=True)
    client = client_ctx.wrap_bio(to_client, from_client, server_hostname="127.0.0.1")
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
    server.write(b"\x20\x02\x00\x00")  # a CONNACK's worth of application data
    to_client.write(from_server.read())
    assert client.read(4) == b"\x20\x02\x00\x00"
    client.write(b"\xc0\x00")  # and a PINGREQ back
    to_server.write(from_client.read())
    assert server.read(2) == b"\xc0\x00"
    return client


def test_mutual_tls_13_without_session_tickets(tmp_path: Path) -> None:
    authority = CertificateAuthority.create()
    client = exchange(server_context(tmp_path, authority), client_context(tmp_path, authority, True))

    assert client.version() == "TLSv1.3"
    assert client.session is not None
    assert not client.session.has_ticket  # OpenSSL's default would have sent two


def test_a_client_without_a_certificate_is_refused(tmp_path: Path) -> None:
    authority = CertificateAuthority.create()
    with pytest.raises(ssl.SSLError):
        exchange(server_context(tmp_path, authority), client_context(tmp_path, authority, False))
