"""The `before-send` shortcut hands moto the request moto would build itself: the WSGI environ built
without werkzeug's EnvironBuilder per request (emulator/awsapi/shortcut.py) equals the one
`moto.core.request.normalize_request` builds, for the requests botocore sends (signed and unsigned
DynamoDB, IoT's REST calls), and a request it does not cover goes through moto's own function."""

from __future__ import annotations

from typing import Any

import boto3
import botocore
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto.core.botocore_stubber import MockRawResponse
from moto.core.request import normalize_request

from emulator.awsapi.shortcut import MotoRequests


def _sent(service: str, call: Any, signed: bool = True, url: str = "http://127.0.0.1:5555") -> list[Any]:
    """The prepared requests botocore sends for `call(client)` (answered here, never sent)."""
    config = Config(
        signature_version=None if signed else botocore.UNSIGNED, retries={"total_max_attempts": 1}
    )
    client = boto3.session.Session().client(
        service,
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )
    requests: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        requests.append(request)
        return AWSResponse(request.url, 200, {}, MockRawResponse(b"{}"))

    client.meta.events.register("before-send", answer)
    call(client)
    return requests


def _same_environ(request: Any) -> None:
    ours = MotoRequests().environ(request)
    assert ours is not None
    theirs = normalize_request(request).environ
    assert ours.pop("wsgi.input").getvalue() == theirs.pop("wsgi.input").getvalue() == request.body
    theirs.pop("werkzeug.request")  # the Request object moto built, set by its constructor
    assert ours == theirs
    built = MotoRequests().build(request)
    moto_built = normalize_request(request)
    assert (built.method, built.url, built.data, dict(built.headers), built.raw_url) == (
        moto_built.method,
        moto_built.url,
        moto_built.data,
        dict(moto_built.headers),
        moto_built.raw_url,
    )


@pytest.mark.parametrize("signed", [True, False])
def test_a_dynamodb_request_gets_moto_s_environ(signed: bool) -> None:
    requests = _sent(
        "dynamodb",
        lambda db: db.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "serial#é✓"}},
                        "UpdateExpression": "SET a = :v",
                        "ExpressionAttributeValues": {":v": {"S": "x"}},
                    }
                }
            ]
        ),
        signed=signed,
    )
    assert ("Authorization" in requests[0].headers) is signed
    _same_environ(requests[0])


def test_a_rest_request_with_a_body_gets_moto_s_environ() -> None:
    requests = _sent(
        "iot",
        lambda iot: iot.create_thing(thingName="thing-1", attributePayload={"attributes": {"a": "b"}}),
        url="http://127.0.0.1:5555/base/",
    )
    assert requests[0].url.endswith("/things/thing-1")
    _same_environ(requests[0])


def test_requests_it_does_not_cover_go_through_moto_s_own_function() -> None:
    bodiless = _sent("iot", lambda iot: iot.update_certificate(certificateId="a" * 64, newStatus="INACTIVE"))
    assert "?newStatus=INACTIVE" in bodiless[0].url and not bodiless[0].body
    assert MotoRequests().environ(bodiless[0]) is None
    built = MotoRequests().build(bodiless[0])
    assert (built.method, built.url, built.args["newStatus"]) == ("PUT", bodiless[0].url, "INACTIVE")

    [request] = _sent("dynamodb", lambda db: db.list_tables())
    assert MotoRequests().environ(request) is not None
    request.headers["X-Same"], request.headers["X_Same"] = "1", "2"  # one WSGI key: werkzeug joins them
    assert MotoRequests().environ(request) is None
    [request] = _sent("dynamodb", lambda db: db.list_tables())
    request.headers["X-Broken"] = "a\r\nb"  # werkzeug refuses it
    assert MotoRequests().environ(request) is None
