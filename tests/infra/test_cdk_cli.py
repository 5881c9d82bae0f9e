"""The CDK CLI from the repository: `npx cdk synth` without an activated environment, cdk.json's feature flags
(the recommended ones of the pinned aws-cdk-lib), and the hint when no interpreter has aws_cdk."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import aws_cdk
import pytest

import app

REPO_ROOT = Path(app.__file__).resolve().parent
CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
# The CLI reaches for nothing but the app: no version check, notices or telemetry (the Makefile sets these).
OFFLINE = {"CDK_DISABLE_VERSION_CHECK": "1", "CDK_CLI_NOTICES": "0", "CDK_DISABLE_CLI_TELEMETRY": "true"}


def recommended_flags() -> dict[str, Any]:
    """What `cdk init` writes for the installed aws-cdk-lib: its package's recommended-feature-flags.json."""
    (bundle,) = glob.glob(str(Path(aws_cdk.__file__).parent / "_jsii" / "aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("package/recommended-feature-flags.json")
        assert member is not None
        flags: dict[str, Any] = json.load(member)
    return flags


def test_cdk_json_sets_every_recommended_flag_of_the_pinned_aws_cdk_lib() -> None:
    flags = recommended_flags()
    assert len(flags) > 80  # the file was found and read, not an empty stand-in
    assert app.feature_flags() == flags
    # Every way of synthesizing gets them: `python3 app.py`, synthesize(), the tests' bare stacks.
    assert {k: app.APP_CONTEXT[k] for k in flags} == flags


def test_load_test_vpc_default_security_group_is_restricted(tmp_path: Path) -> None:
    """@aws-cdk/aws-ec2:restrictDefaultSecurityGroup: nothing uses the default group; it allows nothing."""
    assembly = app.synthesize(outdir=tmp_path / "cdk.out", loadtest="true")
    template = json.loads((assembly / "FleetLoadTest.template.json").read_text())
    restricted = [r for r in template["Resources"].values() if r["Type"] == "Custom::VpcRestrictDefaultSG"]
    assert len(restricted) == 1
    assert restricted[0]["Properties"]["DefaultSecurityGroupId"] == {
        "Fn::GetAtt": ["NetworkVpc7FB7348F", "DefaultSecurityGroup"]
    }


def without_venv_on_path() -> dict[str, str]:
    """This environment as a shell without an activated virtualenv has it: python3 is the system's."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, **OFFLINE, "PATH": os.pathsep.join(path)}


@pytest.mark.synth
def test_npx_cdk_synth_works_without_activating_the_venv(tmp_path: Path) -> None:
    if not (REPO_ROOT / ".venv").is_dir():
        pytest.skip(f"no .venv in {REPO_ROOT}: `make setup` makes it (a fresh clone's `make test` does)")
    if not CDK.exists():
        pytest.skip(f"no {CDK}: `make setup` installs the CDK CLI")
    env = without_venv_on_path()
    system_python = subprocess.run(
        ["python3", "-c", "import aws_cdk"], env=env, capture_output=True, cwd=tmp_path, check=False
    )
    assert system_python.returncode != 0, "python3 on PATH has aws_cdk: this test would prove nothing"
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--output", str(tmp_path / "cdk.out")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    template = json.loads((tmp_path / "cdk.out" / "FleetProvisioning.template.json").read_text())
    assert any(r["Type"] == "AWS::IoT::ProvisioningTemplate" for r in template["Resources"].values())
    assert "feature flags are not configured" not in result.stderr + result.stdout


def test_without_aws_cdk_and_without_venv_the_app_says_make_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(app.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv(app.REEXEC_MARK, raising=False)
    with pytest.raises(SystemExit) as exited:
        app.run_under_the_projects_python([], venv=tmp_path / ".venv")
    assert exited.value.code == 1
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "has no aws_cdk" in line and "run `make setup`" in line


def test_without_aws_cdk_the_app_runs_again_under_the_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\n")
    calls: list[tuple[Any, list[str]]] = []
    monkeypatch.setattr(app.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(app.os, "execv", lambda path, args: calls.append((path, args)))
    monkeypatch.delenv(app.REEXEC_MARK, raising=False)
    with pytest.raises(SystemExit):  # the stubbed execv returns; the real one never does
        app.run_under_the_projects_python(["--synth", "out"], venv=tmp_path / ".venv")
    assert calls == [(venv_python, [str(venv_python), str(Path(app.__file__).resolve()), "--synth", "out"])]
    # Run again and still without aws_cdk (a broken .venv): no second re-run, the hint instead.
    assert os.environ[app.REEXEC_MARK] == "1"
    calls.clear()
    with pytest.raises(SystemExit):
        app.run_under_the_projects_python([], venv=tmp_path / ".venv")
    assert calls == []
