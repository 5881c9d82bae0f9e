"""Fixtures of the load, fault and bad-input suite.

The synthesized stack is the emulator tests' own fixture (imported, not copied). Each test starts its own
`python -m emulator up` (tests.emulator.conftest.EmulatorProcess) so that "things = provisioned serials"
can be checked exactly, without other tests' devices in the same registry.
"""

from __future__ import annotations

from tests.emulator.conftest import cloud_assembly  # noqa: F401 - the shared session fixture
