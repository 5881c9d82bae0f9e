from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.hook.support import HOOK_ENV, REGION, TABLE, create_table


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    ):
        monkeypatch.setenv(name, HOOK_ENV[name])


@pytest.fixture
def table(aws_env: None) -> Iterator[Any]:
    """moto with the serial table; yields a DynamoDB client. Commands target it with --table/--region."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client)
        yield client


TARGET = ["--table", TABLE, "--region", REGION]
