"""Fixtures of the emulator tests. The end-to-end ones share one synthesized stack and one emulator
process per xdist worker (group "emulator-e2e"); see test_e2e.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.ca import CertificateAuthority


@pytest.fixture(scope="session")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture()
def fresh_authority() -> Iterator[CertificateAuthority]:
    yield CertificateAuthority.create()
