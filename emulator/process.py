"""`python -m emulator up` as a child process, for those who run it beside their own work: the demo, the
benchmarks and the end-to-end tests.

`start` returns once the emulator has written STATE_DIR/endpoint.json (atomically, so it is whole when
it exists), or raises EmulatorStartError with the reason: the child exited (its last log line) or wrote
nothing in time. `EmulatorSubprocess.stop` signals it and waits, then kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0  # synthesized stack to endpoint.json: 3-10 s here, much more on a loaded machine
STOP_TIMEOUT_S = 20.0


class EmulatorStartError(RuntimeError):
    pass


def command(assembly: Path | str, state_dir: Path | str, *extra: str) -> list[str]:
    """The command line, with this interpreter (the emulator picks a free port unless EXTRA names one)."""
    return [
        sys.executable,
        "-m",
        "emulator",
        "up",
        "--state-dir",
        str(state_dir),
        "--cloud-assembly",
        str(assembly),
        *extra,
    ]


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """BASE (default: this process's environment) with the repository on PYTHONPATH, and without the
    AWS_ENDPOINT_URL / AWS_PROFILE a developer's shell may hold: the emulator sets its own."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    return env


@dataclass
class EmulatorSubprocess:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path

    @property
    def endpoint_file(self) -> Path:
        return self.state_dir / "endpoint.json"

    def endpoint(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.endpoint_file.read_text())
        return data

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Signal the emulator (it finishes requests in flight, then exits), kill it if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start(
    assembly: Path | str,
    state_dir: Path | str,
    *extra: str,
    log_path: Path | None = None,
    stdout_to_log: bool = True,
    env: dict[str, str] | None = None,
    new_session: bool = False,
    timeout_s: float = START_TIMEOUT_S,
    checkout: Path | None = None,
) -> EmulatorSubprocess:
    """Start the emulator on ASSEMBLY with its state in STATE_DIR; EXTRA adds `emulator up` options.

    Its stderr (one line per connection and request) goes to LOG_PATH (default STATE_DIR/emulator.log),
    and its stdout too unless `stdout_to_log` is false (the hook's EMF metric lines, which a benchmark
    drops). `env` defaults to `child_environment()`; `new_session` keeps a terminal's Ctrl-C away from it.
    `checkout`: run the emulator of another copy of the repository (a benchmark against an older version).
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    # One left by an emulator that was killed would pass for this one's.
    (state / "endpoint.json").unlink(missing_ok=True)
    log_file = log_path or state / "emulator.log"
    with log_file.open("wb") as log:  # the child keeps its own descriptor
        environment = env if env is not None else child_environment()
        if checkout is not None:  # `-m` puts the working directory first on sys.path: both must point there
            environment["PYTHONPATH"] = str(checkout)
        process = subprocess.Popen(
            command(assembly, state, *extra),
            cwd=checkout or REPO_ROOT,
            env=environment,
            stdout=log if stdout_to_log else subprocess.DEVNULL,
            stderr=log,
            start_new_session=new_session,
        )
    emulator = EmulatorSubprocess(process, state, log_file)
    deadline = time.monotonic() + timeout_s
    while not emulator.endpoint_file.exists():
        if process.poll() is not None:
            lines = emulator.log().strip().splitlines()
            raise EmulatorStartError(
                f"the emulator exited {process.returncode}" + (f": {lines[-1]}" if lines else "")
            )
        if time.monotonic() > deadline:
            emulator.stop(signal.SIGKILL, 5)
            raise EmulatorStartError(f"the emulator wrote no {emulator.endpoint_file} within {timeout_s:g} s")
        time.sleep(0.1)
    return emulator
