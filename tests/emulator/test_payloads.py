"""Request decoding (JSON and CBOR) and reply encoding: every malformed input is a clear 400."""

from __future__ import annotations

import json

import cbor2
import pytest

from emulator.provisioning.errors import (
    InvalidCertificateOwnershipToken,
    InvalidParameters,
    InvalidPayload,
    PayloadTooLarge,
)
from emulator.provisioning.payloads import (
    MAX_PAYLOAD_BYTES,
    CreateCertificateFromCsrRequest,
    PayloadFormat,
    RegisterThingAccepted,
    RegisterThingRequest,
    Rejected,
    decode_map,
    encode,
    reply_topic,
)

JSON, CBOR = PayloadFormat.JSON, PayloadFormat.CBOR


def as_fmt(body: object, fmt: PayloadFormat) -> bytes:
    return json.dumps(body).encode() if fmt is JSON else cbor2.dumps(body)


@pytest.mark.parametrize("fmt", [JSON, CBOR])
def test_register_thing_request_round_trip(fmt: PayloadFormat) -> None:
    body = {"certificateOwnershipToken": "tok", "parameters": {"SerialNumber": "SN1"}}
    request = RegisterThingRequest.decode(as_fmt(body, fmt), fmt)
    assert request == RegisterThingRequest("tok", {"SerialNumber": "SN1"})


@pytest.mark.parametrize("fmt", [JSON, CBOR])
def test_parameters_are_optional(fmt: PayloadFormat) -> None:
    assert RegisterThingRequest.decode(as_fmt({"certificateOwnershipToken": "t"}, fmt), fmt).parameters == {}


@pytest.mark.parametrize("fmt", [JSON, CBOR])
@pytest.mark.parametrize("body", [{}, {"certificateOwnershipToken": ""}, {"parameters": {}}])
def test_missing_token_is_aws_message(fmt: PayloadFormat, body: dict[str, object]) -> None:
    with pytest.raises(
        InvalidCertificateOwnershipToken, match="^Certificate ownership token cannot be empty.$"
    ):
        RegisterThingRequest.decode(as_fmt(body, fmt), fmt)


@pytest.mark.parametrize("fmt", [JSON, CBOR])
@pytest.mark.parametrize(
    "body, message",
    [
        ({"certificateOwnershipToken": 5}, "certificateOwnershipToken must be a string"),
        ({"certificateOwnershipToken": "t", "parameters": ["a"]}, "parameters must be an object"),
        (
            {"certificateOwnershipToken": "t", "parameters": {"SerialNumber": 12}},
            "parameters.SerialNumber must be",
        ),
        ({"certificateOwnershipToken": "t", "parameters": {"A": None}}, "parameters.A must be"),
    ],
)
def test_wrong_types_are_invalid_payload(fmt: PayloadFormat, body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPayload, match=message) as info:
        RegisterThingRequest.decode(as_fmt(body, fmt), fmt)
    assert info.value.status_code == 400


def test_oversized_parameter_value_is_invalid_parameters() -> None:
    body = {"certificateOwnershipToken": "t", "parameters": {"A": "x" * 4097}}
    with pytest.raises(InvalidParameters):
        RegisterThingRequest.decode(as_fmt(body, JSON), JSON)


@pytest.mark.parametrize(
    "payload, fmt, message",
    [
        (b"{not json", JSON, "not valid JSON"),
        (b"\xff\xfe", JSON, "not valid JSON"),
        (b"[1, 2]", JSON, "must be a JSON object"),
        (b"\x9f", CBOR, "not valid CBOR"),  # an indefinite array that never ends
        (cbor2.dumps([1]), CBOR, "must be a CBOR object"),
        (cbor2.dumps({1: "a"}), CBOR, "text keys"),
        (b"", JSON, "empty"),
    ],
)
def test_malformed_payloads(payload: bytes, fmt: PayloadFormat, message: str) -> None:
    with pytest.raises(InvalidPayload, match=message) as info:
        decode_map(payload, fmt)
    assert info.value.status_code == 400


def test_payload_over_128_kb_is_rejected_before_parsing() -> None:
    payload = json.dumps({"certificateSigningRequest": "x" * MAX_PAYLOAD_BYTES}).encode()
    with pytest.raises(PayloadTooLarge) as info:
        CreateCertificateFromCsrRequest.decode(payload, JSON)
    assert info.value.status_code == 400 and "131" in info.value.message


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "Missing required field: certificateSigningRequest"),
        ({"certificateSigningRequest": 3}, "must be a non-empty string"),
    ],
)
def test_csr_request_fields(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPayload, match=message):
        CreateCertificateFromCsrRequest.decode(as_fmt(body, JSON), JSON)


def test_empty_payload_allowed_where_the_operation_takes_none() -> None:
    assert decode_map(b"", JSON, allow_empty=True) == {}


@pytest.mark.parametrize("fmt", [JSON, CBOR])
def test_replies_encode_in_the_request_format(fmt: PayloadFormat) -> None:
    accepted = RegisterThingAccepted("device-1", {"k": "v"})
    decoded = (
        json.loads(encode(accepted.body(), fmt)) if fmt is JSON else cbor2.loads(encode(accepted.body(), fmt))
    )
    assert decoded == {"thingName": "device-1", "deviceConfiguration": {"k": "v"}}
    rejected = Rejected(400, "InvalidPayload", "bad")
    assert rejected.body() == {"statusCode": 400, "errorCode": "InvalidPayload", "errorMessage": "bad"}
    topic = f"$aws/provisioning-templates/T/provision/{fmt.value}"
    assert reply_topic(topic, accepted) == topic + "/accepted"
    assert reply_topic(topic, rejected) == topic + "/rejected"
