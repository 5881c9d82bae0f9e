"""Fixtures for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_ssl_cert_file() -> Iterator[None]:
    """`device_sim.transport.Transport` points SSL_CERT_FILE at its target's CA file for the rest of its
    process, which is what the simulator's commands want. A test must not leave it naming its temporary
    CA for the tests (and child processes) that follow in the same worker."""
    before = os.environ.get("SSL_CERT_FILE")
    yield
    if before is None:
        os.environ.pop("SSL_CERT_FILE", None)
    else:
        os.environ["SSL_CERT_FILE"] = before
