"""The provisioning templates the emulator serves: the stack's and those created through the control plane.

A template has versions (each body parsed once, when it is created), a default version, `enabled`, a
pre-provisioning hook and a role, as AWS IoT's CreateProvisioningTemplate & co. describe them
(`template_records.py`: the records, limits and errors). The provisioning service reads a template per
RegisterThing through `get(name)`, which returns an immutable snapshot of its *current* default
version: a change made through the control plane is seen by the next request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from emulator.provisioning import hook as hooks
from emulator.provisioning.service import ProvisioningTemplate
from emulator.provisioning.template_records import (
    FLEET_PROVISIONING,
    HOOK_PAYLOAD_VERSION,
    MAX_TEMPLATES,
    MAX_VERSIONS,
    TEMPLATE_TYPES,
    AlreadyExists,
    DeleteConflict,
    HookConfig,
    HookResolver,
    HookUnavailable,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    TemplateRecord,
    TemplateVersion,
    VersionsLimitExceeded,
    check_bool,
    check_description,
    check_name,
    check_role,
    digest,
    from_data,
    hook_config_of,
    parse_body,
    to_data,
)


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
        body_digest = digest(body)
        now = self._clock()
        with self._lock:
            existing = self._records.get(name)
            if existing is not None and existing.stack_digest == body_digest:
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
                stack_digest=body_digest,
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
        name = check_name(request.get("templateName"))
        body = parse_body(request.get("templateBody"))
        role_arn = check_role(request.get("provisioningRoleArn"))
        description = check_description(request.get("description", ""))
        enabled = check_bool(request.get("enabled", False), "enabled")
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

    def all(self) -> list[TemplateRecord]:
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
            check_description(description)
        if enabled is not None:
            check_bool(enabled, "enabled")
        if role_arn is not None:
            check_role(role_arn)
        check_bool(remove_hook, "removePreProvisioningHook")
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
            return [to_data(r) for r in self._records.values()]

    def restore(self, snapshot: list[dict[str, Any]]) -> None:
        """Templates from the state file, before the stack's are added. A hook that cannot run any
        more leaves its template refusing every RegisterThing (it never provisions without it)."""
        for item in snapshot:
            config = hook_config_of(item)
            hook, problem = self._hook_for(config) if config is not None else (None, None)
            record = from_data(item, hook, problem)
            with self._lock:
                self._records[record.name] = record
