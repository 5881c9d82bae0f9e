from __future__ import annotations

import pytest

from emulator.provisioning.errors import InvalidCertificateOwnershipToken
from emulator.provisioning.tokens import TokenStore


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_lifecycle() -> None:
    clock = Clock()
    store = TokenStore(10, clock=clock)
    token = store.issue("cert-1")
    grant = store.claim(token)
    assert grant.certificate_id == "cert-1"
    with pytest.raises(InvalidCertificateOwnershipToken, match="already being used"):
        store.claim(token)  # a concurrent second use
    store.release(grant)
    store.spend(store.claim(token))
    with pytest.raises(InvalidCertificateOwnershipToken):
        store.claim(token)


def test_expiry_returns_the_certificates_of_unused_tokens_only() -> None:
    clock = Clock()
    store = TokenStore(10, clock=clock)
    idle, busy = store.issue("idle"), store.issue("busy")
    store.claim(busy)
    clock.now = 10
    with pytest.raises(InvalidCertificateOwnershipToken, match="expired"):
        store.claim(idle)
    assert store.expire() == ["idle"]
    assert len(store) == 1  # the one in use is kept until its request ends
