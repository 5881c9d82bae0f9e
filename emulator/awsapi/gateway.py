"""What `aws_endpoint_url` answers, before moto sees a request.

- moto's own routes (`/moto-api/...`: reset, seed, state; the instance-metadata stand-in) are refused
  with 404 (`server.refused_route`): any local process could otherwise wipe the registry with one POST.
- Each request's service (its SigV4 signing name) and action (botocore's model, through moto's router)
  are resolved once. The emulator's own actions (the provisioning-template control plane,
  CreateProvisioningClaim, DescribeEndpoint) are answered here; the actions moto implements for the
  served services go to moto; anything else gets at once a JSON 501 naming the action. 501 is not a
  status botocore or the AWS CLI retries: no 48-line traceback and no 11 s of retries, as moto gave.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from emulator.awsapi.errors import AwsApiError, error_response, json_response, not_emulated
from emulator.awsapi.server import refuse_route, refused_route, signing_name
from emulator.logsafe import quoted

log = logging.getLogger("emulator.aws")

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
SERVICE_NAMES = {"iot": "AWS IoT", "dynamodb": "DynamoDB", "sts": "STS"}
# DynamoDB's own request limit (BatchWriteItem); nothing served here takes more. A bigger body is
# refused before it is read, so no client can make the server buffer an unbounded one.
MAX_BODY_BYTES = 16 * 1024 * 1024
# The IoT actions the emulator answers itself (control_plane.py); moto has none of them but
# DescribeEndpoint, whose random host name is not where the emulator listens.
EMULATOR_IOT_ACTIONS = frozenset(
    {
        "CreateProvisioningTemplate",
        "DescribeProvisioningTemplate",
        "ListProvisioningTemplates",
        "UpdateProvisioningTemplate",
        "DeleteProvisioningTemplate",
        "CreateProvisioningTemplateVersion",
        "ListProvisioningTemplateVersions",
        "DescribeProvisioningTemplateVersion",
        "DeleteProvisioningTemplateVersion",
        "CreateProvisioningClaim",
        "DescribeEndpoint",
    }
)


def _moto_handlers() -> dict[str, type]:
    """The moto response class of each served service: an action is moto's if it has the method."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.iot.responses import IoTResponse
    from moto.sts.responses import TokenResponse

    return {"iot": IoTResponse, "dynamodb": DynamoHandler, "sts": TokenResponse}


@dataclass(frozen=True)
class ApiRequest:
    """One resolved request: the action, its URI labels, query string and JSON body."""

    service: str
    operation: str
    uri_params: Mapping[str, str]
    query: Mapping[str, str]
    body: Mapping[str, Any]


class ControlPlane(Protocol):
    def handles(self, service: str, operation: str) -> bool: ...
    def handle(self, request: ApiRequest) -> tuple[int, Any]: ...


def signing_service(environ: Mapping[str, Any]) -> str | None:
    """The service a request is for: its SigV4 credential scope, else DynamoDB's target header."""
    service = signing_name(environ.get("HTTP_AUTHORIZATION", ""))
    if service:
        return service.lower()
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
        return "dynamodb"
    return None


class AwsGateway:
    """The WSGI application at `aws_endpoint_url`; `inner` is moto behind the registry's lock."""

    def __init__(
        self, inner: WsgiApp, control_plane: ControlPlane, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self._inner = inner
        self._control_plane = control_plane
        self._on_change = on_change
        self._moto = _moto_handlers()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            # Read whole before any answer, refusals included: a keep-alive connection stays in step.
            body = _read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            return self._serve(environ, start_response, body)
        except AwsApiError as error:
            status, headers, body = error_response(error, _protocol(environ))
        except Exception:
            method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            log.exception("AWS API: %s %s failed", quoted(method), quoted(path))
            status, headers, body = error_response(
                AwsApiError(500, "InternalFailureException", "An unexpected error has occurred")
            )
        start_response(status, headers)
        return [body]

    def _serve(self, environ: dict[str, Any], start_response: Any, body: bytes) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if refused_route(path):
            return refuse_route(environ, start_response)
        service = signing_service(environ)
        if service is None:
            raise AwsApiError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if service not in self._moto:
            served = ", ".join(sorted(self._moto))
            log.info("AWS API: %s is not emulated (501)", quoted(service[:40]))
            raise AwsApiError(
                501,
                "NotImplemented",
                f"The {service[:40]} API is not emulated: aws_endpoint_url serves {served}",
            )
        operation, uri_params = self._resolve(service, environ, body)
        method = environ.get("REQUEST_METHOD", "GET")
        if self._control_plane.handles(service, operation):
            request = ApiRequest(service, operation, uri_params, _query(environ), _json(body))
            status, answer = self._control_plane.handle(request)
            if method not in ("GET", "HEAD"):
                self._on_change()
            line, headers, payload = json_response(status, answer)
            start_response(line, headers)
            return [payload]
        if not hasattr(self._moto[service], _snake(operation)):
            log.info("AWS API: %s %s is not emulated (501)", SERVICE_NAMES[service], operation)
            raise not_emulated(f"{SERVICE_NAMES[service]} action {operation}")
        environ["wsgi.input"] = io.BytesIO(body)
        return self._inner(environ, start_response)

    @staticmethod
    def _resolve(service: str, environ: dict[str, Any], body: bytes) -> tuple[str, dict[str, str]]:
        from moto.core.request import Request
        from moto.core.routing import get_service_router

        probe = dict(environ)
        probe["wsgi.input"] = io.BytesIO(body)
        try:
            operation, uri_params = get_service_router(service).match(Request(probe))
        except Exception:
            raise AwsApiError(
                404,
                "UnknownOperationException",
                f"No {SERVICE_NAMES[service]} action for {environ.get('REQUEST_METHOD')} "
                f"{str(environ.get('PATH_INFO', ''))[:80]}",
            ) from None
        return operation.name, {k: str(v) for k, v in (uri_params or {}).items()}


def _protocol(environ: Mapping[str, Any]) -> str:
    """How the caller expects an error: by its service's protocol, else by its content type."""
    from emulator.awsapi.errors import protocol_of

    service = signing_service(environ)
    known = protocol_of(service) if service else None
    if known is not None:
        return known
    if str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        return "query"
    return "json"


def _snake(name: str) -> str:
    from moto.core.utils import camelcase_to_underscores

    return str(camelcase_to_underscores(name))


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise AwsApiError(400, "InvalidRequestException", "Content-Length is not a number") from None
    if length > MAX_BODY_BYTES:
        raise AwsApiError(
            413, "RequestEntityTooLargeException", f"Request bodies are limited to {MAX_BODY_BYTES} bytes"
        )
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _query(environ: Mapping[str, Any]) -> dict[str, str]:
    parsed = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _json(body: bytes) -> dict[str, Any]:
    import json

    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise AwsApiError(400, "SerializationException", "The request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise AwsApiError(400, "SerializationException", "The request body must be a JSON object")
    return value
