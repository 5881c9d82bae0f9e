"""AWS's JSON error answer, for the errors the AWS API front end gives itself.

botocore reads the error code from the `x-amzn-ErrorType` header or the body's `__type`, and the
message from `message`; both are set. None of the statuses used here is one botocore retries
(500, 502, 503, 504, 509, 429 and the throttling codes, botocore/data/_retry.json), except 503 where a
retry is what the caller should do.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from xml.sax.saxutils import escape

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class AwsApiError(Exception):
    """An answer in AWS's error shape: HTTP status, error code, message, and extra members."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


def not_emulated(what: str) -> AwsApiError:
    """501: not retried by botocore or the AWS CLI, and says what is missing."""
    return AwsApiError(501, "NotImplemented", f"{what} is not emulated by the fleet-provisioning emulator")


def json_response(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) for a JSON answer."""
    payload = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **(headers or {})}
    return f"{status} {REASONS.get(status, 'OK')}", list(all_headers.items()), payload


def error_response(error: AwsApiError, protocol: str = "json") -> tuple[str, list[tuple[str, str]], bytes]:
    """The error as the caller's SDK parses it: JSON (json, rest-json), or XML (query, rest-xml, ec2)
    for a service the endpoint does not serve, so that its SDK still shows the code and message."""
    if protocol in ("query", "rest-xml", "ec2"):
        error_xml = (
            f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
        )
        if protocol == "ec2":
            document = f"<Response><Errors>{error_xml}</Errors><RequestID>emulator</RequestID></Response>"
        else:
            document = f"<ErrorResponse>{error_xml}<RequestId>emulator</RequestId></ErrorResponse>"
        payload = document.encode()
        headers = [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))]
        return f"{error.status} {REASONS.get(error.status, 'Error')}", headers, payload
    body = {"__type": error.code, "message": error.message, **error.fields}
    return json_response(error.status, body, {"x-amzn-ErrorType": error.code})


@functools.lru_cache(maxsize=256)  # signing names come from clients: bounded
def protocol_of(service: str) -> str | None:
    """The wire protocol of a service by its signing name, from botocore's models (None if unknown)."""
    import botocore.loaders
    import botocore.session

    aliases = {"monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions"}
    name = aliases.get(service, service)
    if name not in botocore.session.get_session().get_available_services():
        return None
    model = botocore.loaders.create_loader().load_service_model(name, "service-2")
    return str(model.get("metadata", {}).get("protocol", "json"))
