"""The one typed configuration of the stack, read from `cdk.json` context by `app.py` only.

Every value is validated here, at synth time: a bad value raises `ConfigError` whose message
names the key and the rule, and `app.py` prints that one line and exits non-zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CONTEXT_KEY = "fleet"

TEMPLATE_NAME_RE = re.compile(r"^[0-9A-Za-z_-]{1,36}$")
# Thing, thing group and thing type names: AWS allows [a-zA-Z0-9:_-]{1,128}.
THING_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]+$")
CLAIM_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
# Template parameter names double as thing attribute names.
ATTRIBUTE_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#-]{1,128}$")
# The pieces of an IoT client-id ARN a pattern may contain; `*` and `?` are IoT policy wildcards.
CLIENT_ID_PATTERN_RE = re.compile(r"^[A-Za-z0-9_:.*?-]{1,128}$")
TOPIC_ROOT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED_PARAMETERS = {"SerialNumber", "AWS::IoT::Certificate::Id", "Batch"}
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
MAX_THING_NAME = 128


class ConfigError(ValueError):
    """A configuration value breaks a rule; the message names the key and the rule."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"{CONTEXT_KEY}.{key}: {rule}")
        self.key = key
        self.rule = rule


ClaimMode = Literal["csr", "generated"]


@dataclass(frozen=True)
class ClaimCredential:
    """One shared claim credential (a factory line or batch)."""

    name: str
    mode: ClaimMode
    active: bool = True
    csr_file: Path | None = None  # mode "csr": a PEM CSR made in the factory HSM

    def csr_pem(self) -> str:
        assert self.csr_file is not None
        return self.csr_file.read_text()


@dataclass(frozen=True)
class RotationConfig:
    """Certificate rotation in the field (docs/rotation.md): a second template, the same hook, a retirer."""

    enabled: bool = False
    template_name: str | None = None  # default: the provisioning template's name + "Rotation"
    grace_s: int = 86_400  # the old certificate is retired at most this long after a rotation
    sweep_minutes: int = 5  # how often the retirer looks for rotations past their grace
    expiring_within_days: int = 30  # the metric of certificates that expire soon
    failure_rate_alarm_percent: int = 10  # denied rotations per 5 minutes, of all rotation requests


@dataclass(frozen=True)
class FleetConfig:
    stack_name: str = "FleetProvisioning"
    template_name: str = "FleetProvisioningTemplate"
    thing_name_prefix: str = "device-"
    serial_pattern: str = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
    thing_group_name: str = "provisioned-devices"
    thing_type_name: str | None = None
    thing_attributes: tuple[str, ...] = ()
    device_configuration: dict[str, str] = field(default_factory=dict)
    device_topic_root: str = "devices"
    claim_client_id_pattern: str = "prov-*"
    allow_create_keys_and_certificate: bool = False
    claim_credentials: tuple[ClaimCredential, ...] = ()
    reservation_timeout_s: int = 900
    # Attestation (docs/security.md): every serial must carry its device key's fingerprint to provision.
    require_device_key: bool = False
    require_cn_match: bool = True  # the device certificate's CN must be its serial
    rotation: RotationConfig = field(default_factory=RotationConfig)
    log_retention_days: int = 30
    iot_logging: bool = True
    alarm_email: str | None = None
    denial_rate_alarm_percent: int = 20
    provisioning_spike_per_5min: int = 1000
    powertools_layer_version: int = 18
    metrics_namespace: str = "FleetProvisioning"

    @property
    def rotation_template_name(self) -> str:
        return self.rotation.template_name or f"{self.template_name}Rotation"

    @property
    def max_serial_length(self) -> int:
        return MAX_THING_NAME - len(self.thing_name_prefix)


_BOOL_KEYS = ("allow_create_keys_and_certificate", "iot_logging", "require_device_key", "require_cn_match")
_INT_RANGES = {
    "reservation_timeout_s": (60, 86_400),
    "denial_rate_alarm_percent": (1, 100),
    "provisioning_spike_per_5min": (1, 10_000_000),
    "powertools_layer_version": (1, 10_000),
}


def load_config(context: Any, *, base_dir: Path) -> FleetConfig:
    """Validate the `fleet` context object into a `FleetConfig`; relative paths resolve against base_dir."""
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise ConfigError("", "must be an object")
    known = set(FleetConfig.__dataclass_fields__)
    for key in context:
        if key not in known:
            raise ConfigError(str(key), "unknown key")
    raw = dict(context)
    values: dict[str, Any] = {}

    for key in (
        "stack_name",
        "template_name",
        "thing_name_prefix",
        "serial_pattern",
        "thing_group_name",
        "device_topic_root",
        "claim_client_id_pattern",
        "metrics_namespace",
    ):
        if key in raw:
            values[key] = _string(raw, key)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", values.get("stack_name", FleetConfig.stack_name)):
        raise ConfigError(
            "stack_name", "must be a CloudFormation stack name: a letter, then letters, digits, '-'"
        )
    if not TEMPLATE_NAME_RE.fullmatch(values.get("template_name", FleetConfig.template_name)):
        raise ConfigError("template_name", "must be 1-36 characters of [0-9A-Za-z_-]")
    prefix = values.get("thing_name_prefix", FleetConfig.thing_name_prefix)
    if prefix and not THING_NAME_RE.fullmatch(prefix) or len(prefix) > 64:
        raise ConfigError("thing_name_prefix", "must be at most 64 characters of [a-zA-Z0-9:_-]")
    pattern = values.get("serial_pattern", FleetConfig.serial_pattern)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError("serial_pattern", f"must be a valid regular expression ({exc})") from None
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ConfigError("serial_pattern", "must be anchored with ^ and $")
    group = values.get("thing_group_name", FleetConfig.thing_group_name)
    if not THING_NAME_RE.fullmatch(group) or len(group) > 128:
        raise ConfigError("thing_group_name", "must be 1-128 characters of [a-zA-Z0-9:_-]")
    if not TOPIC_ROOT_RE.fullmatch(values.get("device_topic_root", FleetConfig.device_topic_root)):
        raise ConfigError("device_topic_root", "must be 1-64 characters of [A-Za-z0-9_-]")
    if not CLIENT_ID_PATTERN_RE.fullmatch(
        values.get("claim_client_id_pattern", FleetConfig.claim_client_id_pattern)
    ):
        raise ConfigError(
            "claim_client_id_pattern", "must be 1-128 characters of [A-Za-z0-9_:.-] and the wildcards * ?"
        )
    if not re.fullmatch(
        r"[A-Za-z0-9_./#:-]{1,255}", values.get("metrics_namespace", FleetConfig.metrics_namespace)
    ):
        raise ConfigError("metrics_namespace", "must be 1-255 characters of [A-Za-z0-9_./#:-]")

    if raw.get("thing_type_name") is not None:
        name = _string(raw, "thing_type_name")
        if not THING_NAME_RE.fullmatch(name) or len(name) > 128:
            raise ConfigError("thing_type_name", "must be null or 1-128 characters of [a-zA-Z0-9:_-]")
        values["thing_type_name"] = name

    if "thing_attributes" in raw:
        attrs = raw["thing_attributes"]
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise ConfigError("thing_attributes", "must be a list of strings")
        if len(attrs) > 50:
            raise ConfigError("thing_attributes", "must name at most 50 attributes (AWS's limit per thing)")
        for a in attrs:
            if not ATTRIBUTE_RE.fullmatch(a) or a in RESERVED_PARAMETERS or a.lower() == "batch":
                raise ConfigError(
                    "thing_attributes",
                    f"'{a}' must be 1-128 characters of [a-zA-Z0-9_.,@/:#-] "
                    f"and not a reserved parameter name",
                )
        if len(set(attrs)) != len(attrs):
            raise ConfigError("thing_attributes", "must not repeat a name")
        values["thing_attributes"] = tuple(attrs)

    if "device_configuration" in raw:
        dc = raw["device_configuration"]
        if not isinstance(dc, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dc.items()
        ):
            raise ConfigError(
                "device_configuration", "must be a flat map of strings to strings (AWS allows no nesting)"
            )
        values["device_configuration"] = dict(dc)

    for key in _BOOL_KEYS:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ConfigError(key, "must be true or false")
            values[key] = raw[key]
    for key, (low, high) in _INT_RANGES.items():
        if key in raw:
            values[key] = _int(raw, key, low, high)
    if "log_retention_days" in raw:
        days = raw["log_retention_days"]
        if isinstance(days, bool) or days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                "log_retention_days", f"must be one of CloudWatch's values {LOG_RETENTION_DAYS}"
            )
        values["log_retention_days"] = days
    if raw.get("alarm_email") is not None:
        email = _string(raw, "alarm_email")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise ConfigError("alarm_email", "must be null or an e-mail address")
        values["alarm_email"] = email

    values["claim_credentials"] = _claims(raw.get("claim_credentials"), base_dir)
    template_name = values.get("template_name", FleetConfig.template_name)
    values["rotation"] = _rotation(raw.get("rotation"), template_name)
    if values.get("allow_create_keys_and_certificate"):
        # CreateKeysAndCertificate: AWS makes the key and names the certificate "AWS IoT Certificate". Its
        # CN cannot be the serial, and its key cannot be one the factory recorded.
        for key, rule in (("require_cn_match", True), ("require_device_key", False)):
            if values.get(key, getattr(FleetConfig, key)):
                raise ConfigError(
                    key,
                    "cannot hold with allow_create_keys_and_certificate: AWS makes that key and names its "
                    f"certificate itself{'; set require_cn_match to false' if rule else ''}",
                )
    return FleetConfig(**values)


def _claims(raw: Any, base_dir: Path) -> tuple[ClaimCredential, ...]:
    key = "claim_credentials"
    if not isinstance(raw, list) or not raw:
        raise ConfigError(key, "must be a non-empty list of claim credentials")
    seen: set[str] = set()
    claims = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "must be an object with name and mode")
        unknown = set(item) - {"name", "mode", "active", "csr_file"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown key")
        name = item.get("name")
        if not isinstance(name, str) or not CLAIM_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"{where}.name", "must be 1-31 characters of [a-z0-9-], starting with a letter or digit"
            )
        if name in seen:
            raise ConfigError(f"{where}.name", f"'{name}' is used twice")
        seen.add(name)
        mode = item.get("mode")
        if mode not in ("csr", "generated"):
            raise ConfigError(f"{where}.mode", "must be 'csr' or 'generated'")
        active = item.get("active", True)
        if not isinstance(active, bool):
            raise ConfigError(f"{where}.active", "must be true or false")
        csr_file = None
        if mode == "csr":
            path = item.get("csr_file")
            if not isinstance(path, str) or not path:
                raise ConfigError(
                    f"{where}.csr_file", "is required in mode 'csr' (a PEM CSR from the factory HSM)"
                )
            csr_file = (base_dir / path).resolve()
            _check_csr(f"{where}.csr_file", csr_file)
        elif "csr_file" in item:
            raise ConfigError(f"{where}.csr_file", "is only allowed in mode 'csr'")
        claims.append(ClaimCredential(name=name, mode=mode, active=active, csr_file=csr_file))
    return tuple(claims)


_ROTATION_INTS = {
    "grace_s": (60, 30 * 86_400),
    "sweep_minutes": (1, 60),
    "expiring_within_days": (1, 365),
    "failure_rate_alarm_percent": (1, 100),
}


def _rotation(raw: Any, template_name: str) -> RotationConfig:
    if raw is None:
        return RotationConfig()
    if not isinstance(raw, dict):
        raise ConfigError("rotation", 'must be an object such as {"enabled": true, "grace_s": 86400}')
    unknown = set(raw) - set(RotationConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"rotation.{sorted(unknown)[0]}", "unknown key")
    values: dict[str, Any] = {}
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise ConfigError("rotation.enabled", "must be true or false")
        values["enabled"] = raw["enabled"]
    if raw.get("template_name") is not None:
        name = raw["template_name"]
        if not isinstance(name, str) or not TEMPLATE_NAME_RE.fullmatch(name):
            raise ConfigError("rotation.template_name", "must be 1-36 characters of [0-9A-Za-z_-]")
        values["template_name"] = name
    for key, (low, high) in _ROTATION_INTS.items():
        if key in raw:
            values[key] = _int(raw, key, low, high, where=f"rotation.{key}")
    rotation = RotationConfig(**values)
    name = rotation.template_name or f"{template_name}Rotation"
    if not TEMPLATE_NAME_RE.fullmatch(name):
        raise ConfigError("rotation.template_name", f"{name!r} is too long for a template name (36): set one")
    if name == template_name:
        raise ConfigError("rotation.template_name", "must differ from template_name")
    return rotation


def _check_csr(key: str, path: Path) -> None:
    from cryptography import x509

    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path} ({exc.strerror})") from None
    if b"PRIVATE KEY" in text:
        raise ConfigError(key, "holds private-key text: give the CSR only, the key stays in the factory HSM")
    try:
        csr = x509.load_pem_x509_csr(text)
    except ValueError:
        raise ConfigError(key, f"{path} is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise ConfigError(key, f"{path} has an invalid signature")


def _string(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a non-empty string")
    return value


def _int(raw: dict[str, Any], key: str, low: int, high: int, *, where: str | None = None) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(where or key, f"must be an integer from {low} to {high}")
    return value
