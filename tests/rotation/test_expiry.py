"""Certificates that expire: the emulator issues them with `--certificate-validity-days`, refuses an expired
one in the TLS handshake with a line that says so, and `fleetctl certs expiring` lists exactly the devices
whose current certificate expires within N days."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from fleetctl.cli import app as fleetctl
from tests.device_sim.conftest import Emulator, started
from tests.rotation.support import connects, fleetctl_json, identity_of, new_serials, provisioned, rotate

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rotation-e2e")]
SHORT_DAYS = 0.0001  # 8.64 s: provisioning and its reconnect fit, then the certificate expires


@pytest.fixture(scope="module")
def short_lived(rotation_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from started(
        rotation_assembly,
        tmp_path_factory.mktemp("short-lived"),
        "--certificate-validity-days",
        str(SHORT_DAYS),
    )


def not_after(device: Path) -> dt.datetime:
    return x509.load_pem_x509_certificate((device / "certificate.pem").read_bytes()).not_valid_after_utc


def test_an_expired_certificate_cannot_connect(short_lived: Emulator, tmp_path: Path) -> None:
    device = provisioned(short_lived, tmp_path)  # provisioned, reconnected and published in its lifetime
    identity = identity_of(device)
    expires = not_after(device)
    issued_for = expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=0) < issued_for <= dt.timedelta(days=SHORT_DAYS)
    item = short_lived.serial_item(identity.serial)
    assert item is not None and int(item["certificate_expires_at"]) == int(expires.timestamp() * 1000)

    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.0)
    key = (device / "private.key").read_bytes()
    assert not connects(short_lived, (device / "certificate.pem").read_bytes(), key, identity.thing_name)
    assert (
        "connect refused in the TLS handshake: client certificate expired" in short_lived.log_path.read_text()
    )
    # Too late to rotate: the device cannot connect to ask (rotate before expiry: docs/rotation.md).
    result = rotate(short_lived, device, "--timeout-s", "3")
    assert result.exit_code == 1 and identity_of(device).certificate_id == identity.certificate_id
    listed = fleetctl_json(short_lived, "certs", "expiring", "--within-days", "0")
    expired = {d["serial"]: d for d in listed["devices"]}
    assert expired[identity.serial]["expired"] is True


def test_certs_expiring_lists_exactly_the_devices_it_should(
    rotation_emulator: Emulator, tmp_path: Path
) -> None:
    """30-day certificates (the emulator's --certificate-validity-days 30): within 29 days none of these
    devices, within 31 days the provisioned ones, never the revoked or the unprovisioned."""
    serials = new_serials(rotation_emulator, 4)
    devices = [provisioned(rotation_emulator, tmp_path, serial) for serial in serials[:3]]
    revoked = CliRunner().invoke(
        fleetctl, ["registry", "revoke", serials[2], "--endpoint-file", str(rotation_emulator.endpoint_file)]
    )
    assert revoked.exit_code == 0, revoked.output
    rotated = rotate(rotation_emulator, devices[1])  # its new certificate's expiry replaces the old one's
    assert rotated.exit_code == 0, rotated.output

    def listed(days: str) -> dict[str, dict[str, object]]:
        found = fleetctl_json(rotation_emulator, "certs", "expiring", "--within-days", days)["devices"]
        return {d["serial"]: d for d in found}

    assert not set(serials) & set(listed("29"))
    within = listed("31")
    assert sorted(set(serials) & set(within)) == sorted(serials[:2])
    for device in devices[:2]:
        identity = identity_of(device)
        entry = within[identity.serial]
        assert entry["certificate_id"] == identity.certificate_id
        assert entry["expires_at_ms"] == int(not_after(device).timestamp() * 1000)
        assert 29.9 < float(entry["days_left"]) <= 30  # type: ignore[arg-type]
    # Every device listed, of any test, is a provisioned serial whose certificate expires within 31 days.
    horizon = (time.time() + 31 * 86_400) * 1000
    for serial, entry in within.items():
        item = rotation_emulator.serial_item(serial)
        assert item is not None and item["status"] == "RESERVED"
        assert int(item["certificate_expires_at"]) == entry["expires_at_ms"] < horizon
