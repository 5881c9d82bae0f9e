"""botocore in the hook process (emulator/registry/botocore_local.py): DynamoDB calls to the process's own
moto go unsigned, and nothing else changes. Calls to any other endpoint and to other services are still
signed, client-side parameter validation still refuses a bad request, and the unsigned calls are served
in the region the shortcut was given (no credential scope names it). The same requests get the same
answers signed and unsigned: tests/emulator/test_moto_dynamodb.py (its `hook` transport)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import botocore.handlers
import pytest
from moto.dynamodb.models import dynamodb_backends  # (importing moto adds its stubber to botocore's handlers)

from emulator.awsapi.server import LocalAwsServer
from emulator.registry import botocore_local
from emulator.registry.store import LOCAL_ACCOUNT_ID

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-2"  # not moto's default: a request served in the wrong region would show


def test_botocore_is_the_pinned_version() -> None:
    assert version("botocore") == botocore_local.BOTOCORE_VERSION, "re-check botocore's signing events"
    pinned = re.search(r'"botocore==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert pinned is not None and pinned.group(1) == botocore_local.BOTOCORE_VERSION


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAwsServer]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    before = list(botocore.handlers.BUILTIN_HANDLERS)
    local = LocalAwsServer(threading.RLock())
    local.start()
    local.install_shortcut(region=REGION)
    assert botocore_local.install(local.url, enabled=True)
    yield local
    botocore_local.uninstall(local.url)
    local.stop()
    assert botocore.handlers.BUILTIN_HANDLERS == before  # later sessions sign again


def _client(service: str, url: str) -> tuple[Any, list[dict[str, str]]]:
    """A client (of a session created now) and the headers of every request it sends."""
    import boto3

    client = boto3.session.Session().client(service, endpoint_url=url, region_name=REGION)
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send", record)
    return client, sent


def test_local_dynamodb_calls_are_unsigned_and_served_in_the_shortcuts_region(server: LocalAwsServer) -> None:
    db, sent = _client("dynamodb", server.url)
    db.create_table(
        TableName="unsigned",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    try:
        db.put_item(TableName="unsigned", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
        assert db.get_item(TableName="unsigned", Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "1"}
        with pytest.raises(db.exceptions.ResourceNotFoundException):
            db.get_item(TableName="missing", Key={"pk": {"S": "a"}})
        assert len(sent) == 4 and not any("Authorization" in headers for headers in sent)
        assert "unsigned" in dynamodb_backends[LOCAL_ACCOUNT_ID][REGION].tables
        assert "unsigned" not in dynamodb_backends[LOCAL_ACCOUNT_ID]["us-east-1"].tables
    finally:
        db.delete_table(TableName="unsigned")


def test_other_services_and_endpoints_stay_signed(server: LocalAwsServer) -> None:
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    iot, iot_sent = _client("iot", server.url)
    iot.list_things()
    assert "Credential=testing/" in iot_sent[0]["Authorization"]

    elsewhere, sent = _client("dynamodb", "http://127.0.0.1:9")  # never reached: answered below

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {}, MockRawResponse(b'{"TableNames": []}'))

    elsewhere.meta.events.register("before-send", answer)
    assert elsewhere.list_tables()["TableNames"] == []
    assert f"/{REGION}/dynamodb/aws4_request" in sent[0]["Authorization"]


def test_client_side_parameter_validation_stays_on(server: LocalAwsServer) -> None:
    from botocore.exceptions import ParamValidationError

    db, sent = _client("dynamodb", server.url)
    with pytest.raises(ParamValidationError, match="Key.pk.S"):
        db.get_item(TableName="t", Key={"pk": {"S": 123}})
    with pytest.raises(ParamValidationError, match="Key"):
        db.get_item(TableName="t")
    assert sent == []  # refused before anything was sent


def test_nothing_changes_when_turned_off_or_on_another_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    before = list(botocore.handlers.BUILTIN_HANDLERS)
    assert botocore_local.install("http://127.0.0.1:1", enabled=False) is False
    monkeypatch.setenv("EMULATOR_FAST_PATHS", "off")
    assert botocore_local.install("http://127.0.0.1:2") is False
    monkeypatch.setattr(botocore_local, "version", lambda name: "0.0.0")
    assert botocore_local.install("http://127.0.0.1:3", enabled=True) is False
    assert botocore.handlers.BUILTIN_HANDLERS == before
    for port in (1, 2, 3):
        botocore_local.uninstall(f"http://127.0.0.1:{port}")
