"""The provisioning templates the emulator serves: the stack's and those created through the control plane.

A template has versions (each body parsed once, when it is created), a default version, `enabled`, a
pre-provisioning hook and a role, as AWS IoT's CreateProvisioningTemplate & co. describe them. The
provisioning service reads a template per RegisterThing through `get(name)`, which returns an immutable
snapshot of its *current* default version: a change made through the control plane is seen by the next
request. Like moto's `models.py`, the errors raised here carry AWS's status and error code; the AWS API
front end (`emulator.awsapi.control_plane`) turns them into HTTP answers.

Limits (AWS API reference, CreateProvisioningTemplate / CreateProvisioningTemplateVersion):
name 1-36 of `[0-9A-Za-z_-]`, body <= 10240 characters, description <= 500, role ARN 20-2048.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from emulator.provisioning import hook as hooks
from emulator.provisioning.service import ProvisioningTemplate

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


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest("templateName must be 1-36 characters of [0-9A-Za-z_-]")
    return name


def _check_description(description: Any) -> str:
    if not isinstance(description, str):
        raise InvalidRequest("description must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequest(f"description is over {MAX_DESCRIPTION_CHARS} characters")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in description):
        raise InvalidRequest("description must not contain control characters")
    return description


def _check_role(role_arn: Any) -> str:
    low, high = ROLE_ARN_LENGTH
    if not isinstance(role_arn, str) or not low <= len(role_arn) <= high:
        raise InvalidRequest(f"provisioningRoleArn must be a string of {low}-{high} characters")
    return role_arn


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean")
    return value


class TemplateCatalog:
    """Thread-safe. `get` is the provisioning service's view; the other methods are the control plane."""

    def __init__(
        self,
        *,
        region: str,
        account_id: str,
        resolve_hook: HookResolver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self.account_id = account_id
        self._resolve_hook = resolve_hook
        self._clock = clock
        self._records: dict[str, TemplateRecord] = {}
        self._lock = threading.Lock()

    def arn(self, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:provisioningtemplate/{name}"

    # ------------------------------------------------------------------ the service's view
    def get(self, name: str) -> ProvisioningTemplate | None:
        with self._lock:
            record = self._records.get(name)
            if record is None:
                return None
            return ProvisioningTemplate(
                record.name,
                record.arn,
                record.default_version.body,
                record.enabled,
                record.hook,
                template_type=record.template_type,
                hook_problem=record.hook_problem,
            )

    # ------------------------------------------------------------------ the stack's templates
    def add_stack_template(
        self,
        *,
        name: str,
        arn: str,
        body: Mapping[str, Any],
        enabled: bool,
        template_type: str,
        role_arn: str,
        description: str,
        hook_config: HookConfig | None,
        hook: hooks.Hook | None,
    ) -> None:
        """A template of the synthesized stack, as CloudFormation created it (version 1). A restored
        record of the same name built from the same stack body is kept as it was (its versions,
        `enabled`...); one built from another body is replaced: the re-synthesized stack wins."""
        digest = _digest(body)
        now = self._clock()
        with self._lock:
            existing = self._records.get(name)
            if existing is not None and existing.stack_digest == digest:
                # Kept as the control plane left it, hook included (removed, or pointed elsewhere).
                if existing.hook_config is None:
                    existing.hook, existing.hook_problem = None, None
                elif existing.hook_config == hook_config:
                    existing.hook, existing.hook_problem = hook, None
                else:
                    existing.hook, existing.hook_problem = self._hook_for(existing.hook_config)
                return
            text = json.dumps(body)
            self._records[name] = TemplateRecord(
                name=name,
                arn=arn,
                template_type=template_type,
                description=description,
                enabled=enabled,
                role_arn=role_arn,
                hook_config=hook_config,
                created=now,
                modified=now,
                versions={1: TemplateVersion(1, text, body, now)},
                default_version_id=1,
                next_version_id=2,
                stack_digest=digest,
                hook=hook,
            )

    def _hook_for(self, config: HookConfig) -> tuple[hooks.Hook | None, str | None]:
        try:
            return self._resolve_hook(config.target_arn), None
        except HookUnavailable as exc:
            return None, str(exc)

    def _hook_or_refuse(self, config: HookConfig) -> hooks.Hook:
        try:
            return self._resolve_hook(config.target_arn)
        except HookUnavailable as exc:
            # Never provision without the hook the user asked for: refuse the template instead.
            raise InvalidRequest(
                f"preProvisioningHook targetArn {config.target_arn} cannot be run by the emulator: {exc}"
            ) from None

    @staticmethod
    def _hook_config(value: Any, template_type: str) -> HookConfig:
        if not isinstance(value, dict) or not isinstance(value.get("targetArn"), str):
            raise InvalidRequest("preProvisioningHook must be an object with a targetArn string")
        payload_version = value.get("payloadVersion", HOOK_PAYLOAD_VERSION)
        if payload_version != HOOK_PAYLOAD_VERSION:
            raise InvalidRequest(f"preProvisioningHook payloadVersion must be {HOOK_PAYLOAD_VERSION}")
        if template_type != FLEET_PROVISIONING:
            raise InvalidRequest("preProvisioningHook is only supported on FLEET_PROVISIONING templates")
        return HookConfig(value["targetArn"], payload_version)

    # ------------------------------------------------------------------ templates
    def create(self, request: Mapping[str, Any]) -> TemplateRecord:
        name = _check_name(request.get("templateName"))
        body = parse_body(request.get("templateBody"))
        role_arn = _check_role(request.get("provisioningRoleArn"))
        description = _check_description(request.get("description", ""))
        enabled = _check_bool(request.get("enabled", False), "enabled")
        template_type = request.get("type", FLEET_PROVISIONING)
        if template_type not in TEMPLATE_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(TEMPLATE_TYPES)}")
        tags = request.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, dict) and "Key" in t for t in tags):
            raise InvalidRequest("tags must be a list of {Key, Value}")
        hook_config = (
            self._hook_config(request["preProvisioningHook"], template_type)
            if request.get("preProvisioningHook") is not None
            else None
        )
        hook = self._hook_or_refuse(hook_config) if hook_config is not None else None
        now = self._clock()
        with self._lock:
            if name in self._records:
                raise AlreadyExists(
                    f"Template {name} already exists", resourceId=name, resourceArn=self.arn(name)
                )
            if len(self._records) >= MAX_TEMPLATES:
                raise LimitExceeded(f"An account can have at most {MAX_TEMPLATES} provisioning templates")
            record = TemplateRecord(
                name=name,
                arn=self.arn(name),
                template_type=template_type,
                description=description,
                enabled=enabled,
                role_arn=role_arn,
                hook_config=hook_config,
                created=now,
                modified=now,
                versions={1: TemplateVersion(1, request["templateBody"], body, now)},
                default_version_id=1,
                next_version_id=2,
                tags=[{"Key": str(t["Key"]), "Value": str(t.get("Value", ""))} for t in tags],
                hook=hook,
            )
            self._records[name] = record
            return replace(record)

    def describe(self, name: str) -> TemplateRecord:
        with self._lock:
            return replace(self._record(name))

    def list(self) -> list[TemplateRecord]:
        with self._lock:
            return [replace(r) for r in sorted(self._records.values(), key=lambda r: r.name)]

    def update(self, name: str, request: Mapping[str, Any]) -> None:
        description = request.get("description")
        enabled = request.get("enabled")
        default_version_id = request.get("defaultVersionId")
        role_arn = request.get("provisioningRoleArn")
        remove_hook = request.get("removePreProvisioningHook", False)
        new_hook = request.get("preProvisioningHook")
        if description is not None:
            _check_description(description)
        if enabled is not None:
            _check_bool(enabled, "enabled")
        if role_arn is not None:
            _check_role(role_arn)
        _check_bool(remove_hook, "removePreProvisioningHook")
        if remove_hook and new_hook is not None:
            raise InvalidRequest("preProvisioningHook and removePreProvisioningHook cannot be used together")
        if default_version_id is not None and (
            not isinstance(default_version_id, int) or isinstance(default_version_id, bool)
        ):
            raise InvalidRequest("defaultVersionId must be an integer")
        with self._lock:
            template_type = self._record(name).template_type
        hook_config = self._hook_config(new_hook, template_type) if new_hook is not None else None
        hook = self._hook_or_refuse(hook_config) if hook_config is not None else None
        with self._lock:
            record = self._record(name)
            if default_version_id is not None and default_version_id not in record.versions:
                raise NotFound(f"Version {default_version_id} of template {name} does not exist")
            if description is not None:
                record.description = description
            if enabled is not None:
                record.enabled = enabled
            if role_arn is not None:
                record.role_arn = role_arn
            if default_version_id is not None:
                record.default_version_id = default_version_id
            if remove_hook:
                record.hook_config, record.hook, record.hook_problem = None, None, None
            if hook_config is not None:
                record.hook_config, record.hook, record.hook_problem = hook_config, hook, None
            record.modified = self._clock()

    def delete(self, name: str) -> None:
        with self._lock:
            self._record(name)
            del self._records[name]

    # ------------------------------------------------------------------ versions
    def create_version(self, name: str, body_text: Any, set_as_default: bool) -> TemplateVersion:
        body = parse_body(body_text)
        now = self._clock()
        with self._lock:
            record = self._record(name)
            if len(record.versions) >= MAX_VERSIONS:
                raise VersionsLimitExceeded(
                    f"Template {name} already has {MAX_VERSIONS} versions, the maximum; delete one first"
                )
            version = TemplateVersion(record.next_version_id, body_text, body, now)
            record.versions[version.version_id] = version
            record.next_version_id += 1
            if set_as_default:
                record.default_version_id = version.version_id
            record.modified = now
            return version

    def list_versions(self, name: str) -> tuple[int, list[TemplateVersion]]:
        """(default version id, versions in ascending order)."""
        with self._lock:
            record = self._record(name)
            return record.default_version_id, [record.versions[v] for v in sorted(record.versions)]

    def describe_version(self, name: str, version_id: int) -> tuple[bool, TemplateVersion]:
        with self._lock:
            record = self._record(name)
            version = record.versions.get(version_id)
            if version is None:
                raise NotFound(f"Version {version_id} of template {name} does not exist")
            return version_id == record.default_version_id, version

    def delete_version(self, name: str, version_id: int) -> None:
        with self._lock:
            record = self._record(name)
            if version_id not in record.versions:
                raise NotFound(f"Version {version_id} of template {name} does not exist")
            if version_id == record.default_version_id:
                # UNCONFIRMED code: what AWS IoT answers for deleting a policy's default version.
                raise DeleteConflict(
                    f"Version {version_id} is the default version of template {name}: set another "
                    "default first, or delete the template"
                )
            del record.versions[version_id]
            record.modified = self._clock()

    def _record(self, name: str) -> TemplateRecord:
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"Template {name} does not exist")
        return record

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> list[dict[str, Any]]:
        """Every template as plain data (no runners), for the state file."""
        with self._lock:
            return [
                {
                    "name": r.name,
                    "arn": r.arn,
                    "type": r.template_type,
                    "description": r.description,
                    "enabled": r.enabled,
                    "role_arn": r.role_arn,
                    "hook": (
                        {
                            "target_arn": r.hook_config.target_arn,
                            "payload_version": r.hook_config.payload_version,
                        }
                        if r.hook_config
                        else None
                    ),
                    "created": r.created,
                    "modified": r.modified,
                    "versions": [
                        {"id": v.version_id, "body": v.body_text, "created": v.created}
                        for v in r.versions.values()
                    ],
                    "default_version_id": r.default_version_id,
                    "next_version_id": r.next_version_id,
                    "tags": r.tags,
                    "stack_digest": r.stack_digest,
                }
                for r in self._records.values()
            ]

    def restore(self, snapshot: list[dict[str, Any]]) -> None:
        """Templates from the state file, before the stack's are added. A hook that cannot run any
        more leaves its template refusing every RegisterThing (it never provisions without it)."""
        for item in snapshot:
            config = (
                HookConfig(item["hook"]["target_arn"], item["hook"]["payload_version"])
                if item["hook"]
                else None
            )
            hook, problem = self._hook_for(config) if config is not None else (None, None)
            versions = {
                v["id"]: TemplateVersion(v["id"], v["body"], json.loads(v["body"]), v["created"])
                for v in item["versions"]
            }
            record = TemplateRecord(
                name=item["name"],
                arn=item["arn"],
                template_type=item["type"],
                description=item["description"],
                enabled=item["enabled"],
                role_arn=item["role_arn"],
                hook_config=config,
                created=item["created"],
                modified=item["modified"],
                versions=versions,
                default_version_id=item["default_version_id"],
                next_version_id=item["next_version_id"],
                tags=item["tags"],
                stack_digest=item["stack_digest"],
                hook=hook,
                hook_problem=problem,
            )
            with self._lock:
                self._records[record.name] = record
