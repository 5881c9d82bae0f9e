"""Lambda entry point: parse, decide, log once, count once, answer. Never raises, never allows by accident."""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import ValidationError

from .decision import Decision, decide
from .models import HookEvent, HookResponse, Reason
from .registry_dynamodb import DynamoDBRegistry
from .settings import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    ENV_NAMESPACE,
    ENV_SERVICE,
    HookSettings,
    SettingsError,
    load_settings,
)

# Powertools objects only format and print; they hold no decision. Metrics go out through one
# `single_metric` per metric (each its own EMF blob, printed at once) rather than the buffered
# `Metrics` class, whose class-level buffer outlives an invocation and needs one dimension set.
logger = Logger(service=os.environ.get(ENV_SERVICE) or DEFAULT_SERVICE)


def lambda_handler(event: Any, context: Any) -> dict[str, object]:
    started = time.monotonic()
    decision, settings, parsed = evaluate(event)
    response = HookResponse(
        allowProvisioning=decision.allowed, parameterOverrides=decision.overrides if decision.allowed else {}
    )
    _log(decision, parsed, context, started)
    _count(decision, parsed, settings)
    return response.to_dict()


def evaluate(event: Any) -> tuple[Decision, HookSettings | None, HookEvent | None]:
    """The whole decision for one raw event; every failure becomes a denial with its reason."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        return Decision(Reason.CONFIG_ERROR, detail=str(exc)), None, None
    try:
        parsed = HookEvent.model_validate(event)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "event" for err in exc.errors()})
        return Decision(Reason.MALFORMED_EVENT, detail="invalid: " + ", ".join(fields)[:300]), settings, None
    try:
        registry = DynamoDBRegistry(settings.table_name)
        return decide(parsed, settings, registry, now_ms=time.time_ns() // 1_000_000), settings, parsed
    except Exception as exc:  # noqa: BLE001 - deny on anything unforeseen, and say what it was
        logger.exception("decision failed")
        return Decision(Reason.REGISTRY_ERROR, detail=type(exc).__name__), settings, parsed


def _log(decision: Decision, event: HookEvent | None, context: Any, started: float) -> None:
    # Serial and ids only: never the certificate PEM, never the raw event.
    fields: dict[str, object] = {
        "decision": "allow" if decision.allowed else "deny",
        "reason": decision.reason.value,
        "serial": decision.serial,
        "detail": decision.detail or None,
        "duration_ms": round((time.monotonic() - started) * 1000, 2),
        "request_id": getattr(context, "aws_request_id", None),
    }
    if event is not None:
        fields |= {
            "certificate_id": event.certificate_id,
            "claim_certificate_id": event.claim_certificate_id,
            "client_id": event.client_id,
        }
    try:
        logger.info("provisioning decision", extra=fields)
    except Exception:  # noqa: BLE001,S110 - a logging failure must not turn into a Lambda error
        pass


def _count(decision: Decision, event: HookEvent | None, settings: HookSettings | None) -> None:
    service = settings.service if settings else DEFAULT_SERVICE
    namespace = settings.namespace if settings else os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE
    dims = {"service": service}
    # A rotation is counted apart, so its refusals neither hide nor inflate the provisioning denial rate.
    rotation = event is not None and settings is not None and settings.is_rotation(event.template_arn)
    outcome = ("Rotation" if rotation else "Hook") + ("Allowed" if decision.allowed else "Denied")
    per_decision = [
        (
            "HookDecisions",
            {"Decision": "allow" if decision.allowed else "deny", "Reason": decision.reason.value},
        ),
        (outcome, {}),
    ]
    if decision.allowed and event is not None and not rotation:
        per_decision.append(
            ("ProvisioningAllowedByClaim", {"ClaimCertificateId": event.claim_certificate_id})
        )
    for name, extra in per_decision:
        try:
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=1,
                namespace=namespace,
                default_dimensions=dims | extra,
            ):
                pass
        except Exception:  # noqa: BLE001,S110 - metrics are best effort; the answer is what matters
            pass
