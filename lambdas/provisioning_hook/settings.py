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
ENV_DEVICE_PARAMETERS = "DEVICE_PARAMETERS"
ENV_REQUIRE_DEVICE_KEY = "REQUIRE_DEVICE_KEY"
ENV_REQUIRE_CN_MATCH = "REQUIRE_CN_MATCH"
ENV_ROTATION_TEMPLATE = "ROTATION_TEMPLATE_NAME"
ENV_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

DEFAULT_SERVICE = "provisioning-hook"
DEFAULT_NAMESPACE = "FleetProvisioning"
MAX_THING_NAME = 128
PARAM_SERIAL = "SerialNumber"
# AWS IoT's thing-name rule (API_CreateThing): what the template makes of prefix + serial.
THING_NAME_RE = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


class SettingsError(ValueError):
    """The environment is missing a value or holds a bad one."""


@dataclass(frozen=True)
class HookSettings:
    table_name: str
    serial_pattern: re.Pattern[str]
    thing_name_prefix: str
    reservation_timeout_s: int
    template_attributes: tuple[str, ...]
    # What a device may send besides AWS::IoT::Certificate::Id (its own certificate's id): its serial.
    device_parameters: tuple[str, ...] = (PARAM_SERIAL,)
    require_device_key: bool = False  # every serial must carry the fingerprint of its device's key
    require_cn_match: bool = True  # the certificate's CN must be the serial
    rotation_template_name: str = ""  # the template whose requests are rotations ("": rotation is off)
    service: str = DEFAULT_SERVICE
    namespace: str = DEFAULT_NAMESPACE

    def thing_name(self, serial: str) -> str:
        return f"{self.thing_name_prefix}{serial}"

    def is_rotation(self, template_arn: str) -> bool:
        """A request to the rotation template (`arn:...:provisioningtemplate/<name>`)."""
        name = template_arn.rsplit("/", 1)[-1]
        return bool(self.rotation_template_name) and name == self.rotation_template_name


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
    device_parameters = _names(env.get(ENV_DEVICE_PARAMETERS, PARAM_SERIAL))
    if PARAM_SERIAL not in device_parameters:
        raise SettingsError(f"{ENV_DEVICE_PARAMETERS} must name {PARAM_SERIAL}")
    return HookSettings(
        table_name=table,
        serial_pattern=pattern,
        thing_name_prefix=env.get(ENV_THING_NAME_PREFIX, ""),
        reservation_timeout_s=timeout,
        template_attributes=_names(env.get(ENV_TEMPLATE_ATTRIBUTES, "")),
        device_parameters=device_parameters,
        require_device_key=_flag(env, ENV_REQUIRE_DEVICE_KEY, default=False),
        require_cn_match=_flag(env, ENV_REQUIRE_CN_MATCH, default=True),
        rotation_template_name=env.get(ENV_ROTATION_TEMPLATE, "").strip(),
        service=env.get(ENV_SERVICE) or DEFAULT_SERVICE,
        namespace=env.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE,
    )


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {value[:20]!r}")
