#!/usr/bin/env python3
"""The CDK app: reads `cdk.json` context once into `FleetConfig`, composes the stack, synthesizes.

`python3 app.py [--synth DIR]` is what `cdk synth` and `make synth` run; other parts of the project call
`synthesize()` to get a cloud assembly. A bad configuration value is one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent
if str(REPO_ROOT) not in sys.path:  # `cdk synth` runs this file from anywhere
    sys.path.insert(0, str(REPO_ROOT))

# jsii's banner about an old Node.js (the machine's, not ours to pick) would bury the one line a config
# error prints; `node --version` still tells the user.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "14,16,18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "14,16,18,20")

from infra.config import CONTEXT_KEY, ConfigError, FleetConfig, load_config  # noqa: E402

CDK_JSON = REPO_ROOT / "cdk.json"
# What `cdk synth` sets by default, so `python3 app.py` and synthesize() give the same assembly: the
# emulator finds the Lambda code through each function's `aws:asset:path` metadata.
APP_CONTEXT = {"aws:cdk:enable-asset-metadata": True}


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
        outdir=str(outdir) if outdir is not None else None, analytics_reporting=False, context=APP_CONTEXT
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
