"""The device key in a SoftHSM2 token: made there, never exported, signs the CSR, does mTLS via awscrt."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509

from device_sim.mqtt_versions import MQTT_VERSIONS
from device_sim.pkcs11_store import Pkcs11Key, Token, find_softhsm, prepare_softhsm_token
from device_sim.target import Target
from device_sim.transport import Transport
from tests.device_sim.mini_broker import MiniBroker
from tests.device_sim.pki import Authority, cert_pem, write_pki

pytestmark = [
    pytest.mark.skipif(
        find_softhsm() is None,
        reason="SoftHSM2 is not installed (apt-get install softhsm2; .ci/run installs it where it can)",
    ),
    # SoftHSM2 reads SOFTHSM2_CONF once per process: this module's tests share one worker and one token.
    pytest.mark.xdist_group("softhsm"),
]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    return prepare_softhsm_token(tmp_path_factory.mktemp("softhsm") / "token")


def test_csr_is_signed_in_the_token_with_cn_serial(token: Token) -> None:
    key = Pkcs11Key.generate(token, "RX-0001")
    csr = x509.load_pem_x509_csr(key.csr_pem("RX-0001").encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=RX-0001"
    assert csr.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    # A second CSR from the same token key carries the same public key.
    again = x509.load_pem_x509_csr(key.csr_pem("RX-0001").encode())
    assert again.public_key() == csr.public_key()


def test_private_key_never_leaves_the_token(token: Token, tmp_path: Path) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    key = Pkcs11Key.generate(token, "RX-0002")
    saved = key.save(tmp_path)
    assert saved.name == "pkcs11.json"
    assert "PRIVATE KEY" not in saved.read_text() and key.key_label in saved.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["pkcs11.json"]
    lib = pkcs11.lib(str(token.module))
    with lib.get_token(token_label=token.label).open(user_pin=token.user_pin) as session:
        private = session.get_key(
            object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=key.key_label
        )
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.PKCS11Error):
            private[Attribute.VALUE]


@pytest.mark.parametrize("mqtt", MQTT_VERSIONS)
def test_awscrt_does_mtls_with_the_token_key(token: Token, tmp_path: Path, mqtt: str) -> None:
    authority = Authority.create()
    files = write_pki(tmp_path / "pki", authority)
    broker = MiniBroker(tmp_path, authority)
    key = Pkcs11Key.generate(token, "RX-0003")
    certificate = authority.sign_csr(key.csr_pem("RX-0003"))
    target = Target(
        host="127.0.0.1",
        port=broker.port,
        ca_file=files.ca_file,
        claim_cert_file=files.claim_cert_file,
        claim_key_file=files.claim_key_file,
        template_name="t",
    )
    transport = Transport(target, mqtt_version=mqtt, threads=1, timeout_s=5)

    async def connect_and_publish() -> None:
        connection = transport.device_connection(key.tls_options(cert_pem(certificate)), "device-RX-0003")
        await transport.connect(connection, "reconnect")
        await transport.publish(connection, "devices/device-RX-0003/telemetry", b"{}", "first_publish")
        await transport.disconnect(connection)

    try:
        asyncio.run(connect_and_publish())
    finally:
        broker.close()
    assert broker.client_cns == ["RX-0003"]  # the server saw the certificate whose key is in the token
    assert broker.client_ids == ["device-RX-0003"]
    assert broker.levels == [5 if mqtt == "5" else 4]
    assert broker.published == [("devices/device-RX-0003/telemetry", b"{}")]
