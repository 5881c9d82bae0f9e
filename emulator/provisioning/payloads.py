"""Request decoding and reply encoding for the fleet-provisioning topics, in `json` and `cbor`.

Field names are AWS's (fleet-provision-api); CBOR uses the same keys as a map with text keys.
Every decoding problem is an `InvalidPayload` (400) whose message names the field and the rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cbor2

from emulator.provisioning.errors import (
    InvalidCertificateOwnershipToken,
    InvalidParameters,
    InvalidPayload,
    PayloadTooLarge,
)

MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT's MQTT message size limit
# The control-plane RegisterThing API's limits; whether the MQTT API applies them is UNCONFIRMED,
# but a device that exceeds them would fail against AWS's control plane, so refuse them here too.
MAX_PARAMETER_KEY = 2048
MAX_PARAMETER_VALUE = 4096


class PayloadFormat(StrEnum):
    JSON = "json"
    CBOR = "cbor"


def decode_map(payload: bytes, fmt: PayloadFormat, *, allow_empty: bool = False) -> dict[str, Any]:
    """The payload as a map with text keys; an empty payload is `{}` where the operation allows it."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"Payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    if not payload:
        if allow_empty:
            return {}
        raise InvalidPayload(f"Payload is empty; expected a {fmt.value.upper()} object")
    if fmt is PayloadFormat.JSON:
        try:
            value = json.loads(payload.decode("utf-8"))
        # ValueError covers JSONDecodeError, UnicodeDecodeError and Python's integer-digit limit
        # (a 5,000-digit number); RecursionError is nesting deeper than the decoder's stack.
        except (ValueError, RecursionError) as exc:
            raise InvalidPayload(f"Payload is not valid JSON: {str(exc)[:200]}") from None
    else:
        try:
            value = cbor2.loads(payload)
        except Exception as exc:  # cbor2 raises several types for malformed input
            raise InvalidPayload(f"Payload is not valid CBOR: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidPayload(f"Payload must be a {fmt.value.upper()} object (a map with text keys)")
    return value


def encode(body: dict[str, Any], fmt: PayloadFormat) -> bytes:
    if fmt is PayloadFormat.JSON:
        return json.dumps(body, separators=(",", ":")).encode()
    return cbor2.dumps(body)


@dataclass(frozen=True)
class CreateCertificateFromCsrRequest:
    certificate_signing_request: str

    @classmethod
    def decode(cls, payload: bytes, fmt: PayloadFormat) -> CreateCertificateFromCsrRequest:
        body = decode_map(payload, fmt)
        csr = body.get("certificateSigningRequest")
        if csr is None:
            raise InvalidPayload("Missing required field: certificateSigningRequest")
        if not isinstance(csr, str) or not csr.strip():
            raise InvalidPayload("certificateSigningRequest must be a non-empty string holding a PEM CSR")
        return cls(csr)


@dataclass(frozen=True)
class RegisterThingRequest:
    certificate_ownership_token: str
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def decode(cls, payload: bytes, fmt: PayloadFormat) -> RegisterThingRequest:
        body = decode_map(payload, fmt)
        token = body.get("certificateOwnershipToken")
        if token is None or token == "":
            # The exact message AWS answers (aws-iot-device-sdk-js-v2#69).
            raise InvalidCertificateOwnershipToken("Certificate ownership token cannot be empty.")
        if not isinstance(token, str):
            raise InvalidPayload("certificateOwnershipToken must be a string")
        raw = body.get("parameters")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidPayload("parameters must be an object of string keys to string values")
        parameters: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidPayload(f"parameters.{key} must be a string (parameters map strings to strings)")
            if not key or len(key) > MAX_PARAMETER_KEY:
                raise InvalidParameters(f"Parameter name must be 1-{MAX_PARAMETER_KEY} characters")
            if len(value) > MAX_PARAMETER_VALUE:
                raise InvalidParameters(f"Parameter {key} exceeds {MAX_PARAMETER_VALUE} characters")
            parameters[key] = value
        return cls(token, parameters)


@dataclass(frozen=True)
class CreateKeysAndCertificateAccepted:
    certificate_id: str
    certificate_pem: str
    private_key: str
    certificate_ownership_token: str

    def body(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "certificatePem": self.certificate_pem,
            "privateKey": self.private_key,
            "certificateOwnershipToken": self.certificate_ownership_token,
        }


@dataclass(frozen=True)
class CreateCertificateFromCsrAccepted:
    certificate_id: str
    certificate_pem: str
    certificate_ownership_token: str

    def body(self) -> dict[str, Any]:
        return {
            "certificateOwnershipToken": self.certificate_ownership_token,
            "certificateId": self.certificate_id,
            "certificatePem": self.certificate_pem,
        }


@dataclass(frozen=True)
class RegisterThingAccepted:
    thing_name: str | None
    device_configuration: dict[str, str]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"deviceConfiguration": dict(self.device_configuration)}
        if self.thing_name is not None:  # a template without a Thing returns none (UNCONFIRMED)
            body["thingName"] = self.thing_name
        return body


@dataclass(frozen=True)
class Rejected:
    status_code: int
    error_code: str
    error_message: str

    def body(self) -> dict[str, Any]:
        return {
            "statusCode": self.status_code,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
        }


Accepted = CreateKeysAndCertificateAccepted | CreateCertificateFromCsrAccepted | RegisterThingAccepted
Reply = Accepted | Rejected


def reply_topic(request_topic: str, reply: Reply) -> str:
    return f"{request_topic}/{'rejected' if isinstance(reply, Rejected) else 'accepted'}"
