"""A lost RegisterThing reply does not brick the device (issue 11): the simulator recovers as firmware should.

The emulator applies the first RegisterThing and never answers it. The device's retry with the same token
is refused (the token was spent), so it asks for a new certificate for the key it kept, which the hook
recognises as the same device: the new certificate is attached to the same thing, the first deactivated.
Over MQTT 3.1.1 and MQTT 5: the request-response client gives up on the lost reply in its own way in each.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from device_sim.mqtt_versions import MQTT_VERSIONS
from tests.device_sim.conftest import Emulator
from tests.device_sim.test_e2e import provision

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("device-sim-e2e")]


@pytest.mark.parametrize("mqtt", MQTT_VERSIONS)
def test_the_device_recovers_from_a_lost_register_thing_reply(
    lossy_emulator: Emulator, tmp_path: Path, mqtt: str
) -> None:
    serial = f"LOST{uuid.uuid4().hex[:8].upper()}"
    lossy_emulator.import_serials([serial])
    out = tmp_path / serial
    result = provision(lossy_emulator, serial, out, "--timeout-s", "5", "--mqtt", mqtt)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"device-{serial}"

    log = lossy_emulator.log_path.read_text()
    assert log.count("RegisterThing reply lost on purpose") == 1
    assert "InvalidCertificateOwnershipToken" in log  # the retry with the spent token
    assert '"reason":"ALLOWED_SAME_KEY"' in log.replace(" ", "")

    iot = lossy_emulator.client("iot")
    identity = json.loads((out / "identity.json").read_text())
    principals = iot.list_thing_principals(thingName=f"device-{serial}")["principals"]
    statuses = {
        arn.rsplit("/", 1)[-1]: iot.describe_certificate(certificateId=arn.rsplit("/", 1)[-1])[
            "certificateDescription"
        ]["status"]
        for arn in principals
    }
    # The thing holds the first certificate (deactivated) and the new one, which the device keeps and uses.
    assert statuses.pop(identity["certificate_id"]) == "ACTIVE"
    assert list(statuses.values()) == ["INACTIVE"]
    assert not (out / "pending-certificate.pem").exists()


def test_a_run_interrupted_after_keeping_its_key_resumes_with_it(emulator: Emulator, tmp_path: Path) -> None:
    """A device that rebooted mid-provisioning finds the key it kept and provisions with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from device_sim.keys import write_private

    serial = f"BOOT{uuid.uuid4().hex[:8].upper()}"
    emulator.import_serials([serial])
    out = tmp_path / serial
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(out / "private.key", pem)
    result = provision(emulator, serial, out)
    assert result.exit_code == 0, result.output
    assert "resuming with the key kept" in result.stderr
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate((out / "certificate.pem").read_bytes())
    assert certificate.public_key() == key.public_key()
