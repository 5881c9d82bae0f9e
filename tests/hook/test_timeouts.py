"""A hung or unreachable DynamoDB or IoT: the hook denies, and never starts a call its budget cannot hold.

What the hook controls is its own clock: it starts an attempt only while a whole attempt (connect + read
time-out) still fits in its decision budget, and each attempt is bounded by the clients' time-outs. These
tests check that accounting on the hook's clock (`DynamoDBRegistry.attempts`), which a loaded machine
cannot break; the wall-time bounds only catch a real hang. A wall-time bound of 4 s failed at 4.4-5.5 s on
a busy 2-core machine while the hook did exactly what it should.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from provisioning_hook import registry_dynamodb
from provisioning_hook.decision import RegistryError
from provisioning_hook.registry_dynamodb import DynamoDBRegistry

from .conftest import REAL_DECISION_BUDGET_S
from .support import TABLE, cert_id, decision_log, hung_endpoint, load_event, put_serial, run_hook

HANG_GUARD_S = 30.0  # a real hang, not a slow machine
WORST_ATTEMPT_S = registry_dynamodb._attempt_worst_s()


def assert_within_budget(registry: DynamoDBRegistry, started: float, budget_s: float) -> None:
    """Every attempt started while a whole attempt still fitted before the deadline, on the hook's clock."""
    deadline = started + budget_s
    assert registry.attempts, "the hook never tried"
    for start, end in registry.attempts:
        assert start <= deadline - WORST_ATTEMPT_S + 1e-6, (start - started, registry.attempts)
        assert end >= start


def test_hung_dynamodb_denies_within_the_budget(
    hook_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hung_endpoint() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        registry_dynamodb.reset_clients()
        wall = time.monotonic()
        response, out = run_hook(load_event("register_thing"), capsys)
        assert time.monotonic() - wall < HANG_GUARD_S
        log = decision_log(out)[0]
        assert response == {"allowProvisioning": False, "parameterOverrides": {}}
        assert log["reason"] == "REGISTRY_ERROR" and "ReadTimeoutError" in log["detail"], log

        registry = DynamoDBRegistry(TABLE)  # the same code path, looked at from inside
        started = registry._deadline - REAL_DECISION_BUDGET_S
        with pytest.raises(RegistryError, match="ReadTimeoutError"):
            registry.get_serial("SN-000001")
    assert_within_budget(registry, started, REAL_DECISION_BUDGET_S)
    # Each attempt waited on the hung server (the read time-out), it did not give up at once.
    assert all(end - start >= registry_dynamodb.READ_TIMEOUT_S * 0.9 for start, end in registry.attempts)


def test_hung_iot_denies_within_the_budget(
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
        response, out = run_hook(load_event("register_thing", certificate_id=cert_id(2)), capsys)
        assert response["allowProvisioning"] is False
        log = decision_log(out)[0]
        assert log["reason"] == "REGISTRY_ERROR" and log["detail"].startswith("iot.describe_certificate"), log

        registry = DynamoDBRegistry(TABLE)
        started = registry._deadline - REAL_DECISION_BUDGET_S
        with pytest.raises(RegistryError, match="iot.describe_certificate"):
            registry.certificate_status(cert_id(1))
    assert_within_budget(registry, started, REAL_DECISION_BUDGET_S)


def test_unreachable_endpoint_denies(
    hook_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    wall = time.monotonic()
    response, out = run_hook(load_event("register_thing"), capsys)
    assert time.monotonic() - wall < HANG_GUARD_S
    assert response["allowProvisioning"] is False and decision_log(out)[0]["reason"] == "REGISTRY_ERROR"


class SteppingClock:
    """A clock that moves only when told: the budget's arithmetic, free of the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_attempt_starts_once_a_whole_attempt_no_longer_fits(
    hook_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SteppingClock()
    registry = DynamoDBRegistry(TABLE, budget_s=REAL_DECISION_BUDGET_S, clock=clock)
    calls: list[float] = []

    class Failing:
        """Every attempt fails after costing the worst an attempt may cost, by the hook's clock."""

        def get_item(self, **_: Any) -> Any:
            from botocore.exceptions import ReadTimeoutError

            calls.append(clock.now)
            clock.now += WORST_ATTEMPT_S
            raise ReadTimeoutError(endpoint_url="http://hung")

    monkeypatch.setattr(registry_dynamodb, "client", lambda service: Failing())
    monkeypatch.setattr(registry_dynamodb.time, "sleep", lambda seconds: None)
    with pytest.raises(RegistryError, match=re.escape("out of time after 2 attempt(s)")):
        registry.get_serial("SN-000001")
    # 3.0 s budget, 1.3 s per attempt: attempts at +0 and +1.3 fit, a third at +2.6 would end at +3.9.
    assert [round(t - 1000.0, 6) for t in calls] == [0.0, round(WORST_ATTEMPT_S, 6)]
    assert REAL_DECISION_BUDGET_S < 3 * WORST_ATTEMPT_S


@pytest.mark.parametrize("budget_s", [0.0, WORST_ATTEMPT_S - 0.01])
def test_a_budget_too_small_for_one_attempt_asks_nothing(
    hook_env: None, monkeypatch: pytest.MonkeyPatch, budget_s: float
) -> None:
    clock: Callable[[], float] = SteppingClock()
    registry = DynamoDBRegistry(TABLE, budget_s=budget_s, clock=clock)
    monkeypatch.setattr(registry_dynamodb, "client", lambda service: pytest.fail("no call may start"))
    with pytest.raises(RegistryError, match="out of time after 0 attempt"):
        registry.get_serial("SN-000001")
    assert registry.attempts == []
