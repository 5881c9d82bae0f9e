"""The factory's fingerprint (fleetctl) and the hook's are one definition, written twice only because the
Lambda's asset holds `lambdas/` alone: for every key type a device may have, they agree to the bit."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from provisioning_hook.certificate import certificate_facts

from fleetctl.fingerprint import FINGERPRINT_RE, public_key_sha256


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "rsa2048"],
)
def test_factory_and_hook_compute_the_same_fingerprint(make_key) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SN-000001")])
    now = dt.datetime.now(dt.UTC)
    pem = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    facts = certificate_facts(pem)
    assert facts.key_sha256 == public_key_sha256(key.public_key())
    assert FINGERPRINT_RE.fullmatch(facts.key_sha256) and facts.common_names == ("SN-000001",)
