"""`emulator.process`: the emulator as a child process, as the demo, the benchmarks and the tests start it."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import process


def test_a_child_that_cannot_start_is_one_error_with_its_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cdk.out"
    with pytest.raises(process.EmulatorStartError) as failure:
        process.start(missing, tmp_path / "state", timeout_s=60)
    message = str(failure.value)
    assert message.startswith("the emulator exited 2: iot-emulator: ")  # the CLI's one-line error
    assert str(missing) in message
    assert not (tmp_path / "state" / "endpoint.json").exists()
    assert (tmp_path / "state" / "emulator.log").read_text().strip()


def test_the_child_environment_and_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://example.invalid")
    monkeypatch.setenv("AWS_PROFILE", "someone")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = process.child_environment()
    assert "AWS_ENDPOINT_URL" not in env and "AWS_PROFILE" not in env
    assert env["PYTHONPATH"].split(":") == [str(process.REPO_ROOT), "/elsewhere"]
    argv = process.command("cdk.out", "state", "--hook-isolation", "thread")
    assert argv[1:] == [
        "-m",
        "emulator",
        "up",
        "--state-dir",
        "state",
        "--cloud-assembly",
        "cdk.out",
        "--hook-isolation",
        "thread",
    ]
