"""A hung DynamoDB or IoT (accepts the connection, never answers): the hook still denies within 4 s."""

from __future__ import annotations

import time
from typing import Any

import pytest
from provisioning_hook import registry_dynamodb

from .conftest import REAL_DECISION_BUDGET_S
from .support import cert_id, decision_log, hung_endpoint, load_event, put_serial, run_hook

LIMIT_S = 4.0


def test_hung_dynamodb_denies_in_time(
    hook_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hung_endpoint() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        registry_dynamodb.reset_clients()
        started = time.monotonic()
        response, out = run_hook(load_event("register_thing"), capsys)
        elapsed = time.monotonic() - started
    assert response == {"allowProvisioning": False, "parameterOverrides": {}}
    log = decision_log(out)[0]
    assert log["reason"] == "REGISTRY_ERROR" and "ReadTimeoutError" in log["detail"], log
    assert 0.5 < elapsed < LIMIT_S  # it did wait on the hung server, and gave up in time


def test_hung_iot_denies_a_takeover_in_time(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(
        dynamodb,
        "SN-000001",
        status="RESERVED",
        certificate_id=cert_id(1),
        reserved_at=int(time.time() * 1000) - 3_600_000,
    )
    monkeypatch.setattr(registry_dynamodb, "DECISION_BUDGET_S", REAL_DECISION_BUDGET_S)
    with hung_endpoint() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_IOT", url)  # DynamoDB stays on moto
        registry_dynamodb.reset_clients()
        started = time.monotonic()
        response, out = run_hook(load_event("register_thing", certificate_id=cert_id(2)), capsys)
        elapsed = time.monotonic() - started
    assert response["allowProvisioning"] is False
    log = decision_log(out)[0]
    assert log["reason"] == "REGISTRY_ERROR" and log["detail"].startswith("iot.describe_certificate"), log
    assert 0.5 < elapsed < LIMIT_S


def test_unreachable_endpoint_denies_quickly(
    hook_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    response, out = run_hook(load_event("register_thing"), capsys)
    assert response["allowProvisioning"] is False and decision_log(out)[0]["reason"] == "REGISTRY_ERROR"
    assert time.monotonic() - started < LIMIT_S
