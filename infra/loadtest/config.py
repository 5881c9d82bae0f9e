"""The load-test stack's configuration: cdk.json's `context.loadtest`, or `cdk synth -c loadtest=true`.

Off unless `enabled` is true. `-c loadtest=true` turns it on with cdk.json's values; `-c loadtest='{...}'`
overrides them key by key. A bad value is a ConfigError naming `loadtest.<key>`, one line from app.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from infra.config import LOG_RETENTION_DAYS, ConfigError, FleetConfig
from infra.names import claim_secret_name

CONTEXT_KEY = "loadtest"
# Fargate's CPU units and the memory (MiB) each allows (AWS's task size table).
FARGATE_MEMORY = {
    256: (512, 2048),
    512: (1024, 4096),
    1024: (2048, 8192),
    2048: (4096, 16384),
    4096: (8192, 30720),
}


@dataclass(frozen=True)
class LoadTestConfig:
    enabled: bool = False
    stack_name: str = "FleetLoadTest"
    # The Secrets Manager secret holding the claim credential as JSON {"certificatePem", "privateKey"}: the
    # backend's generated claim by default (infra.names.claim_secret_name).
    claim_secret_name: str = ""
    # The KMS key that encrypts that secret, when known; else the workers may decrypt with any key, but only
    # through Secrets Manager and only for that secret (conditions on the grant).
    claim_secret_key_arn: str | None = None
    worker_cpu: int = 1024
    worker_memory_mib: int = 2048
    master_cpu: int = 512
    master_memory_mib: int = 1024
    report_retention_days: int = 30
    log_retention_days: int = 14


def load_loadtest_config(context: Any, fleet: FleetConfig) -> LoadTestConfig:
    """Validate the `loadtest` context (an object, a JSON string, or "true"/"false") against the fleet."""
    raw = as_object(context)
    known = {f.name for f in fields(LoadTestConfig)}
    for key in raw:
        if key not in known:
            raise _error(key, "unknown key")
    values: dict[str, Any] = dict(raw)
    if not isinstance(values.get("enabled", False), bool):
        raise _error("enabled", "must be true or false")
    name = values.get("stack_name", LoadTestConfig.stack_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", name):
        raise _error("stack_name", "must be a CloudFormation stack name: a letter, then letters, digits, '-'")
    if name == fleet.stack_name:
        raise _error("stack_name", f"must differ from the backend's stack '{fleet.stack_name}'")
    secret = values.get("claim_secret_name") or _default_secret(fleet)
    if not secret and not values.get("enabled"):
        secret = "unused"  # nothing is built; a backend with CSR claims only needs no secret then
    if not secret:
        raise _error(
            "claim_secret_name",
            "no generated claim credential to default to: name a secret with certificatePem and privateKey",
        )
    if not isinstance(secret, str) or not re.fullmatch(r"[A-Za-z0-9/_+=.@-]{1,512}", secret):
        raise _error("claim_secret_name", "must be a Secrets Manager secret name")
    values["claim_secret_name"] = secret
    key_arn = values.get("claim_secret_key_arn")
    if key_arn is not None and (not isinstance(key_arn, str) or not key_arn.startswith("arn:")):
        raise _error("claim_secret_key_arn", "must be a KMS key ARN")
    for role in ("worker", "master"):
        cpu, memory = (
            values.get(f"{role}_cpu", 1024 if role == "worker" else 512),
            values.get(f"{role}_memory_mib", 2048 if role == "worker" else 1024),
        )
        if cpu not in FARGATE_MEMORY or isinstance(cpu, bool):
            raise _error(f"{role}_cpu", f"must be one of Fargate's CPU sizes {sorted(FARGATE_MEMORY)}")
        low, high = FARGATE_MEMORY[cpu]
        if (
            not isinstance(memory, int)
            or isinstance(memory, bool)
            or not low <= memory <= high
            or memory % 1024
        ):
            raise _error(
                f"{role}_memory_mib", f"with {cpu} CPU units must be a multiple of 1024 in {low}-{high}"
            )
    for key in ("report_retention_days", "log_retention_days"):
        days = values.get(key, getattr(LoadTestConfig, key))
        if days not in LOG_RETENTION_DAYS or isinstance(days, bool):
            raise _error(
                key, "must be one of CloudWatch's retention periods (1, 3, 5, 7, 14, 30, 60, 90, ...)"
            )
    return LoadTestConfig(**values)


def _default_secret(fleet: FleetConfig) -> str:
    generated = [claim for claim in fleet.claim_credentials if claim.mode == "generated" and claim.active]
    return claim_secret_name(fleet, generated[0].name) if generated else ""


def as_object(context: Any) -> dict[str, Any]:
    if context is None:
        return {}
    if isinstance(context, bool):
        return {"enabled": context}
    if isinstance(context, str):
        text = context.strip()
        if text.lower() in ("true", "false"):
            return {"enabled": text.lower() == "true"}
        try:
            context = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error("", f"-c loadtest=... must be true, false or a JSON object ({exc.msg})") from None
        if isinstance(context, dict):
            context = {"enabled": True, **context}
    if not isinstance(context, dict):
        raise _error("", "must be true, false or an object")
    return context


def _error(key: str, rule: str) -> ConfigError:
    """A ConfigError whose message names `loadtest.<key>` (app.py prints it as one line)."""
    error = ConfigError(key or CONTEXT_KEY, rule)
    error.args = (f"{CONTEXT_KEY}.{key}: {rule}" if key else f"{CONTEXT_KEY}: {rule}",)
    return error
