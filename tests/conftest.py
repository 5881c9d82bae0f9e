"""Fixtures for every test."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

# A suite started as a background job without job control (`make test &` in a script, nohup) inherits
# SIGINT ignored, and so would every child it starts: the tests that Ctrl-C a command (exit 130) would
# see it ignore the signal. The default disposition here gives the children theirs (an ignored signal
# stays ignored across exec; a handler does not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
