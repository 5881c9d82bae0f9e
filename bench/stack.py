"""What the flow and memory benchmarks share: a synthesized stack, `python -m emulator up` in its own
process, seeded serials, and the simulator's fleet run as a child process measured with wait4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import process as emulator_process
from fleetctl.registry_store import RegistryStore
from fleetctl.serial_csv import SerialRow

REPO_ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def synthesize(workdir: Path) -> Path:
    """The project's default stack (cdk.json), synthesized once per benchmark run."""
    sys.path.insert(0, str(REPO_ROOT))
    import app

    return Path(app.synthesize(None, workdir / "cdk.out"))


@dataclass
class Emulator:
    child: emulator_process.EmulatorSubprocess
    endpoint: dict[str, Any]

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.child.process

    @property
    def state_dir(self) -> Path:
        return self.child.state_dir

    @property
    def endpoint_file(self) -> Path:
        return self.child.endpoint_file

    def cpu_by_process_s(self) -> dict[str, float]:
        """User + system CPU so far, per process: "emulator" (MQTT, IoT registry, template) and "hook"
        (its children: the hook process)."""
        main = _process_cpu_s(self.process.pid)
        return {"emulator": main, "hook": sum(_process_cpu_s(p) for p in _descendants(self.process.pid))}

    def max_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.child.stop(timeout_s=30)


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # it has exited
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def start_emulator(assembly: Path, state_dir: Path, *extra: str, checkout: Path | None = None) -> Emulator:
    """`python -m emulator up` (the hook process by default; EXTRA adds options), of this repository or of
    `checkout` (another copy of it, e.g. `git archive` of an older commit).

    Its stderr goes to STATE_DIR/emulator.log; its stdout (the hook's EMF metric lines: CloudWatch's,
    not the benchmark's) is dropped."""
    try:
        child = emulator_process.start(assembly, state_dir, *extra, stdout_to_log=False, checkout=checkout)
    except emulator_process.EmulatorStartError as exc:
        raise RuntimeError(f"{exc}; see {Path(state_dir) / 'emulator.log'}") from None
    return Emulator(child, child.endpoint())


def import_serials(endpoint: dict[str, Any], serials: list[str], keys: dict[str, str] | None = None) -> None:
    """AVAILABLE serial items, written by fleetctl's registry store (what `registry import` does); `keys`
    gives serials their device-key fingerprints (attestation)."""
    import boto3

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint["aws_endpoint_url"],
        region_name=endpoint["region"],
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    store = RegistryStore(dynamodb, endpoint["serial_table"])
    fingerprints = keys or {}
    store.put_new(
        SerialRow(line, serial, None, public_key_sha256=fingerprints.get(serial))
        for line, serial in enumerate(serials, 1)
    )


@dataclass
class FleetRun:
    report: dict[str, Any]
    wall_s: float
    max_rss_mb: float
    cpu_s: float
    command: list[str]


def run_fleet(
    endpoint_file: Path, serials: list[str], concurrency: int, workdir: Path, *extra: str
) -> FleetRun:
    """`python -m device_sim fleet` as a child process; its peak RSS and CPU from wait4's rusage."""
    name = f"{concurrency}-{len(serials)}-{serials[0]}"
    serials_file = workdir / f"serials-{name}.txt"
    serials_file.write_text("\n".join(serials) + "\n")
    report_file = workdir / f"fleet-{name}.json"
    command = [
        sys.executable,
        "-m",
        "device_sim",
        "fleet",
        "--endpoint-file",
        str(endpoint_file),
        "--serials",
        str(serials_file),
        "--concurrency",
        str(concurrency),
        "--report",
        str(report_file),
        "--no-progress",
        *extra,
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=emulator_process.child_environment(), stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if not report_file.exists():
        raise RuntimeError(f"the fleet run wrote no report (exit {process.returncode})")
    return FleetRun(
        report=json.loads(report_file.read_text()),
        wall_s=wall,
        max_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        cpu_s=usage.ru_utime + usage.ru_stime,
        command=["python", *command[1:]],
    )


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-")
