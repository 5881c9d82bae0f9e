"""The provisioning-template catalog without sockets: AWS's limits and errors, versions, the service's
per-request view, hooks that cannot run, and what a restart keeps (snapshot/restore)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulator.provisioning import hook as hooks
from emulator.provisioning.ca import CertificateAuthority
from emulator.provisioning.errors import AccessDenied, TemplateDisabled
from emulator.provisioning.payloads import RegisterThingRequest
from emulator.provisioning.service import ProvisioningService
from emulator.provisioning.template_catalog import TemplateCatalog
from emulator.provisioning.template_records import (
    MAX_BODY_CHARS,
    MAX_VERSIONS,
    AlreadyExists,
    DeleteConflict,
    HookConfig,
    HookUnavailable,
    InvalidRequest,
    NotFound,
    VersionsLimitExceeded,
)
from emulator.provisioning.tokens import TokenStore
from tests.emulator.test_service import BODY, CLAIM, FakeHook, FakeRegistry

STACK_HOOK = "arn:aws:lambda:us-east-1:123456789012:function:stack-hook"
ROLE = "arn:aws:iam::123456789012:role/provisioning"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture()
def runner() -> hooks.Hook:
    return hooks.callable_hook(FakeHook(), workers=1)


@pytest.fixture()
def catalog(runner: hooks.Hook) -> TemplateCatalog:
    def resolve(target_arn: str) -> hooks.Hook:
        if target_arn == STACK_HOOK:
            return runner
        raise HookUnavailable("it runs only the stack's hook")

    return TemplateCatalog(region="us-east-1", account_id="123456789012", resolve_hook=resolve, clock=Clock())


def create(catalog: TemplateCatalog, name: str = "Created", **extra: Any) -> Any:
    return catalog.create(
        {"templateName": name, "templateBody": json.dumps(BODY), "provisioningRoleArn": ROLE, **extra}
    )


def add_stack(catalog: TemplateCatalog, runner: hooks.Hook | None, body: dict[str, Any] = BODY) -> None:
    catalog.add_stack_template(
        name="Stack",
        arn=catalog.arn("Stack"),
        body=body,
        enabled=True,
        template_type="FLEET_PROVISIONING",
        role_arn=ROLE,
        description="from the stack",
        hook_config=HookConfig(STACK_HOOK),
        hook=runner,
    )


def test_create_validates_as_aws_does(catalog: TemplateCatalog) -> None:
    record = create(catalog, description="d", enabled=True, tags=[{"Key": "k", "Value": "v"}])
    assert (record.arn, record.default_version_id, record.enabled) == (
        "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/Created",
        1,
        True,
    )
    assert create(catalog, "Off").enabled is False  # AWS's default
    with pytest.raises(AlreadyExists) as exists:
        create(catalog)
    assert exists.value.status_code == 409 and exists.value.fields["resourceArn"] == record.arn
    bad: list[dict[str, Any]] = [
        {"templateName": "x" * 37},
        {"templateName": "bad name"},
        {"templateBody": "x" * (MAX_BODY_CHARS + 1)},
        {"templateBody": "{not json"},
        {"templateBody": "[]"},
        {"templateBody": json.dumps({"Resources": {"r": {"Type": "AWS::S3::Bucket"}}})},
        {"provisioningRoleArn": "short"},
        {"description": "x" * 501},
        {"description": "line\nbreak"},
        {"type": "OTHER"},
        {"enabled": "yes"},
        {"preProvisioningHook": {"targetArn": STACK_HOOK, "payloadVersion": "2019-01-01"}},
        {"preProvisioningHook": {"targetArn": STACK_HOOK}, "type": "JITP"},
    ]
    for index, override in enumerate(bad):
        request = {
            "templateName": f"T{index}",
            "templateBody": json.dumps(BODY),
            "provisioningRoleArn": ROLE,
            **override,
        }
        with pytest.raises(InvalidRequest):
            catalog.create(request)
    assert [r.name for r in catalog.all()] == ["Created", "Off"]


def test_a_hook_the_emulator_cannot_run_is_refused_at_create_and_update(catalog: TemplateCatalog) -> None:
    other = {"targetArn": "arn:aws:lambda:us-east-1:123456789012:function:other"}
    with pytest.raises(InvalidRequest, match="function:other cannot be run by the emulator: it runs only"):
        create(catalog, preProvisioningHook=other)
    create(catalog, preProvisioningHook={"targetArn": STACK_HOOK})
    with pytest.raises(InvalidRequest, match="cannot be run"):
        catalog.update("Created", {"preProvisioningHook": other})
    assert catalog.describe("Created").hook_config == HookConfig(STACK_HOOK)  # unchanged


def test_versions_limits_default_and_deletion(catalog: TemplateCatalog) -> None:
    create(catalog)
    for _ in range(MAX_VERSIONS - 1):
        catalog.create_version("Created", json.dumps(BODY), set_as_default=False)
    with pytest.raises(VersionsLimitExceeded) as limit:
        catalog.create_version("Created", json.dumps(BODY), set_as_default=True)
    assert limit.value.status_code == 409
    with pytest.raises(DeleteConflict):
        catalog.delete_version("Created", 1)  # the default
    catalog.update("Created", {"defaultVersionId": 3})
    catalog.delete_version("Created", 1)
    version = catalog.create_version("Created", json.dumps(BODY), set_as_default=True)
    assert version.version_id == 6  # ids are never reused
    default, versions = catalog.list_versions("Created")
    assert default == 6 and [v.version_id for v in versions] == [2, 3, 4, 5, 6]
    with pytest.raises(NotFound):
        catalog.describe_version("Created", 1)
    with pytest.raises(NotFound):
        catalog.update("Created", {"defaultVersionId": 99})
    with pytest.raises(NotFound):
        catalog.create_version("Missing", json.dumps(BODY), set_as_default=False)


def test_the_service_sees_each_change_on_the_next_request(
    catalog: TemplateCatalog, runner: hooks.Hook, authority: CertificateAuthority
) -> None:
    add_stack(catalog, runner)
    registry = FakeRegistry()
    tokens = TokenStore(3600)
    service = ProvisioningService(registry=registry, authority=authority, tokens=tokens, templates=catalog)
    certificate = registry.register_certificate(authority.issue_client_credential("d").certificate_pem, "P")

    def register() -> Any:
        token = tokens.issue(certificate.certificate_id)
        request = RegisterThingRequest(token, {"SerialNumber": "SN1"})
        return service.register_thing(CLAIM, "Stack", request)

    assert register().device_configuration == {"topic_root": "devices"}
    v2 = json.loads(json.dumps(BODY))
    v2["DeviceConfiguration"] = {"topic_root": "v2"}
    catalog.create_version("Stack", json.dumps(v2), set_as_default=True)
    assert register().device_configuration == {"topic_root": "v2"}
    catalog.update("Stack", {"enabled": False})
    with pytest.raises(TemplateDisabled):
        register()
    catalog.update("Stack", {"enabled": True, "defaultVersionId": 1})
    assert register().device_configuration == {"topic_root": "devices"}


def test_restart_keeps_the_control_planes_changes_unless_the_stack_changed(
    catalog: TemplateCatalog, runner: hooks.Hook
) -> None:
    add_stack(catalog, runner)
    create(catalog, preProvisioningHook={"targetArn": STACK_HOOK}, enabled=True)
    catalog.update("Stack", {"enabled": False, "removePreProvisioningHook": True})
    saved = json.loads(json.dumps(catalog.snapshot()))  # what the state file holds is plain data

    def restarted(resolve: Any) -> TemplateCatalog:
        fresh = TemplateCatalog(region="us-east-1", account_id="123456789012", resolve_hook=resolve)
        fresh.restore(saved)
        return fresh

    same = restarted(lambda arn: runner)
    add_stack(same, runner)
    stack = same.get("Stack")
    assert stack is not None and stack.enabled is False and stack.hook is None  # as the API left it
    created = same.get("Created")
    assert created is not None and created.hook is runner

    changed_body = {**BODY, "DeviceConfiguration": {"topic_root": "new"}}
    resynthesized = restarted(lambda arn: runner)
    add_stack(resynthesized, runner, changed_body)
    stack = resynthesized.get("Stack")
    assert stack is not None and stack.enabled is True and stack.hook is runner
    assert stack.body["DeviceConfiguration"] == {"topic_root": "new"}

    def unavailable(arn: str) -> hooks.Hook:
        raise HookUnavailable("gone")

    without_hook = restarted(unavailable)
    created = without_hook.get("Created")
    assert created is not None and created.hook is None and created.hook_problem == "gone"


def test_a_template_whose_hook_cannot_run_never_provisions(authority: CertificateAuthority) -> None:
    def unavailable(arn: str) -> hooks.Hook:
        raise HookUnavailable("gone")

    catalog = TemplateCatalog(region="us-east-1", account_id="123456789012", resolve_hook=unavailable)
    catalog.restore(
        [
            {
                "name": "T",
                "arn": catalog.arn("T"),
                "type": "FLEET_PROVISIONING",
                "description": "",
                "enabled": True,
                "role_arn": ROLE,
                "hook": {"target_arn": STACK_HOOK, "payload_version": "2020-04-01"},
                "created": 1.0,
                "modified": 1.0,
                "versions": [{"id": 1, "body": json.dumps(BODY), "created": 1.0}],
                "default_version_id": 1,
                "next_version_id": 2,
                "tags": [],
                "stack_digest": None,
            }
        ]
    )
    registry, tokens = FakeRegistry(), TokenStore(3600)
    service = ProvisioningService(registry=registry, authority=authority, tokens=tokens, templates=catalog)
    certificate = registry.register_certificate(authority.issue_client_credential("d").certificate_pem, "P")
    request = RegisterThingRequest(tokens.issue(certificate.certificate_id), {"SerialNumber": "SN1"})
    with pytest.raises(AccessDenied):
        service.register_thing(CLAIM, "T", request)
    assert registry.applied == []
