"""A lost rotation reply: the emulator applies the rotation's RegisterThing and never answers it. `rotate`
retries with the same token (spent: the request was applied), then sends a new CSR for the same new key,
which the hook allows as the same device (ALLOWED_SAME_KEY); the device ends with a working certificate and
its thing with exactly one ACTIVE certificate.

The device is provisioned by an emulator that loses nothing; the one that loses the first RegisterThing
reply is the same emulator restarted on its saved state (--persist), so the lost reply is the rotation's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.device_sim.conftest import started
from tests.rotation.support import (
    attached,
    connects,
    identity_of,
    new_serials,
    provisioned,
    rotate,
    status,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rotation-e2e")]


def test_a_lost_rotation_reply_then_a_retry_leaves_a_working_certificate(
    rotation_assembly: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = started(rotation_assembly, state, "--persist", "--persist-interval-s", "0.2")
    emulator = next(first)
    try:
        device = provisioned(emulator, tmp_path, new_serials(emulator, 1)[0])
    finally:
        first.close()  # stops the emulator: its last save holds the device
    before = identity_of(device)

    lossy = started(rotation_assembly, state, "--persist", "--lose-replies", "RegisterThing=1")
    emulator = next(lossy)
    try:
        result = rotate(emulator, device, "--timeout-s", "3")
        assert result.exit_code == 0, result.output
        after = identity_of(device)
        assert after.certificate_id != before.certificate_id
        log = emulator.log_path.read_text()
        assert log.count("RegisterThing reply lost on purpose") == 1
        assert "InvalidCertificateOwnershipToken" in log  # the retry with the spent token
        assert '"reason":"ALLOWED_SAME_KEY"' in log.replace(" ", "")  # the new CSR, same new key
        key = (device / "private.key").read_bytes()
        assert connects(emulator, (device / "certificate.pem").read_bytes(), key, after.thing_name)
        # The certificate whose reply was lost is deactivated by the hook; the old one by the retirer.
        wait_for(
            "one certificate left", lambda: attached(emulator, after.thing_name) == {after.certificate_id}
        )
        assert status(emulator, before.certificate_id) == "INACTIVE"
    finally:
        lossy.close()
