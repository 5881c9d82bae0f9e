from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from provisioning_hook import registry_dynamodb

from .support import CLAIM_ID, HOOK_ENV, OTHER_CLAIM_ID, REGION, create_table, register_claim


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_IOT", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in HOOK_ENV.items():
        monkeypatch.setenv(name, value)
    registry_dynamodb.reset_clients()
    yield
    registry_dynamodb.reset_clients()


REAL_DECISION_BUDGET_S = registry_dynamodb.DECISION_BUDGET_S


@pytest.fixture
def dynamodb(hook_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB and IoT with the serial table and the events' two claim certificates (ACTIVE);
    yields a low-level DynamoDB client.

    In-process moto cannot hang, but on a loaded CI machine its calls can be slow enough to exhaust the
    hook's 3 s budget and turn a rule test into REGISTRY_ERROR. Rule tests get a wide budget; the
    budget itself is tested in test_timeouts.py with REAL_DECISION_BUDGET_S.
    """
    monkeypatch.setattr(registry_dynamodb, "DECISION_BUDGET_S", 30.0)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client)
        iot = boto3.client("iot", region_name=REGION)
        for claim in (CLAIM_ID, OTHER_CLAIM_ID):
            register_claim(iot, claim)
        yield client


@pytest.fixture
def iot(dynamodb: Any) -> Any:
    return boto3.client("iot", region_name=REGION)
