"""The demo's attestation chapter: line B's test station publishes its devices' public keys, and a copy of the
claim credential (with the serial list) then provisions none of line B's serials; the genuine devices do.

Its steps are real commands: `device-sim factory`, `fleetctl registry import`, `fleetctl batch require-key`,
and two `device-sim fleet` runs (the attacker's own keys, then the station's keys).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device_sim.demo import Demo

ATTESTED_DEVICES = 5
ATTESTED_BATCH = "FAB-B"


def attestation(demo: Demo, endpoint: Path) -> None:
    """Line B's test station makes each device's key and publishes only the public keys' fingerprints;
    with them in the registry, a copy of the claim credential (and of the serial list) is worthless."""
    serials = [f"{ATTESTED_BATCH}-{i:06d}" for i in range(1, ATTESTED_DEVICES + 1)]
    files = demo.workdir / "serials"
    serials_file, manifest = files / "line-b.txt", files / "line-b-keys.csv"
    serials_file.write_text("\n".join(serials) + "\n")
    station = demo.workdir / "station"
    shutil.rmtree(station, ignore_errors=True)
    demo.step("Line B's test station makes each device's key; only their fingerprints leave it")
    demo.run(
        demo.sim(
            "factory", "--serials", str(serials_file), "--keys-dir", str(station), "--manifest",
            str(manifest), "--batch", ATTESTED_BATCH, "--no-progress",
        )
    )  # fmt: skip
    fleetctl = [sys.executable, "-m", "fleetctl"]
    demo.run([*fleetctl, "registry", "import", str(manifest), "--endpoint-file", str(endpoint)])
    demo.run([*fleetctl, "batch", "require-key", ATTESTED_BATCH, "--endpoint-file", str(endpoint)])
    attacker = demo.fleet(
        endpoint,
        "attacker",
        serials_file,
        "json",
        f"Someone with the leaked claim credential and line B's serial list tries all {ATTESTED_DEVICES}",
    )
    demo.checks.expect(
        f"the leaked claim provisions none of line B's {ATTESTED_DEVICES} serials",
        attacker["rejected"] == ATTESTED_DEVICES and attacker["provisioned"] == 0,
        f"{attacker['provisioned']} provisioned, {attacker['rejected']} rejected",
    )
    demo.hook_decisions(serials)
    genuine = demo.fleet(
        endpoint,
        "attested",
        serials_file,
        "json",
        f"Line B's {ATTESTED_DEVICES} genuine devices boot with the keys their station made",
        "--keys-dir",
        str(station),
    )
    demo.checks.expect(
        f"line B's {ATTESTED_DEVICES} genuine devices provisioned",
        genuine["provisioned"] == ATTESTED_DEVICES,
        f"{genuine['provisioned']} provisioned, {genuine['rejected']} rejected, {genuine['failed']} failed",
    )
