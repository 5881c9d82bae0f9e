"""`python -m device_sim locust` against the emulator, Locust always in subprocesses (importing it would
monkey-patch this test process): `--processes 2`, a master with two `--worker`s on 127.0.0.1, unknown
serials, SIGTERM in the middle of a run, a worker without the files, and the command line's own checks."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from tests.device_sim.conftest import REPO_ROOT, Emulator

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("device-sim-e2e"),
    # find_spec only: importing Locust here would monkey-patch this test process.
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="no locust extra installed"),
]
RUN_TIMEOUT_S = 120


def serials(emulator: Emulator, n: int, *, imported: bool = True) -> list[str]:
    tag = uuid.uuid4().hex[:8].upper()
    made = [f"L{tag}{i:03d}" for i in range(n)]
    if imported:
        emulator.import_serials(made)
    return made


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "device_sim", "locust", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def start(argv: list[str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env(), stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def csv_rows(prefix: Path) -> dict[str, dict[str, str]]:
    with Path(f"{prefix}_stats.csv").open() as handle:
        return {row["Type"]: row for row in csv.DictReader(handle)}


def csv_failures(prefix: Path) -> dict[tuple[str, str], int]:
    with Path(f"{prefix}_failures.csv").open() as handle:
        return {(row["Method"], row["Error"]): int(row["Occurrences"]) for row in csv.DictReader(handle)}


def provisioned_in_registry(emulator: Emulator, serials: list[str]) -> list[str]:
    """Serials that hold a reservation whose certificate is ACTIVE and whose thing exists."""
    iot = emulator.client("iot")
    prefix = emulator.data["thing_name_prefix"]
    found, certificates = [], set()
    for serial in serials:
        item = emulator.serial_item(serial)
        if item is None or item["status"] != "RESERVED":
            continue
        description = iot.describe_certificate(certificateId=item["certificate_id"])["certificateDescription"]
        assert description["status"] == "ACTIVE"
        principals = iot.list_thing_principals(thingName=prefix + serial)["principals"]
        assert description["certificateArn"] in principals
        certificates.add(item["certificate_id"])
        found.append(serial)
    assert len(certificates) == len(found)  # one certificate per serial: nothing provisioned twice
    return found


def check_run(
    emulator: Emulator, report_path: Path, csv_prefix: Path, known: list[str], unknown: list[str]
) -> dict[str, Any]:
    report = json.loads(report_path.read_text())
    assert provisioned_in_registry(emulator, known + unknown) == known
    assert report["devices"] == len(known) + len(unknown)
    assert report["provisioned"] == len(known) and report["histograms"]["total"]["count"] == len(known)
    assert report["rejected"] == len(unknown)
    assert report["rejections"] == ({"AccessDenied": len(unknown)} if unknown else {})
    assert report["failed"] == 0 and report["interrupted"] == 0 and not report["run"].get("interrupted")
    assert report["histograms"]["register_thing"]["count"] == len(known)
    assert sum(report["timeline"]["started"]) == len(known) + len(unknown)
    rows = csv_rows(csv_prefix)
    assert int(rows["total"]["Request Count"]) == len(known) + len(unknown)
    assert int(rows["total"]["Failure Count"]) == len(unknown)
    for step in ("claim_connect", "create_certificate", "reconnect", "first_publish"):
        assert int(rows[step]["Request Count"]) == report["histograms"][step]["count"], step
    assert int(rows["register_thing"]["Request Count"]) == len(known) + len(unknown)
    failures = csv_failures(csv_prefix)
    expected = {("total", "rejected: AccessDenied"): len(unknown)} if unknown else {}
    if unknown:
        expected[("register_thing", "rejected: AccessDenied")] = len(unknown)
    assert failures == expected
    return report


def test_processes_provision_each_serial_exactly_once(emulator: Emulator, tmp_path: Path) -> None:
    known = serials(emulator, 40)
    serial_file = tmp_path / "serials.txt"
    serial_file.write_text("\n".join(known) + "\n")
    report, prefix = tmp_path / "report.json", tmp_path / "locust"
    argv = command(
        "--headless",
        "--processes",
        "2",
        "--endpoint-file",
        str(emulator.endpoint_file),
        "--serials",
        str(serial_file),
        "--concurrency",
        "8",
        "--report",
        str(report),
        "--html",
        str(tmp_path / "report.html"),
        "--csv",
        str(prefix),
    )
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = check_run(emulator, report, prefix, known, [])
    assert data["run"]["driver"] == "locust" and data["run"]["workers"] == 2
    assert data["run"]["mqtt"] == "5"  # the default
    assert len(data["run"]["runs"]) == 2  # each worker's share, merged
    assert "<svg" in (tmp_path / "report.html").read_text()


def test_a_master_and_two_workers_with_unknown_serials(emulator: Emulator, tmp_path: Path) -> None:
    known = serials(emulator, 36)
    unknown = serials(emulator, 4, imported=False)
    serial_file = tmp_path / "serials.txt"
    serial_file.write_text("\n".join(known + unknown) + "\n")
    report, prefix, port = tmp_path / "report.json", tmp_path / "locust", free_port()
    master = start(
        command(
            "--master",
            "--headless",
            "--expect-workers",
            "2",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serials",
            str(serial_file),
            "--concurrency",
            "6",
            "--mqtt",  # the workers take it from the master
            "3.1.1",
            "--report",
            str(report),
            "--csv",
            str(prefix),
        ),
        tmp_path / "master.log",
    )
    workers = [
        start(
            command("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
            tmp_path / f"worker{n}.log",
        )
        for n in (1, 2)
    ]
    try:
        assert master.wait(RUN_TIMEOUT_S) == 0, (tmp_path / "master.log").read_text()[-3000:]
        assert [w.wait(30) for w in workers] == [0, 0]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
    data = check_run(emulator, report, prefix, known, unknown)
    assert data["run"]["workers"] == 2 and data["run"]["mqtt"] == "3.1.1"


def test_sigterm_mid_run_writes_a_partial_report_and_leaves_no_process(
    emulator: Emulator, tmp_path: Path
) -> None:
    known = serials(emulator, 300)
    serial_file = tmp_path / "serials.txt"
    serial_file.write_text("\n".join(known) + "\n")
    report = tmp_path / "report.json"
    process = subprocess.Popen(
        command(
            "--headless",
            "--processes",
            "2",
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serials",
            str(serial_file),
            "--concurrency",
            "6",
            "--rate",
            "15",
            "--report",
            str(report),
            "--html",
            str(tmp_path / "report.html"),
            "--progress-every-s",
            "0.5",
        ),
        cwd=REPO_ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # wait until devices are provisioning
            if line.startswith("progress:") and not line.startswith("progress: 0/"):
                break
        family = descendants(process.pid)
        assert len(family) >= 3  # Locust's master and its two worker processes
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 130
    assert took < 5.0, f"exited {took:.1f} s after SIGTERM"
    assert [pid for pid in family if running(pid)] == []
    data = json.loads(report.read_text())
    assert data["run"]["interrupted"] is True and data["run"]["ended_by"] == "signal"
    assert 0 < data["provisioned"] < len(known) and data["failed"] == 0
    assert data["devices"] == data["provisioned"] + data["rejected"] + data["interrupted"]
    assert (tmp_path / "report.html").exists()
    assert len(provisioned_in_registry(emulator, known)) >= data["provisioned"]


def test_a_worker_without_the_files_says_so_in_one_line(emulator: Emulator, tmp_path: Path) -> None:
    """The master forwards paths; this worker has no file at the endpoint file's path."""
    port = free_port()
    missing = tmp_path / "elsewhere" / "endpoint.json"
    master = start(
        command(
            "--master",
            "--headless",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--endpoint-file",
            str(missing),
            "--devices",
            "5",
        ),
        tmp_path / "master.log",
    )
    worker = start(
        command("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)), tmp_path / "worker.log"
    )
    try:
        assert master.wait(RUN_TIMEOUT_S) == 2
        worker.wait(30)
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
    worker_log = (tmp_path / "worker.log").read_text()
    errors = [line for line in worker_log.splitlines() if line.startswith("device-sim: ")]
    assert errors == [f"device-sim: cannot read the endpoint file {missing}: No such file or directory"]
    assert "Traceback" not in worker_log
    assert f"cannot read the endpoint file {missing}" in (tmp_path / "master.log").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--worker", "--endpoint-file", "x.json"], "--worker takes its options from the master"),
        (["--processes", "2", "--master"], "--master runs no devices"),
        (["--master", "--worker"], "--master runs no devices"),
        (["--master", "--endpoint-file", "x.json"], "give --devices N (generated serials) or --serials FILE"),
        (["--master", "--serials", "/nonexistent/serials.txt"], "cannot read the serials file"),
        (["--processes", "2", "--endpoint-file", "/nonexistent.json", "--devices", "3"], "endpoint file"),
    ],
)
def test_bad_options_are_one_line_before_anything_starts(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["locust", *args])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
