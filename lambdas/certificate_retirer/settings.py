"""The retirer's configuration, read from the environment on every call."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Names fixed by infra/constants.py (RETIRER env); repeated here because the Lambda asset is lambdas/ only.
ENV_SERIAL_TABLE = "SERIAL_TABLE_NAME"
ENV_THING_NAME_PREFIX = "THING_NAME_PREFIX"
ENV_DEVICE_POLICY = "DEVICE_POLICY_NAME"
ENV_GRACE_S = "ROTATION_GRACE_S"
ENV_EXPIRING_DAYS = "EXPIRING_WITHIN_DAYS"
ENV_ROTATIONS_INDEX = "ROTATIONS_INDEX"
ENV_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_SERVICE = "POWERTOOLS_SERVICE_NAME"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class RetirerSettings:
    table_name: str
    thing_name_prefix: str
    device_policy_name: str
    grace_s: int
    expiring_within_days: int
    rotations_index: str
    namespace: str = "FleetProvisioning"
    service: str = "certificate-retirer"


def load_settings(environ: Mapping[str, str] | None = None) -> RetirerSettings:
    env = os.environ if environ is None else environ
    missing = [n for n in (ENV_SERIAL_TABLE, ENV_DEVICE_POLICY, ENV_ROTATIONS_INDEX) if not env.get(n)]
    if missing:
        raise SettingsError(f"{', '.join(missing)} not set")
    try:
        grace_s, days = int(env.get(ENV_GRACE_S, "86400")), int(env.get(ENV_EXPIRING_DAYS, "30"))
    except ValueError:
        raise SettingsError(f"{ENV_GRACE_S} and {ENV_EXPIRING_DAYS} must be integers") from None
    if grace_s <= 0 or days <= 0:
        raise SettingsError(f"{ENV_GRACE_S} and {ENV_EXPIRING_DAYS} must be positive")
    return RetirerSettings(
        table_name=env[ENV_SERIAL_TABLE],
        thing_name_prefix=env.get(ENV_THING_NAME_PREFIX, ""),
        device_policy_name=env[ENV_DEVICE_POLICY],
        grace_s=grace_s,
        expiring_within_days=days,
        rotations_index=env[ENV_ROTATIONS_INDEX],
        namespace=env.get(ENV_NAMESPACE) or "FleetProvisioning",
        service=env.get(ENV_SERVICE) or "certificate-retirer",
    )
