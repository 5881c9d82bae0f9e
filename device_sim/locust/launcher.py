"""Starts Locust for `python -m device_sim locust`, and makes sure that nothing it started outlives it.

Locust runs as a child (`python -m locust -f device_sim/locust/locustfile.py ...`) in a session of its own,
so this process never imports Locust and a terminal's Ctrl-C reaches Locust's master only through here:
SIGINT and SIGTERM are forwarded to the master, which stops its workers, writes the partial report and exits.
This process is the child subreaper of everything below it (Linux), so a worker that `--processes` forked
and its master did not wait for is reaped here; once the master has exited, whatever of its session is
still running after a grace period is terminated, then killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from device_sim.locust import options

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
GRACE_S = 3.0
PR_SET_CHILD_SUBREAPER = 36


def locust_argv(
    values: dict[str, Any],
    *,
    headless: bool,
    concurrency: int,
    spawn_rate: float,
    processes: int | None,
    master: bool,
    worker: bool,
    master_host: str | None,
    master_port: int | None,
    master_bind_host: str | None,
    master_bind_port: int | None,
    expect_workers: int | None,
    web_host: str | None,
    web_port: int | None,
    run_time: str | None,
    csv: Path | None,
    extra: list[str],
) -> list[str]:
    """The Locust command line: Locust's own options, then ours as `--device-sim-*` custom arguments."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--stop-timeout", "0"]
    if worker:
        argv.append("--worker")
        argv += ["--master-host", master_host or "127.0.0.1"]
        if master_port:
            argv += ["--master-port", str(master_port)]
        if processes:  # one machine's several worker processes for a remote master
            argv += ["--processes", str(processes)]
    else:
        argv += ["-u", str(concurrency), "-r", f"{spawn_rate:g}"]
        if headless:
            argv.append("--headless")
        if processes:
            argv += ["--processes", str(processes)]
        if master:
            argv += ["--master", "--expect-workers", str(expect_workers or 1)]
            if master_bind_host:
                argv += ["--master-bind-host", master_bind_host]
            if master_bind_port:
                argv += ["--master-bind-port", str(master_bind_port)]
        if web_host:
            argv += ["--web-host", web_host]
        if web_port:
            argv += ["--web-port", str(web_port)]
        if run_time:
            argv += ["--run-time", run_time]
        if csv:
            argv += ["--csv", str(csv)]
    return argv + options.to_argv(values) + extra


def run(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run Locust, forward SIGINT/SIGTERM to it, reap and clean up its session; Locust's exit code."""
    _become_subreaper()
    child = subprocess.Popen(argv, env=env, start_new_session=True)
    signals = {signal.SIGINT: 0, signal.SIGTERM: 0}

    def forward(signum: int, _frame: Any) -> None:
        signals[signal.Signals(signum)] += 1
        if sum(signals.values()) > 2:  # a third time: the user means it
            _kill_session(child.pid, signal.SIGKILL)
        else:
            _signal(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        code = _wait_for(child)
        _clean_up_session(child.pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _wait_for(child: subprocess.Popen[bytes]) -> int:
    """Reap children (Locust's master, and orphans re-parented here) until the master has exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return child.returncode if child.returncode is not None else 1
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            code = child.returncode
            return code if code >= 0 else 128 - code


def _clean_up_session(session: int) -> None:
    """Give what is left of Locust's session GRACE_S to exit, then SIGTERM, then SIGKILL; reap all of it."""
    deadline = time.monotonic() + GRACE_S
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            _kill_session(session, sig)
            deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if not _reap_any() and not _session_alive(session):
                return
            time.sleep(0.05)


def _reap_any() -> bool:
    """Reap exited children; whether any child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _session_alive(session: int) -> bool:
    try:
        os.killpg(session, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_session(session: int, sig: int) -> None:
    try:
        os.killpg(session, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _become_subreaper() -> None:
    """Orphans of Locust's session are re-parented to this process, which reaps them (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
