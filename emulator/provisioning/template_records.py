"""A provisioning template's records and rules: versions, hook configuration, AWS's limits and errors.

Limits (AWS API reference, CreateProvisioningTemplate / CreateProvisioningTemplateVersion):
name 1-36 of `[0-9A-Za-z_-]`, body <= 10240 characters, description <= 500, role ARN 20-2048. The
errors carry AWS's status and error code (as moto's `exceptions.py`); the AWS API front end turns them
into HTTP answers. `to_data`/`from_data` are a record as plain data, for the state file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.provisioning import hook as hooks

FLEET_PROVISIONING = "FLEET_PROVISIONING"
JITP = "JITP"
TEMPLATE_TYPES = (FLEET_PROVISIONING, JITP)
HOOK_PAYLOAD_VERSION = "2020-04-01"  # the only one AWS defines
NAME_RE = re.compile(r"^[0-9A-Za-z_-]{1,36}$")
MAX_BODY_CHARS = 10240
MAX_DESCRIPTION_CHARS = 500
ROLE_ARN_LENGTH = (20, 2048)
# UNCONFIRMED: Service Quotas has "template versions per template" (L-71FA7EC4) and "fleet provisioning
# templates per customer" (L-345B62A1); AWS's pages consulted give no value. 5 versions (as for IoT
# policies) and 256 templates are what third-party documentation reports.
MAX_VERSIONS = 5
MAX_TEMPLATES = 256
RESOURCE_TYPES = frozenset({"AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy"})


class CatalogError(Exception):
    status_code = 400
    error_code = "InvalidRequestException"

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields  # extra members of the error shape (resourceId, resourceArn)


class InvalidRequest(CatalogError):
    pass


class NotFound(CatalogError):
    status_code = 404
    error_code = "ResourceNotFoundException"


class AlreadyExists(CatalogError):
    status_code = 409
    error_code = "ResourceAlreadyExistsException"


class VersionsLimitExceeded(CatalogError):
    status_code = 409
    error_code = "VersionsLimitExceededException"


class DeleteConflict(CatalogError):
    status_code = 409
    error_code = "DeleteConflictException"


class LimitExceeded(CatalogError):
    status_code = 410  # botocore's model: LimitExceededException is HTTP 410 in AWS IoT
    error_code = "LimitExceededException"


class HookUnavailable(Exception):
    """The hook a template names cannot be run here; the message says why."""


HookResolver = Callable[[str], hooks.Hook]


@dataclass(frozen=True)
class HookConfig:
    target_arn: str
    payload_version: str = HOOK_PAYLOAD_VERSION


@dataclass(frozen=True)
class TemplateVersion:
    version_id: int
    body_text: str
    body: Mapping[str, Any]  # parsed once, when the version is created
    created: float  # epoch seconds


@dataclass
class TemplateRecord:
    name: str
    arn: str
    template_type: str
    description: str
    enabled: bool
    role_arn: str
    hook_config: HookConfig | None
    created: float
    modified: float
    versions: dict[int, TemplateVersion]
    default_version_id: int
    next_version_id: int
    tags: list[dict[str, str]] = field(default_factory=list)
    # The stack body this record was built from (digest), for templates of the stack; None if created
    # through the API. A restart on a re-synthesized stack rebuilds a stack template whose body changed.
    stack_digest: str | None = None
    hook: hooks.Hook | None = None  # the runner, resolved from hook_config (not persisted)
    hook_problem: str | None = None  # why hook_config cannot run (a restored template): refuse requests

    @property
    def default_version(self) -> TemplateVersion:
        return self.versions[self.default_version_id]


def parse_body(text: Any) -> Mapping[str, Any]:
    """A template body as AWS accepts it: a JSON object under 10240 characters whose resources are of
    the three types fleet provisioning allows. Deeper problems surface at RegisterThing, as on AWS."""
    if not isinstance(text, str):
        raise InvalidRequest("templateBody must be a string")
    if len(text) > MAX_BODY_CHARS:
        raise InvalidRequest(f"templateBody is {len(text)} characters; the maximum is {MAX_BODY_CHARS}")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"templateBody is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("templateBody must be a JSON object")
    resources = body.get("Resources", {})
    if not isinstance(resources, dict):
        raise InvalidRequest("templateBody: Resources must be an object")
    for logical_id, resource in resources.items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind not in RESOURCE_TYPES:
            allowed = ", ".join(sorted(RESOURCE_TYPES))
            raise InvalidRequest(f"templateBody: resource {logical_id} has type {kind!r}; allowed: {allowed}")
    return body


def digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest("templateName must be 1-36 characters of [0-9A-Za-z_-]")
    return name


def check_description(description: Any) -> str:
    if not isinstance(description, str):
        raise InvalidRequest("description must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequest(f"description is over {MAX_DESCRIPTION_CHARS} characters")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in description):
        raise InvalidRequest("description must not contain control characters")
    return description


def check_role(role_arn: Any) -> str:
    low, high = ROLE_ARN_LENGTH
    if not isinstance(role_arn, str) or not low <= len(role_arn) <= high:
        raise InvalidRequest(f"provisioningRoleArn must be a string of {low}-{high} characters")
    return role_arn


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean")
    return value


def to_data(record: TemplateRecord) -> dict[str, Any]:
    """A record as plain data (no runner), for the state file."""
    hook = record.hook_config
    return {
        "name": record.name,
        "arn": record.arn,
        "type": record.template_type,
        "description": record.description,
        "enabled": record.enabled,
        "role_arn": record.role_arn,
        "hook": {"target_arn": hook.target_arn, "payload_version": hook.payload_version} if hook else None,
        "created": record.created,
        "modified": record.modified,
        "versions": [
            {"id": v.version_id, "body": v.body_text, "created": v.created} for v in record.versions.values()
        ],
        "default_version_id": record.default_version_id,
        "next_version_id": record.next_version_id,
        "tags": record.tags,
        "stack_digest": record.stack_digest,
    }


def hook_config_of(data: Mapping[str, Any]) -> HookConfig | None:
    hook = data["hook"]
    return HookConfig(hook["target_arn"], hook["payload_version"]) if hook else None


def from_data(data: Mapping[str, Any], hook: hooks.Hook | None, hook_problem: str | None) -> TemplateRecord:
    """A record from `to_data`, each version's body parsed again (once)."""
    versions = {
        v["id"]: TemplateVersion(v["id"], v["body"], json.loads(v["body"]), v["created"])
        for v in data["versions"]
    }
    return TemplateRecord(
        name=data["name"],
        arn=data["arn"],
        template_type=data["type"],
        description=data["description"],
        enabled=data["enabled"],
        role_arn=data["role_arn"],
        hook_config=hook_config_of(data),
        created=data["created"],
        modified=data["modified"],
        versions=versions,
        default_version_id=data["default_version_id"],
        next_version_id=data["next_version_id"],
        tags=data["tags"],
        stack_digest=data["stack_digest"],
        hook=hook,
        hook_problem=hook_problem,
    )
