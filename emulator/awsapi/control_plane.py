"""The IoT actions the emulator answers itself, in AWS's request and response shapes (botocore's
`iot` service model): the provisioning-template control plane, CreateProvisioningClaim and
DescribeEndpoint. Like moto's `responses.py`: parse, call the model (`TemplateCatalog`), format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.awsapi.errors import AwsApiError, not_emulated
from emulator.awsapi.gateway import EMULATOR_IOT_ACTIONS, ApiRequest
from emulator.awsapi.trusted_user import TemporaryClaims
from emulator.provisioning.template_catalog import TemplateCatalog
from emulator.provisioning.template_records import CatalogError, TemplateRecord

MAX_RESULTS = 250  # AWS's maximum for both list calls; also the default here (UNCONFIRMED default)
# The MQTT port AWS IoT serves X.509 clients on, and the one the SDKs use when given none. DescribeEndpoint
# answers a bare host, as AWS does, only when the emulator listens there; otherwise `host:port`, so that
# the port is not lost (a caller that splits on ':' gets both; one that does not fails loudly, not
# by connecting to 8883 where nothing listens).
AWS_MQTT_PORT = 8883
SERVED_ENDPOINT_TYPES = (None, "", "iot:Data", "iot:Data-ATS")  # one broker, one CA: the same answer
KNOWN_ENDPOINT_TYPES = ("iot:CredentialProvider", "iot:Jobs")


@dataclass
class MqttAddress:
    """Where devices reach the broker (set once it listens)."""

    host: str = ""
    port: int = 0

    def endpoint_address(self) -> str:
        return self.host if self.port == AWS_MQTT_PORT else f"{self.host}:{self.port}"


class IotControlPlane:
    def __init__(self, *, catalog: TemplateCatalog, claims: TemporaryClaims, mqtt: MqttAddress) -> None:
        self._catalog = catalog
        self._claims = claims
        self._mqtt = mqtt
        self._actions: dict[str, Callable[[ApiRequest], Any]] = {
            "CreateProvisioningTemplate": self._create_template,
            "DescribeProvisioningTemplate": self._describe_template,
            "ListProvisioningTemplates": self._list_templates,
            "UpdateProvisioningTemplate": self._update_template,
            "DeleteProvisioningTemplate": self._delete_template,
            "CreateProvisioningTemplateVersion": self._create_version,
            "ListProvisioningTemplateVersions": self._list_versions,
            "DescribeProvisioningTemplateVersion": self._describe_version,
            "DeleteProvisioningTemplateVersion": self._delete_version,
            "CreateProvisioningClaim": self._create_claim,
            "DescribeEndpoint": self._describe_endpoint,
        }
        assert set(self._actions) == EMULATOR_IOT_ACTIONS

    def handles(self, service: str, operation: str) -> bool:
        return service == "iot" and operation in self._actions

    def handle(self, request: ApiRequest) -> tuple[int, Any]:
        try:
            return 200, self._actions[request.operation](request)
        except CatalogError as error:
            raise AwsApiError(error.status_code, error.error_code, error.message, **error.fields) from None

    # ------------------------------------------------------------------ templates
    def _create_template(self, request: ApiRequest) -> dict[str, Any]:
        record = self._catalog.create(request.body)
        return {
            "templateArn": record.arn,
            "templateName": record.name,
            "defaultVersionId": record.default_version_id,
        }

    def _describe_template(self, request: ApiRequest) -> dict[str, Any]:
        record = self._catalog.describe(_name(request))
        answer = {
            **_summary(record),
            "defaultVersionId": record.default_version_id,
            "templateBody": record.default_version.body_text,
            "provisioningRoleArn": record.role_arn,
        }
        if record.hook_config is not None:
            answer["preProvisioningHook"] = {
                "payloadVersion": record.hook_config.payload_version,
                "targetArn": record.hook_config.target_arn,
            }
        return answer

    def _list_templates(self, request: ApiRequest) -> dict[str, Any]:
        page, next_token = _page(self._catalog.all(), request)
        answer: dict[str, Any] = {"templates": [_summary(r) for r in page]}
        if next_token is not None:
            answer["nextToken"] = next_token
        return answer

    def _update_template(self, request: ApiRequest) -> dict[str, Any]:
        self._catalog.update(_name(request), request.body)
        return {}

    def _delete_template(self, request: ApiRequest) -> dict[str, Any]:
        self._catalog.delete(_name(request))
        return {}

    # ------------------------------------------------------------------ versions
    def _create_version(self, request: ApiRequest) -> dict[str, Any]:
        set_as_default = _boolean(request.query.get("setAsDefault", "false"), "setAsDefault")
        name = _name(request)
        version = self._catalog.create_version(name, request.body.get("templateBody"), set_as_default)
        return {
            "templateArn": self._catalog.arn(name),
            "templateName": name,
            "versionId": version.version_id,
            "isDefaultVersion": set_as_default,
        }

    def _list_versions(self, request: ApiRequest) -> dict[str, Any]:
        default, versions = self._catalog.list_versions(_name(request))
        page, next_token = _page(versions, request)
        answer: dict[str, Any] = {
            "versions": [
                {
                    "versionId": v.version_id,
                    "creationDate": v.created,
                    "isDefaultVersion": v.version_id == default,
                }
                for v in page
            ]
        }
        if next_token is not None:
            answer["nextToken"] = next_token
        return answer

    def _describe_version(self, request: ApiRequest) -> dict[str, Any]:
        is_default, version = self._catalog.describe_version(_name(request), _version_id(request))
        return {
            "versionId": version.version_id,
            "creationDate": version.created,
            "templateBody": version.body_text,
            "isDefaultVersion": is_default,
        }

    def _delete_version(self, request: ApiRequest) -> dict[str, Any]:
        self._catalog.delete_version(_name(request), _version_id(request))
        return {}

    # ------------------------------------------------------------------ claims, endpoint
    def _create_claim(self, request: ApiRequest) -> dict[str, Any]:
        return self._claims.create(_name(request))

    def _describe_endpoint(self, request: ApiRequest) -> dict[str, Any]:
        endpoint_type = request.query.get("endpointType")
        if endpoint_type in KNOWN_ENDPOINT_TYPES:
            raise not_emulated(f"Endpoint type {endpoint_type}")
        if endpoint_type not in SERVED_ENDPOINT_TYPES:
            raise AwsApiError(
                400, "InvalidRequestException", f"Endpoint type {endpoint_type[:64]} is not valid"
            )
        if not self._mqtt.port:
            raise AwsApiError(503, "ServiceUnavailableException", "The MQTT endpoint is not listening yet")
        return {"endpointAddress": self._mqtt.endpoint_address()}


def _name(request: ApiRequest) -> str:
    return request.uri_params.get("templateName", "")


def _version_id(request: ApiRequest) -> int:
    raw = request.uri_params.get("versionId", "")
    if not raw.isdigit():
        raise AwsApiError(400, "InvalidRequestException", "versionId must be an integer")
    return int(raw)


def _boolean(raw: str, name: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise AwsApiError(400, "InvalidRequestException", f"{name} must be true or false")
    return raw.lower() == "true"


def _summary(record: TemplateRecord) -> dict[str, Any]:
    return {
        "templateArn": record.arn,
        "templateName": record.name,
        "description": record.description,
        "creationDate": record.created,
        "lastModifiedDate": record.modified,
        "enabled": record.enabled,
        "type": record.template_type,
    }


def _page(items: list[Any], request: ApiRequest) -> tuple[list[Any], str | None]:
    """One page and the next token (an offset: the lists are sorted, so it stays meaningful)."""
    raw_max = request.query.get("maxResults", str(MAX_RESULTS))
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_RESULTS:
        raise AwsApiError(400, "InvalidRequestException", f"maxResults must be 1-{MAX_RESULTS}")
    token = request.query.get("nextToken", "0") or "0"
    if not token.isdigit():
        raise AwsApiError(400, "InvalidRequestException", "nextToken is not valid")
    start, size = int(token), int(raw_max)
    page = items[start : start + size]
    return page, str(start + size) if start + size < len(items) else None
