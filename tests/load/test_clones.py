"""1,000 devices at once, 50 of them clones of other devices' serials, through the fleet runner."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_sim.device import DeviceOptions
from device_sim.fleet import FleetPlan, run_fleet
from device_sim.report import FleetStats
from device_sim.target import load_endpoint_file
from device_sim.transport import Transport
from tests.emulator.conftest import EmulatorProcess
from tests.load.support import certificate_id_of, import_serials, snapshot, start_emulator

pytestmark = [pytest.mark.load, pytest.mark.e2e]

DEVICES = 1000
CLONES = 50
CONCURRENCY = 100


@pytest.fixture
def emulator(cloud_assembly: Path, tmp_path: Path) -> Iterator[EmulatorProcess]:
    process = start_emulator(cloud_assembly, tmp_path / "state")
    yield process
    process.stop()


def test_clones_are_rejected_and_both_registries_agree(emulator: EmulatorProcess) -> None:
    """Nothing lost: every one of the 950 distinct serials is provisioned exactly once (one thing, one
    ACTIVE certificate attached to it, its serial item RESERVED with that certificate); each of the 50
    clones is rejected by the hook and keeps nothing (its certificate stays PENDING_ACTIVATION with no
    thing and no policy); no device fails except one whose connection its twin took over (same client id,
    DUPLICATE_CLIENTID), and even then its serial has exactly one thing; the IoT registry and the serial
    registry say the same."""
    raw = emulator.raw
    tag = uuid.uuid4().hex[:6].upper()
    originals = [f"LD{tag}{i:04d}" for i in range(DEVICES - CLONES)]
    rng = random.Random(6)
    fleet = originals + rng.sample(originals, CLONES)
    rng.shuffle(fleet)  # a clone may boot before, during or after its original
    import_serials(raw, originals)

    endpoint_file = emulator.state_dir / "endpoint.json"
    transport = Transport(load_endpoint_file(endpoint_file), timeout_s=30)
    stats = FleetStats()
    started = time.monotonic()
    asyncio.run(
        run_fleet(transport, FleetPlan(serials=fleet, concurrency=CONCURRENCY), DeviceOptions(), stats)
    )
    print(f"{DEVICES} devices at concurrency {CONCURRENCY}: {time.monotonic() - started:.1f} s")

    report = stats.to_json()
    # A clone uses its twin's client id (prov-<serial>): if both are connected at once, the broker drops the
    # older connection (DUPLICATE_CLIENTID, as AWS IoT does). The dropped device fails instead of being
    # rejected, or, if its RegisterThing had already been accepted, fails without learning it was
    # provisioned. Only such devices may fail: never more failures than such disconnects.
    kicked = emulator.log().count("reason=DUPLICATE_CLIENTID")
    assert stats.provisioned + stats.rejected + stats.failed == DEVICES, report
    assert DEVICES - CLONES - kicked <= stats.provisioned <= DEVICES - CLONES, (report, kicked)
    # A dropped device retries (the simulator treats a lost connection as retryable). If its RegisterThing
    # had been accepted, the retry presents a spent ownership token and is refused with
    # InvalidCertificateOwnershipToken, as on AWS: that too can only happen to a dropped device.
    spent_tokens = stats.rejections.get("InvalidCertificateOwnershipToken", 0)
    assert stats.failed + spent_tokens <= kicked, (report["failures"], report["rejections"], kicked)
    assert set(stats.rejections) <= {"AccessDenied", "InvalidCertificateOwnershipToken"}, report

    state = snapshot(raw, policies=True)
    prefix = raw["thing_name_prefix"]
    # On a starved machine the hook may run out of its own time budget (it denies, REGISTRY_ERROR, before
    # reserving) or answer after AWS's 5 s (the device is refused though the hook had reserved the serial,
    # which goes stale and is taken over once its certificate is gone, docs/registry.md). The device does
    # not retry a refusal: only such serials may lack a thing.
    log = emulator.log()
    late_hooks = log.count("hook did not answer within") + log.count('"reason":"REGISTRY_ERROR"')
    unprovisioned = {prefix + s for s in originals} - set(state.things)
    assert set(state.things) <= {prefix + s for s in originals}
    assert len(unprovisioned) <= late_hooks, (sorted(unprovisioned)[:5], late_hooks)
    # A device dropped after its RegisterThing was applied recovers with a new certificate for its key (the
    # hook's ALLOWED_SAME_KEY): its thing then also holds the superseded certificate, deactivated.
    superseded = {c for c, status in state.certificates.items() if status == "INACTIVE"}
    assert len(superseded) <= stats.retries_by_reason.get("lost_reply", 0), (superseded, report["retries"])
    thing_certificates: dict[str, str] = {}
    for thing, principals in state.things.items():
        ids = [certificate_id_of(p) for p in principals]
        active = [c for c in ids if state.certificates[c] == "ACTIVE"]
        assert len(active) == 1 and set(ids) - set(active) <= superseded, (thing, principals)
        thing_certificates[thing] = active[0]
    # Exactly one ACTIVE certificate per thing and no ACTIVE certificate without a thing.
    assert state.active() == set(thing_certificates.values())
    assert len(state.active()) == DEVICES - CLONES - len(unprovisioned)
    # The clones' certificates were issued but never activated, attached or given a policy.
    pending = {c for c, status in state.certificates.items() if status == "PENDING_ACTIVATION"}
    retries = sum(stats.retries_by_step.values())  # a retried CreateCertificateFromCsr leaves one more
    assert len(pending) <= CLONES + retries + late_hooks
    assert set(state.certificates) == state.active() | superseded | pending
    assert set(state.certificate_policies) == state.active() | superseded
    assert set(state.serials) == set(originals)
    for serial, item in state.serials.items():
        if prefix + serial in unprovisioned:
            assert item["status"] == "AVAILABLE" or state.certificates.get(item["certificate_id"]) in (
                None,
                "PENDING_ACTIVATION",
            ), item
            continue
        assert item["status"] == "RESERVED", item
        assert item["thing_name"] == prefix + serial
        assert item["certificate_id"] == thing_certificates[prefix + serial], item
