"""One error style and one exit-code scheme for fleetctl, device-sim and iot-emulator (cli_conventions):
usage 2, refused or rejected 1, interrupted 130, each as one `<tool>: <message>` line and no traceback; and
the console scripts a fresh clone's `make setup` installs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli_conventions import EXIT_CODES_HELP, CommandError, UsageError, one_line_errors
from tests.device_sim.pki import Authority, write_pki

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"fleetctl": "fleetctl", "device-sim": "device_sim", "iot-emulator": "emulator"}
STARTED_WITHIN_S = 60.0  # a cold interpreter importing boto3, awscrt, moto on a busy 2-core machine


def installed_from_this_checkout() -> bool:
    """Whether the installed project is this checkout (a fresh clone's `make setup`), so its console scripts
    are this checkout's. A worktree that shares another checkout's .venv has that checkout's scripts. The
    checkout's own `*.egg-info` (setuptools leaves it at the root, which is on sys.path) carries no
    direct_url.json: the installed distribution is the one that does."""
    for dist in metadata.distributions(name="fleet-provisioning-by-claim"):
        direct_url = dist.read_text("direct_url.json")
        if direct_url and json.loads(direct_url).get("url", "").removeprefix("file://") == str(REPO_ROOT):
            return True
    return False


def command(tool: str) -> list[str]:
    """TOOL as a user types it where it is installed from here, else as `python -m` (the same main)."""
    script = Path(sys.executable).parent / tool
    if installed_from_this_checkout() and script.exists():
        return [str(script)]
    return [sys.executable, "-m", SCRIPTS[tool]]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "COLUMNS": "200"}


def run(tool: str, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(tool), *args],
        cwd=REPO_ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], tool: str, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith(f"{tool}: "), lines[0]
    return lines[0]


# -- the scheme itself, on a tool made for the test ----------------------------------------------------------

demo = typer.Typer(cls=one_line_errors("demo-tool"), add_completion=False, epilog=EXIT_CODES_HELP)


@demo.command()
def act(what: str) -> None:
    """Fail as WHAT says."""
    if what == "usage":
        raise UsageError("--flag and --other exclude each other")
    if what == "refused":
        raise CommandError("the registry has no serial 'SN-1'\n(second line)")
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "bug":
        {}["missing"]  # noqa: B018 - a bug on purpose


@demo.command()
def other() -> None:
    """A second command, so that `act` is a subcommand as in the real tools."""


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["act", "ok"], 0, None),
        (["act", "usage"], 2, "demo-tool: --flag and --other exclude each other"),
        (["act", "refused"], 1, "demo-tool: the registry has no serial 'SN-1' (second line)"),
        (["act", "interrupt"], 130, "demo-tool: interrupted"),
        (["act"], 2, "demo-tool: Missing argument 'what'."),
        (["act", "ok", "--nope"], 2, "demo-tool: No such option: --nope"),
        (["nope"], 2, "demo-tool: No such command 'nope'."),
    ],
)
def test_each_ending_is_its_code_and_one_line(args: list[str], code: int, line: str | None) -> None:
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == code, result.output
    assert result.stderr.strip() == (line or "")


def test_a_bug_is_one_line_that_says_where() -> None:
    result = CliRunner().invoke(demo, ["act", "bug"])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("demo-tool: internal error: KeyError: 'missing' at tests/test_cli_conventions.py:")
    assert "Traceback" not in result.output


# -- the three tools: usage, refusal, interruption -----------------------------------------------------------


@pytest.mark.parametrize("tool", list(SCRIPTS))
def test_help_names_the_exit_codes(tool: str) -> None:
    result = run(tool, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.replace("│", " ").split())
    assert (
        "Exit codes: 0 done; 1 refused, rejected or failed; 2 usage error" in text
        and "130 interrupted" in text
    )


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("fleetctl", ["registry", "show"], "Missing argument 'serial'"),
        ("fleetctl", ["registry", "stats"], "say which registry: --table NAME"),
        ("device-sim", ["provision"], "Missing option '--serial'"),
        ("device-sim", ["fleet", "--devices", "0"], "Invalid value for '--devices'"),
        ("iot-emulator", ["up", "--state-dir", "s", "--hook-isolation", "x"], "--hook-isolation must be"),
        (
            "iot-emulator",
            ["up", "--state-dir", "s", "--cloud-assembly", "/no/such"],
            "/no/such does not exist",
        ),
    ],
)
def test_usage_error_is_2(tool: str, args: list[str], message: str) -> None:
    assert message in one_line(run(tool, *args), tool, 2)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def device_target(tmp_path: Path) -> Path:
    """An endpoint file with a real CA and claim credential, naming a port nothing listens on."""
    files = write_pki(tmp_path / "pki", Authority.create())
    endpoint = {
        "host": "127.0.0.1",
        "port": closed_port(),
        "ca_file": str(files.ca_file),
        "claim_cert_file": str(files.claim_cert_file),
        "claim_key_file": str(files.claim_key_file),
        "template_name": "FleetProvisioningTemplate",
        "region": "us-east-1",
        "aws_endpoint_url": f"http://127.0.0.1:{closed_port()}",
        "serial_table": "serials",
    }
    path = tmp_path / "endpoint.json"
    path.write_text(json.dumps(endpoint))
    return path


def test_refusals_are_1(device_target: Path) -> None:
    line = one_line(
        run("device-sim", "provision", "--serial", "SN-1", "--endpoint-file", str(device_target)),
        "device-sim",
        1,
    )
    assert "cannot reach 127.0.0.1:" in line
    line = one_line(
        run("fleetctl", "registry", "show", "SN-1", "--endpoint-file", str(device_target)), "fleetctl", 1
    )
    assert "AWS call failed: Could not connect" in line
    # iot-emulator's refusal (its port taken: exit 1) is tests/emulator/test_persist.py's
    # test_an_aws_port_in_use_is_one_line_and_exit_1 (it needs a synthesized stack).


class SilentServer:
    """Accepts TCP connections and never answers: whatever connects to it waits until interrupted."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)
            self.accepted.set()

    def close(self) -> None:
        for connection in self.held:
            connection.close()
        self.socket.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def interrupted(tool: str, args: list[str], started: threading.Event) -> str:
    """Run TOOL until STARTED is set (it is waiting on the network), then Ctrl-C it: its one line."""
    process = subprocess.Popen(
        [*command(tool), *args], cwd=REPO_ROOT, env=environment(), stderr=subprocess.PIPE, text=True
    )
    try:
        assert started.wait(STARTED_WITHIN_S), f"{tool} never connected"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def test_fleetctl_interrupted_is_130(tmp_path: Path, silent: SilentServer) -> None:
    path = tmp_path / "endpoint.json"
    path.write_text(
        json.dumps(
            {
                "region": "us-east-1",
                "aws_endpoint_url": f"http://127.0.0.1:{silent.port}",
                "serial_table": "t",
            }
        )
    )
    line = interrupted("fleetctl", ["registry", "stats", "--endpoint-file", str(path)], silent.accepted)
    assert line == "fleetctl: interrupted"


def test_device_sim_interrupted_is_130(device_target: Path, silent: SilentServer) -> None:
    endpoint = json.loads(device_target.read_text()) | {"port": silent.port}
    device_target.write_text(json.dumps(endpoint))
    args = ["provision", "--serial", "SN-1", "--endpoint-file", str(device_target)]
    assert interrupted("device-sim", args, silent.accepted) == "device-sim: interrupted"


def test_iot_emulator_interrupted_while_starting_is_130(tmp_path: Path) -> None:
    """Ctrl-C before it serves (here: while its --hook module loads) is 130; once it serves, a signal is
    how it stops, with 0 (tests/emulator/test_shutdown.py)."""
    marker = tmp_path / "loading"
    hook_dir = tmp_path / "hooks"
    hook_dir.mkdir()
    (hook_dir / "slow_hook.py").write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "time.sleep(60)\n"
        "def hook(event):\n    return {'allowProvisioning': False}\n"
    )
    env = environment()
    env["PYTHONPATH"] = os.pathsep.join((str(hook_dir), env["PYTHONPATH"]))
    process = subprocess.Popen(
        [*command("iot-emulator"), "up", "--state-dir", str(tmp_path / "s"), "--hook", "slow_hook:hook"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + STARTED_WITHIN_S
        while not marker.exists():
            assert time.monotonic() < deadline and process.poll() is None, (
                "the emulator never loaded its hook"
            )
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "iot-emulator: interrupted" and "Traceback" not in stderr


# -- console scripts --------------------------------------------------------------------------------------


def test_console_scripts_are_declared_for_each_tool() -> None:
    import tomllib

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {
        "fleetctl": "fleetctl.cli:main",
        "device-sim": "device_sim.cli:main",
        "iot-emulator": "emulator.cli:main",
    }


def test_console_scripts_are_installed_and_run() -> None:
    """`make setup` in a fresh clone puts the three commands beside its interpreter (.venv/bin)."""
    if not installed_from_this_checkout():
        pytest.skip(f"the installed project is not {REPO_ROOT} (a fresh clone's `make test` checks this)")
    for tool in SCRIPTS:
        script = Path(sys.executable).parent / tool
        assert script.exists(), f"{script} is missing: `make setup` installs it"
        result = subprocess.run(
            [str(script), "--help"], env=environment(), capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and f"Usage: {tool} " in result.stdout, result.stderr


@pytest.mark.parametrize("module", list(SCRIPTS.values()))
def test_python_dash_m_forms_keep_working(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "Usage: " in result.stdout, result.stderr
