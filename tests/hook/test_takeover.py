"""Stale reservations: taken over only after the timeout and only if the old certificate never went ACTIVE."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from .support import cert_id, decision_log, get_serial_item, load_event, put_serial, run_hook

STALE_MS = 901_000  # RESERVATION_TIMEOUT_S is 900


def decide(event: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    response, out = run_hook(event, capsys)
    log = decision_log(out)[0]
    if log["reason"] == "REGISTRY_ERROR":
        print("REGISTRY_ERROR detail:", log["detail"], file=sys.stderr)
    return bool(response["allowProvisioning"]), log["reason"]


def moto_certificate(iot: Any, *, active: bool) -> str:
    return iot.create_keys_and_certificate(setAsActive=active)["certificateId"]  # type: ignore[no-any-return]


def test_stale_reservation_of_inactive_certificate_is_taken_over(
    iot: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    old = moto_certificate(iot, active=False)
    put_serial(
        dynamodb,
        "SN-000001",
        status="RESERVED",
        certificate_id=old,
        reserved_at=int(time.time() * 1000) - STALE_MS,
    )
    assert decide(load_event("register_thing", certificate_id=cert_id(2)), capsys) == (
        True,
        "ALLOWED_TAKEOVER",
    )
    item = get_serial_item(dynamodb, "SN-000001")
    assert item is not None and item["certificate_id"]["S"] == cert_id(2)
    # The new holder is now fresh: the old certificate cannot come back and take it.
    assert decide(load_event("register_thing", certificate_id=old), capsys) == (False, "TAKEN")


def test_stale_reservation_of_vanished_certificate_is_taken_over(
    iot: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(
        dynamodb,
        "SN-000001",
        status="RESERVED",
        certificate_id=cert_id(1),
        reserved_at=int(time.time() * 1000) - STALE_MS,
    )
    assert decide(load_event("register_thing", certificate_id=cert_id(2)), capsys) == (
        True,
        "ALLOWED_TAKEOVER",
    )


def test_stale_reservation_of_active_certificate_is_refused(
    iot: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    old = moto_certificate(iot, active=True)
    put_serial(
        dynamodb,
        "SN-000001",
        status="RESERVED",
        certificate_id=old,
        reserved_at=int(time.time() * 1000) - 10 * STALE_MS,
    )
    assert decide(load_event("register_thing", certificate_id=cert_id(2)), capsys) == (False, "TAKEN")
    assert get_serial_item(dynamodb, "SN-000001")["certificate_id"]["S"] == old  # type: ignore[index]


def test_fresh_reservation_is_refused_without_asking_iot(
    iot: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    old = moto_certificate(iot, active=False)
    put_serial(
        dynamodb,
        "SN-000001",
        status="RESERVED",
        certificate_id=old,
        reserved_at=int(time.time() * 1000) - 60_000,
    )
    assert decide(load_event("register_thing", certificate_id=cert_id(2)), capsys) == (False, "TAKEN")
