"""The hook's configuration, read from the environment on every call (never cached across invocations)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Names fixed by infra/constants.py (HOOK env); repeated here because the Lambda asset is lambdas/ only.
ENV_SERIAL_TABLE = "SERIAL_TABLE_NAME"
ENV_SERIAL_PATTERN = "SERIAL_PATTERN"
ENV_THING_NAME_PREFIX = "THING_NAME_PREFIX"
ENV_RESERVATION_TIMEOUT = "RESERVATION_TIMEOUT_S"
ENV_TEMPLATE_ATTRIBUTES = "TEMPLATE_ATTRIBUTES"
ENV_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

DEFAULT_SERVICE = "provisioning-hook"
DEFAULT_NAMESPACE = "FleetProvisioning"
MAX_THING_NAME = 128


class SettingsError(ValueError):
    """The environment is missing a value or holds a bad one."""


@dataclass(frozen=True)
class HookSettings:
    table_name: str
    serial_pattern: re.Pattern[str]
    thing_name_prefix: str
    reservation_timeout_s: int
    template_attributes: tuple[str, ...]
    service: str = DEFAULT_SERVICE
    namespace: str = DEFAULT_NAMESPACE

    def thing_name(self, serial: str) -> str:
        return f"{self.thing_name_prefix}{serial}"


def load_settings(environ: Mapping[str, str] | None = None) -> HookSettings:
    env = os.environ if environ is None else environ
    table = env.get(ENV_SERIAL_TABLE, "").strip()
    if not table:
        raise SettingsError(f"{ENV_SERIAL_TABLE} is not set")
    raw_pattern = env.get(ENV_SERIAL_PATTERN, "")
    if not raw_pattern:
        raise SettingsError(f"{ENV_SERIAL_PATTERN} is not set")
    try:
        pattern = re.compile(raw_pattern)  # re caches compiled patterns itself
    except re.error as exc:
        raise SettingsError(f"{ENV_SERIAL_PATTERN} is not a regular expression ({exc})") from None
    raw_timeout = env.get(ENV_RESERVATION_TIMEOUT, "")
    try:
        timeout = int(raw_timeout)
    except ValueError:
        raise SettingsError(f"{ENV_RESERVATION_TIMEOUT} must be an integer, got {raw_timeout!r}") from None
    if timeout <= 0:
        raise SettingsError(f"{ENV_RESERVATION_TIMEOUT} must be positive")
    attributes = tuple(a.strip() for a in env.get(ENV_TEMPLATE_ATTRIBUTES, "").split(",") if a.strip())
    return HookSettings(
        table_name=table,
        serial_pattern=pattern,
        thing_name_prefix=env.get(ENV_THING_NAME_PREFIX, ""),
        reservation_timeout_s=timeout,
        template_attributes=attributes,
        service=env.get(ENV_SERVICE) or DEFAULT_SERVICE,
        namespace=env.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE,
    )
