"""Nothing from one invocation decides the next: an allow followed by an invalid event is a deny."""

from __future__ import annotations

from typing import Any

import pytest

from .support import cert_id, decision_log, load_event, put_serial, run_hook


def test_allow_then_invalid_event_is_denied(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", batch="B1", attributes={"model": "X1"})
    allowed, _ = run_hook(load_event("register_thing", certificate_id=cert_id(1)), capsys)
    assert allowed == {"allowProvisioning": True, "parameterOverrides": {"model": "X1", "Batch": "B1"}}

    follow_ups: list[tuple[Any, str]] = [
        (load_event("malformed_missing_certificate_id"), "MALFORMED_EVENT"),
        ({}, "MALFORMED_EVENT"),
        (None, "MALFORMED_EVENT"),
        (
            load_event(
                "bad_serial_missing",
            ),
            "BAD_SERIAL",
        ),
        (load_event("register_thing", serial="SN-UNKNOWN", certificate_id=cert_id(1)), "UNKNOWN_SERIAL"),
        (load_event("register_thing", certificate_id=cert_id(2)), "TAKEN"),
    ]
    for event, reason in follow_ups:
        response, out = run_hook(event, capsys)
        assert response == {"allowProvisioning": False, "parameterOverrides": {}}, reason
        assert decision_log(out)[0]["reason"] == reason
    # And the legitimate retry still works afterwards.
    again, out = run_hook(load_event("register_thing", certificate_id=cert_id(1)), capsys)
    assert again["allowProvisioning"] is True and decision_log(out)[0]["reason"] == "ALLOWED_RETRY"
