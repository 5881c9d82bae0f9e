"""Stale reservations: taken over only after the timeout, and only if the old certificate never became
anything (gone, or still PENDING_ACTIVATION): never from an ACTIVE, INACTIVE or REVOKED one."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from .support import (
    cert_id,
    decision_log,
    device_certificate_pem,
    get_certificate_item,
    get_serial_item,
    load_event,
    put_serial,
    run_hook,
)

STALE_MS = 901_000  # RESERVATION_TIMEOUT_S is 900


def decide(event: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    response, out = run_hook(event, capsys)
    log = decision_log(out)[0]
    if log["reason"] == "REGISTRY_ERROR":
        print("REGISTRY_ERROR detail:", log["detail"], file=sys.stderr)
    return bool(response["allowProvisioning"]), log["reason"]


def moto_certificate(iot: Any, *, active: bool) -> str:
    return iot.create_keys_and_certificate(setAsActive=active)["certificateId"]  # type: ignore[no-any-return]


def pending_certificate(iot: Any) -> str:
    pem = device_certificate_pem("SN-000001", "pending-device")
    reply = iot.register_certificate_without_ca(certificatePem=pem, status="PENDING_ACTIVATION")
    return reply["certificateId"]  # type: ignore[no-any-return]


def test_stale_reservation_of_pending_certificate_is_taken_over(
    iot: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    old = pending_certificate(iot)
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
    assert set(item["certificate_ids"]["SS"]) == {cert_id(2)}
    # The history: the old certificate's reservation ended, the new one holds the serial.
    retired = get_certificate_item(dynamodb, old)
    assert retired is not None and retired["retired_reason"]["S"] == "taken_over_stale"
    held = get_certificate_item(dynamodb, cert_id(2))
    assert held is not None and (held["serial"]["S"], held["issued_reason"]["S"]) == ("SN-000001", "takeover")
    # The new holder is now fresh: the old certificate cannot come back and take it.
    assert decide(load_event("register_thing", certificate_id=old), capsys) == (False, "TAKEN")


@pytest.mark.parametrize("active", [True, False])
def test_stale_reservation_of_a_certificate_an_operator_set_is_kept(
    iot: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str], active: bool
) -> None:
    """ACTIVE: the device was provisioned. INACTIVE: an operator deactivated it, which must not hand its
    serial to whoever holds the claim once the reservation is old."""
    old = moto_certificate(iot, active=active)
    put_serial(
        dynamodb,
        "SN-000001",
        status="RESERVED",
        certificate_id=old,
        reserved_at=int(time.time() * 1000) - STALE_MS,
    )
    assert decide(load_event("register_thing", certificate_id=cert_id(2)), capsys) == (False, "TAKEN")
    assert get_serial_item(dynamodb, "SN-000001")["certificate_id"]["S"] == old  # type: ignore[index]


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
