"""Where fleetctl points: a table (--table/--region) or the emulator (--endpoint-file); and the config."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from fleetctl.errors import UsageError
from infra.config import ConfigError, FleetConfig, load_config
from infra.constants import REPO_ROOT

DEFAULT_CDK_JSON = REPO_ROOT / "cdk.json"
# Bounded retries with botocore's standard backoff: the CLI may wait, but never forever.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 4})


@dataclass(frozen=True)
class Target:
    table: str
    region: str | None
    endpoint_url: str | None = None  # the emulator's AWS API
    endpoint_file: Path | None = None
    endpoint: dict[str, Any] | None = None  # the parsed endpoint file

    def client(self, service: str) -> Any:
        kwargs: dict[str, Any] = {"config": _CLIENT_CONFIG}
        if self.region:
            kwargs["region_name"] = self.region
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
            if not os.environ.get("AWS_ACCESS_KEY_ID"):
                # The emulator (moto) accepts any signature; spare the user a credentials setup.
                kwargs |= {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}
        return boto3.session.Session().client(service, **kwargs)


@dataclass(frozen=True)
class Settings:
    """What validation needs from the stack's configuration."""

    serial_pattern: re.Pattern[str]
    thing_name_prefix: str
    thing_attributes: tuple[str, ...]
    stack_name: str
    template_name: str = "FleetProvisioningTemplate"

    def serial_problem(self, serial: str) -> str | None:
        if not serial:
            return "serial is empty"
        if self.serial_pattern.fullmatch(serial) is None:
            return f"serial {serial[:80]!r} does not match {self.serial_pattern.pattern}"
        if len(self.thing_name_prefix) + len(serial) > 128:
            return f"serial {serial[:80]!r} makes a thing name over 128 characters"
        return None


def read_endpoint_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"endpoint file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read endpoint file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"endpoint file {path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"endpoint file {path} is not a JSON object")
    return data


def resolve_target(*, table: str | None, region: str | None, endpoint_file: Path | None) -> Target:
    if endpoint_file is not None:
        endpoint = read_endpoint_file(endpoint_file)
        missing = [
            k for k in ("aws_endpoint_url", "region", "serial_table") if not isinstance(endpoint.get(k), str)
        ]
        if missing:
            raise UsageError(f"endpoint file {endpoint_file} lacks {', '.join(missing)}")
        return Target(
            table=table or endpoint["serial_table"],
            region=region or endpoint["region"],
            endpoint_url=endpoint["aws_endpoint_url"],
            endpoint_file=endpoint_file,
            endpoint=endpoint,
        )
    if not table:
        raise UsageError(
            "say which registry: --table NAME [--region R] (AWS) or --endpoint-file F (emulator)"
        )
    region = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or boto3.session.Session().region_name
    )
    if not region:
        raise UsageError("no AWS region: give --region or set AWS_REGION")
    return Target(table=table, region=region)


def load_settings(
    *, cdk_json: Path | None, serial_pattern: str | None, target: Target | None = None
) -> Settings:
    """The stack configuration from cdk.json (context.fleet); command-line options override it."""
    config = _fleet_config(cdk_json)
    prefix = config.thing_name_prefix
    if target is not None and target.endpoint and isinstance(target.endpoint.get("thing_name_prefix"), str):
        prefix = target.endpoint["thing_name_prefix"]  # what the running emulator actually uses
    raw = serial_pattern or config.serial_pattern
    try:
        pattern = re.compile(raw)
    except re.error as exc:
        raise UsageError(f"serial pattern {raw!r} is not a regular expression ({exc})") from None
    return Settings(
        serial_pattern=pattern,
        thing_name_prefix=prefix,
        thing_attributes=config.thing_attributes,
        stack_name=config.stack_name,
        template_name=config.template_name,
    )


def _fleet_config(cdk_json: Path | None) -> FleetConfig:
    path = cdk_json or DEFAULT_CDK_JSON
    if not path.exists():
        if cdk_json is not None:
            raise UsageError(f"config file {cdk_json} does not exist")
        return FleetConfig()  # outside a checkout: the defaults the stack would have
    try:
        context = json.loads(path.read_text()).get("context", {}).get("fleet")
        return load_config(context, base_dir=path.parent)
    except ValueError as exc:  # JSON errors and ConfigError alike
        raise UsageError(f"{path}: {exc}") from None
    except (AttributeError, OSError) as exc:
        raise UsageError(f"{path}: cannot read the fleet configuration ({exc})") from None


__all__ = ["ConfigError", "Settings", "Target", "load_settings", "read_endpoint_file", "resolve_target"]
