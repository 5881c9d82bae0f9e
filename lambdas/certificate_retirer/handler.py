"""Lambda entry point of the certificate retirer: a lifecycle event, or a scheduled `{"action": ...}`."""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from . import retirer
from .settings import ENV_SERVICE, load_settings
from .store import Store

logger = Logger(service=os.environ.get(ENV_SERVICE) or "certificate-retirer")


def lambda_handler(event: Any, context: Any) -> dict[str, object]:
    settings = load_settings()
    store = Store(settings.table_name, settings.rotations_index)
    now_ms = time.time_ns() // 1_000_000
    if isinstance(event, dict) and event.get("eventType") == "connected":
        client_id, principal = str(event.get("clientId", "")), str(event.get("principalIdentifier", ""))
        outcome = retirer.on_connected(client_id, principal, settings, store, now_ms)
        action = "connected"
    elif isinstance(event, dict) and event.get("action") == "sweep":
        outcome, action = retirer.sweep(settings, store, now_ms), "sweep"
    elif isinstance(event, dict) and event.get("action") == "expiring":
        outcome, action = retirer.expiring(settings, store, now_ms), "expiring"
    else:
        logger.warning("ignored an event that is neither a connection nor a scheduled action")
        return {"ignored": True}
    logger.info("certificate retirer", extra={"action": action, **outcome.as_dict()})
    metrics = [("CertificatesRetired", len(outcome.retired)), ("RotationsAbandoned", len(outcome.abandoned))]
    if outcome.expiring is not None:
        metrics.append(("CertificatesExpiringSoon", outcome.expiring))
    for name, value in metrics:
        if value or name == "CertificatesExpiringSoon":
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=value,
                namespace=settings.namespace,
                default_dimensions={"service": settings.service},
            ):
                pass
    return outcome.as_dict()
