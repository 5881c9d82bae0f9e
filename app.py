#!/usr/bin/env python3
"""The CDK app: reads `cdk.json` context once into `FleetConfig`, composes the stack, synthesizes.

`python3 app.py [--synth DIR]` is what `cdk synth` and `make synth` run; other parts of the project call
`synthesize()` to get a cloud assembly. A bad configuration value is one line on stderr and exit code 1.
Run by a `python3` without aws_cdk (no activated environment), it runs itself again under `.venv`'s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent
VENV = REPO_ROOT / ".venv"  # what `make setup` makes
REEXEC_MARK = "FLEET_APP_REEXEC"  # set in the environment of the re-executed app: never loop


def run_under_the_projects_python(argv: list[str], venv: Path = VENV) -> None:
    """Return when this interpreter has aws_cdk; else run this file again under VENV's, or exit 1.

    cdk.json's "app" is `python3 app.py`, and `python3` is whatever comes first on PATH: without an
    activated environment that is the system's, which has no aws_cdk. `npx cdk synth|ls|diff` from a
    fresh clone after `make setup` should just work, so the app finds the repository's .venv itself.
    """
    if importlib.util.find_spec("aws_cdk") is not None:
        return
    candidates = (venv / "bin" / "python", venv / "Scripts" / "python.exe")
    python = next((p for p in candidates if p.exists()), None)
    in_venv = Path(sys.prefix).resolve() == venv.resolve()
    if python is not None and not in_venv and not os.environ.get(REEXEC_MARK):
        os.environ[REEXEC_MARK] = "1"
        os.execv(python, [str(python), str(Path(__file__).resolve()), *argv])
    where = "" if python is not None else f" and there is no {venv}"
    print(f"app.py: {sys.executable} has no aws_cdk{where}: run `make setup` in {REPO_ROOT}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    run_under_the_projects_python(sys.argv[1:])
if str(REPO_ROOT) not in sys.path:  # `cdk synth` runs this file from anywhere
    sys.path.insert(0, str(REPO_ROOT))

# jsii's banner about an old Node.js (the machine's, not ours to pick) would bury the one line a config
# error prints; `node --version` still tells the user.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "14,16,18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "14,16,18,20")

from infra.config import CONTEXT_KEY, ConfigError, FleetConfig, load_config  # noqa: E402

CDK_JSON = REPO_ROOT / "cdk.json"


def feature_flags() -> dict[str, Any]:
    """cdk.json's feature flags (its `@aws-cdk...` context keys): the CDK CLI hands them to the app, and
    APP_CONTEXT holds them for every other way in (`python3 app.py`, synthesize(), the tests' bare stacks),
    so each builds the template `cdk deploy` deploys. Context from the CLI still wins over APP_CONTEXT."""
    context = json.loads(CDK_JSON.read_text()).get("context", {})
    return {key: value for key, value in context.items() if key.startswith("@aws-cdk")}


# What `cdk synth` sets by default, so `python3 app.py` and synthesize() give the same assembly: the
# emulator finds the Lambda code through each function's `aws:asset:path` metadata.
APP_CONTEXT = {**feature_flags(), "aws:cdk:enable-asset-metadata": True}


def fleet_context(app_context: Any = None, fleet_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """cdk.json's `context.fleet`, replaced by the CLI's when it passes one, then overridden key by key."""
    fleet = json.loads(CDK_JSON.read_text()).get("context", {}).get(CONTEXT_KEY, {})
    if isinstance(app_context, str):
        # `cdk synth -c fleet='{"template_name": "X"}'`: the CLI passes -c values as strings; such a
        # string overrides cdk.json's keys one by one rather than replacing the whole object.
        try:
            cli_fleet = json.loads(app_context)
        except json.JSONDecodeError as exc:
            raise ConfigError("", f"-c fleet=... must be a JSON object ({exc.msg})") from None
        if not isinstance(cli_fleet, dict):
            raise ConfigError("", "-c fleet=... must be a JSON object")
        app_context = {**fleet, **cli_fleet}
    if app_context is not None:
        fleet = app_context
    if not isinstance(fleet, dict):
        raise ConfigError("", "must be an object")
    return {**fleet, **(fleet_overrides or {})}


def build_app(
    fleet_overrides: dict[str, Any] | None = None,
    outdir: Path | str | None = None,
    loadtest: Any = None,
) -> Any:
    """The App with its stacks and policy checks, not yet synthesized; raises ConfigError.

    The load-test stack (infra/loadtest) is added only when `loadtest` (or `-c loadtest=...`, or cdk.json's
    `context.loadtest.enabled`) turns it on; the backend's stack never depends on it.
    """
    # Imported here so `--help` and config errors do not wait for the jsii runtime to start.
    from aws_cdk import App

    from infra.loadtest.config import CONTEXT_KEY as LOADTEST_KEY
    from infra.nag import add_nag_checks
    from infra.stack import FleetProvisioningStack

    app = App(
        outdir=str(outdir) if outdir is not None else None,
        analytics_reporting=False,
        context=APP_CONTEXT,
    )
    config = load_fleet_config(app.node.try_get_context(CONTEXT_KEY), fleet_overrides)
    FleetProvisioningStack(app, config=config)
    context = app.node.try_get_context(LOADTEST_KEY) if loadtest is None else loadtest
    loadtest_config = load_loadtest(context, config)
    if loadtest_config.enabled:
        from infra.loadtest.stack import LoadTestStack

        LoadTestStack(app, config=loadtest_config)
    add_nag_checks(app)
    return app


def load_loadtest(app_context: Any, fleet: FleetConfig) -> Any:
    """cdk.json's `context.loadtest`, switched on or overridden key by key by `-c loadtest=...`."""
    from infra.loadtest.config import CONTEXT_KEY as LOADTEST_KEY
    from infra.loadtest.config import as_object, load_loadtest_config

    section = json.loads(CDK_JSON.read_text()).get("context", {}).get(LOADTEST_KEY, {})
    return load_loadtest_config({**as_object(section), **as_object(app_context)}, fleet)


def load_fleet_config(app_context: Any = None, fleet_overrides: dict[str, Any] | None = None) -> FleetConfig:
    return load_config(fleet_context(app_context, fleet_overrides), base_dir=REPO_ROOT)


def synthesize(
    fleet_overrides: dict[str, Any] | None = None, outdir: Path | str = "cdk.out", loadtest: Any = None
) -> Path:
    """Synthesize with `fleet_overrides` merged over cdk.json's `context.fleet`; the cloud-assembly dir."""
    assembly = build_app(fleet_overrides, outdir, loadtest).synth()
    return Path(assembly.directory)


def main(argv: list[str]) -> int:
    outdir: str | None = os.environ.get("CDK_OUTDIR")
    if argv[:1] == ["--synth"] and len(argv) == 2:
        outdir = argv[1]
    elif argv:
        print("usage: app.py [--synth OUTDIR]", file=sys.stderr)
        return 2
    try:
        synthesize(outdir=outdir or REPO_ROOT / "cdk.out")
    except ConfigError as exc:
        print(f"synth: {exc}" if exc.key else f"synth: {CONTEXT_KEY}: {exc.rule}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        # cdk-nag findings through CDK's policy validation: the report is the message, not a traceback.
        if not str(exc).startswith("ValidationFailed"):
            raise
        print(f"synth: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
