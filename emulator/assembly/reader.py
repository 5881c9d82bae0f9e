"""Reads the synthesized stack (the cloud assembly) into what the emulator serves.

CloudFormation is played just far enough: the intrinsic functions of `emulator.intrinsics` (`Ref`,
`Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::If` + Conditions, `Fn::FindInMap`,
`AWS::NoValue`...) and the pseudo parameters resolve against a fixed local account and the stack's region.
Physical names CloudFormation would generate become `<stack>-<LogicalId>`. Every resource type the emulator
does not emulate is listed in `not_emulated`. One file over 400 lines: every resource type is read in the
same walk of the template, through the one resolver of names and ARNs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.intrinsics.evaluator import FUNCTIONS, MISSING, NO_VALUE, Evaluator, Rules
from emulator.registry.store import LOCAL_ACCOUNT_ID

DEFAULT_REGION = "us-east-1"
HOOK_PAYLOAD_VERSION = "2020-04-01"
CLAIM_CUSTOM_TYPE = "Custom::ClaimCredential"
_CLAIM_TYPES = ("AWS::IoT::Certificate", CLAIM_CUSTOM_TYPE)

# What the emulator builds from each type; anything else is reported, never silently skipped.
EMULATED_TYPES = frozenset(
    {
        "AWS::IoT::Policy",
        "AWS::IoT::ProvisioningTemplate",
        "AWS::IoT::Certificate",
        CLAIM_CUSTOM_TYPE,
        "AWS::IoT::PolicyPrincipalAttachment",
        "AWS::IoT::ThingGroup",
        "AWS::IoT::ThingType",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::IoT::TopicRule",  # SELECT * FROM '<topic filter>' with Lambda actions (emulator/rules/)
        "AWS::Events::Rule",  # rate(...) schedules that invoke Lambda functions (emulator/rules/)
    }
)
# Types that only describe how AWS wires or observes things: there is nothing to emulate locally, but
# they are still listed (as "not emulated") so that a reader sees what the local run leaves out.


class AssemblyError(Exception):
    """The cloud assembly cannot be read or lacks what the emulator needs; the message says which."""


@dataclass(frozen=True)
class PolicySpec:
    name: str
    document: dict[str, Any]


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    arn: str
    body: dict[str, Any]
    enabled: bool
    template_type: str
    hook_function_arn: str | None
    hook_payload_version: str | None
    provisioning_role_arn: str = ""
    description: str = ""


@dataclass(frozen=True)
class ClaimSpec:
    name: str
    logical_id: str
    mode: str  # "csr" (AWS::IoT::Certificate) | "generated" (Custom::ClaimCredential)
    active: bool


@dataclass(frozen=True)
class TableSpec:
    name: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TopicRuleSpec:
    """An AWS::IoT::TopicRule as written; emulator/rules/topic_rules.py decides what of it runs."""

    logical_id: str
    name: str
    sql: str
    disabled: bool
    actions: list[dict[str, Any]]  # CloudFormation's ActionProperty objects ({"Lambda": {...}}, ...)


@dataclass(frozen=True)
class ScheduleTarget:
    arn: str
    input: str | None  # the constant JSON text EventBridge passes as the event


@dataclass(frozen=True)
class ScheduleSpec:
    """An AWS::Events::Rule: a schedule expression, or an event pattern (which the emulator does not run)."""

    logical_id: str
    expression: str | None
    event_pattern: bool
    enabled: bool
    targets: list[ScheduleTarget]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    asset_dir: Path | None
    environment: dict[str, str]
    memory_mb: int


@dataclass(frozen=True)
class AttachmentSpec:
    policy_name: str
    principal_arn: str


@dataclass
class StackModel:
    stack_name: str
    region: str
    account_id: str
    policies: list[PolicySpec] = field(default_factory=list)
    templates: list[TemplateSpec] = field(default_factory=list)
    claims: list[ClaimSpec] = field(default_factory=list)
    attachments: list[AttachmentSpec] = field(default_factory=list)
    tables: list[TableSpec] = field(default_factory=list)
    functions: list[FunctionSpec] = field(default_factory=list)
    topic_rules: list[TopicRuleSpec] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    thing_groups: list[str] = field(default_factory=list)
    thing_types: list[str] = field(default_factory=list)
    not_emulated: list[tuple[str, str]] = field(default_factory=list)  # (logical id, type)

    def hook_for(self, template: TemplateSpec) -> FunctionSpec | None:
        if template.hook_function_arn is None:
            return None
        for function in self.functions:
            if function.arn == template.hook_function_arn:
                return function
        return None


@dataclass(frozen=True)
class ClaimIdentity:
    """The local stand-in for a claim certificate, issued while the assembly is read."""

    certificate_id: str


def find_stack_template(assembly_dir: Path, stack_name: str | None = None) -> Path:
    """The stack's template in the assembly: by name, or the only stack in manifest.json."""
    if not assembly_dir.is_dir():
        raise AssemblyError(f"cloud assembly {assembly_dir} does not exist (run `make synth` first)")
    if stack_name:
        path = assembly_dir / f"{stack_name}.template.json"
        if not path.exists():
            raise AssemblyError(f"{path} not found in the cloud assembly")
        return path
    manifest_path = assembly_dir / "manifest.json"
    stacks: list[Path] = []
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        for artifact in manifest.get("artifacts", {}).values():
            if artifact.get("type") == "aws:cloudformation:stack":
                template_file = artifact.get("properties", {}).get("templateFile")
                if template_file:
                    stacks.append(assembly_dir / template_file)
    else:
        stacks = sorted(assembly_dir.glob("*.template.json"))
    if len(stacks) != 1:
        raise AssemblyError(
            f"expected exactly one stack in {assembly_dir}, found {len(stacks)}: pass the stack name"
        )
    return stacks[0]


def stack_region(assembly_dir: Path, template_path: Path) -> str:
    """The region in the stack's environment, else us-east-1 (an environment-agnostic stack)."""
    manifest_path = assembly_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        for artifact in manifest.get("artifacts", {}).values():
            if artifact.get("properties", {}).get("templateFile") == template_path.name:
                match = re.match(r"^aws://[^/]+/([a-z0-9-]+)$", artifact.get("environment", ""))
                if match and match.group(1) != "unknown-region":
                    return match.group(1)
    return DEFAULT_REGION


def load_stack(
    assembly_dir: Path | str,
    issue_claim: Callable[[ClaimSpec], ClaimIdentity],
    *,
    stack_name: str | None = None,
) -> StackModel:
    """Read and resolve the stack. `issue_claim` makes the local credential for each claim first,
    since the rest of the stack refers to the claim certificates' ids and ARNs."""
    assembly_dir = Path(assembly_dir).resolve()
    template_path = find_stack_template(assembly_dir, stack_name)
    try:
        template = json.loads(template_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AssemblyError(f"cannot read {template_path}: {exc}") from None
    name = template_path.name.removesuffix(".template.json")
    region = stack_region(assembly_dir, template_path)
    resolver = _Resolver(template, stack_name=name, region=region, account_id=LOCAL_ACCOUNT_ID)
    model = StackModel(stack_name=name, region=region, account_id=LOCAL_ACCOUNT_ID)
    resources: dict[str, Any] = template.get("Resources", {})

    # Claims first: other resources (attachments) refer to their certificates.
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind not in _CLAIM_TYPES or not resolver.included(logical_id, resource):
            continue
        props = resolver.properties(logical_id, resource)
        if kind == CLAIM_CUSTOM_TYPE:
            claim = ClaimSpec(
                str(props.get("ClaimName") or logical_id),
                logical_id,
                "generated",
                props.get("Status", "ACTIVE") == "ACTIVE",
            )
        else:
            claim = ClaimSpec(
                _claim_name_from_path(resource, logical_id),
                logical_id,
                "csr",
                props.get("Status", "ACTIVE") == "ACTIVE",
            )
        identity = issue_claim(claim)
        resolver.set_certificate(logical_id, identity.certificate_id)
        model.claims.append(claim)

    for logical_id, resource in resources.items():
        kind = resource.get("Type", "")
        if not resolver.included(logical_id, resource):
            continue
        if kind not in EMULATED_TYPES:
            model.not_emulated.append((logical_id, kind))
            continue
        props = resolver.properties(logical_id, resource)
        if kind == "AWS::IoT::Policy":
            document: Any = props.get("PolicyDocument")
            if isinstance(document, str):
                document = json.loads(document)
            model.policies.append(PolicySpec(resolver.physical(logical_id), document))
        elif kind == "AWS::IoT::ProvisioningTemplate":
            body: Any = props.get("TemplateBody")
            try:
                body = json.loads(body) if isinstance(body, str) else body
            except json.JSONDecodeError as exc:
                raise AssemblyError(f"{logical_id}.TemplateBody is not JSON: {exc}") from None
            hook = props.get("PreProvisioningHook") or {}
            template_name = resolver.physical(logical_id)
            model.templates.append(
                TemplateSpec(
                    name=template_name,
                    arn=resolver.get_att(logical_id, "TemplateArn"),
                    body=body,
                    enabled=_truthy(props.get("Enabled", False)),
                    template_type=str(props.get("TemplateType", "FLEET_PROVISIONING")),
                    hook_function_arn=hook.get("TargetArn"),
                    hook_payload_version=hook.get("PayloadVersion"),
                    provisioning_role_arn=str(props.get("ProvisioningRoleArn") or ""),
                    description=str(props.get("Description") or ""),
                )
            )
        elif kind == "AWS::IoT::PolicyPrincipalAttachment":
            model.attachments.append(AttachmentSpec(str(props["PolicyName"]), str(props["Principal"])))
        elif kind == "AWS::IoT::ThingGroup":
            model.thing_groups.append(resolver.physical(logical_id))
        elif kind == "AWS::IoT::ThingType":
            model.thing_types.append(resolver.physical(logical_id))
        elif kind == "AWS::DynamoDB::Table":
            model.tables.append(
                TableSpec(
                    resolver.physical(logical_id),
                    props.get("KeySchema", []),
                    props.get("AttributeDefinitions", []),
                    list(props.get("GlobalSecondaryIndexes") or []),
                )
            )
        elif kind == "AWS::IoT::TopicRule":
            payload = props.get("TopicRulePayload") or {}
            model.topic_rules.append(
                TopicRuleSpec(
                    logical_id=logical_id,
                    name=str(props.get("RuleName") or logical_id),
                    sql=str(payload.get("Sql", "")),
                    disabled=_truthy(payload.get("RuleDisabled", False)),
                    actions=[a for a in payload.get("Actions") or [] if isinstance(a, dict)],
                )
            )
        elif kind == "AWS::Events::Rule":
            model.schedules.append(
                ScheduleSpec(
                    logical_id=logical_id,
                    expression=props.get("ScheduleExpression"),
                    event_pattern=props.get("EventPattern") is not None,
                    enabled=str(props.get("State", "ENABLED")) == "ENABLED",
                    targets=[
                        ScheduleTarget(str(t.get("Arn", "")), t.get("Input"))
                        for t in props.get("Targets") or []
                        if isinstance(t, dict)
                    ],
                )
            )
        elif kind == "AWS::Lambda::Function":
            model.functions.append(
                FunctionSpec(
                    logical_id=logical_id,
                    name=resolver.physical(logical_id),
                    arn=resolver.get_att(logical_id, "Arn"),
                    handler=str(props.get("Handler", "")),
                    asset_dir=_asset_dir(assembly_dir, resource, props),
                    environment={
                        k: str(v)
                        for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()
                    },
                    memory_mb=int(props.get("MemorySize", 128)),
                )
            )
    return model


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _claim_name_from_path(resource: Mapping[str, Any], logical_id: str) -> str:
    """csr-mode claims: the construct path is .../<PascalName>/Certificate; back to the kebab name."""
    path = str(resource.get("Metadata", {}).get("aws:cdk:path", ""))
    parts = path.split("/")
    if len(parts) >= 2 and parts[-1] == "Certificate":
        return re.sub(r"(?<!^)(?=[A-Z])", "-", parts[-2]).lower()
    return logical_id


def _asset_dir(assembly_dir: Path, resource: Mapping[str, Any], props: Mapping[str, Any]) -> Path | None:
    asset = resource.get("Metadata", {}).get("aws:asset:path")
    if asset:
        path = Path(asset)
        return path if path.is_absolute() else assembly_dir / path
    key = (props.get("Code") or {}).get("S3Key")
    if isinstance(key, str) and key.endswith(".zip"):
        candidate = assembly_dir / f"asset.{key.removesuffix('.zip')}"
        if candidate.is_dir():
            return candidate
    return None


_NAME_PROPERTIES = {
    "AWS::IoT::Policy": "PolicyName",
    "AWS::IoT::ProvisioningTemplate": "TemplateName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IoT::ThingGroup": "ThingGroupName",
    "AWS::IoT::ThingType": "ThingTypeName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SNS::Topic": "TopicName",
}


def _placeholder(function: str, where: str) -> str:
    return f"<{function} not resolved locally>"


# CloudFormation's dialect, read leniently: CDK wrote the template, so a value where text is expected is
# written with str() and a function the reader does not play becomes a visible placeholder.
CLOUDFORMATION_RULES = Rules(
    functions=FUNCTIONS,
    error=AssemblyError,
    unsupported=_placeholder,
    lone_function=False,
    strict_text=False,
    no_value=True,
    bad_ref="{where}: Ref takes the name of a parameter, a pseudo parameter or a resource",
    unknown_ref="{where}: Ref to unknown resource {name}",
    unknown_sub="{where}: ${{{name}}} is neither a Fn::Sub variable, a parameter nor a resource",
)


class _Resolver:
    """The stack's names as CloudFormation would make them, locally, and the evaluator that reads them."""

    def __init__(self, template: Mapping[str, Any], *, stack_name: str, region: str, account_id: str) -> None:
        self._resources: Mapping[str, Any] = template.get("Resources", {})
        self._certificates: dict[str, str] = {}
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self._evaluator = Evaluator(
            CLOUDFORMATION_RULES,
            parameters={
                name: _parameter_value(spec) for name, spec in (template.get("Parameters") or {}).items()
            },
            pseudo_parameters={
                "AWS::AccountId": account_id,
                "AWS::Region": region,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackName": stack_name,
                "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
                "AWS::NotificationARNs": [],
            },
            mappings=template.get("Mappings") or {},
            conditions=template.get("Conditions") or {},
            resource_ref=lambda name: self.physical(name) if name in self._resources else MISSING,
            resource_attribute=lambda logical_id, attribute: (
                self.get_att(logical_id, attribute) if logical_id in self._resources else MISSING
            ),
        )

    def set_certificate(self, logical_id: str, certificate_id: str) -> None:
        self._certificates[logical_id] = certificate_id

    def included(self, logical_id: str, resource: Mapping[str, Any]) -> bool:
        condition = resource.get("Condition")
        return condition is None or self._evaluator.condition(condition, f"Resources.{logical_id}.Condition")

    def properties(self, logical_id: str, resource: Mapping[str, Any]) -> dict[str, Any]:
        where = f"Resources.{logical_id}.Properties"
        properties = self._evaluator.evaluate(resource.get("Properties", {}), where)
        if not isinstance(properties, dict):
            raise AssemblyError(f"{where}: must be an object")
        return properties

    def physical(self, logical_id: str) -> str:
        resource = self._resources.get(logical_id)
        if resource is None:
            raise AssemblyError(f"Ref to unknown resource {logical_id}")
        kind = resource.get("Type", "")
        if kind in _CLAIM_TYPES:
            return self._certificates.get(logical_id, logical_id)
        prop = _NAME_PROPERTIES.get(kind)
        if prop and prop in resource.get("Properties", {}):
            name = self._evaluator.evaluate(
                resource["Properties"][prop], f"Resources.{logical_id}.Properties.{prop}"
            )
            if name is not NO_VALUE:
                return str(name)
        return f"{self.stack_name}-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self._resources.get(logical_id)
        if resource is None:
            raise AssemblyError(f"Fn::GetAtt of unknown resource {logical_id}")
        kind = resource.get("Type", "")
        name = self.physical(logical_id)
        r, a = self.region, self.account_id
        if kind in _CLAIM_TYPES:
            cert_arn = f"arn:aws:iot:{r}:{a}:cert/{name}"
            return {
                "Id": name,
                "CertificateId": name,
                "Arn": cert_arn,
                "CertificateArn": cert_arn,
                "SecretArn": f"arn:aws:secretsmanager:{r}:{a}:secret:{self.stack_name}/{logical_id}-local",
            }.get(attribute, f"{logical_id}.{attribute}")
        arns = {
            "AWS::Lambda::Function": f"arn:aws:lambda:{r}:{a}:function:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{a}:role/{name}",
            "AWS::IoT::Policy": f"arn:aws:iot:{r}:{a}:policy/{name}",
            "AWS::IoT::ThingGroup": f"arn:aws:iot:{r}:{a}:thinggroup/{name}",
            "AWS::IoT::ThingType": f"arn:aws:iot:{r}:{a}:thingtype/{name}",
            "AWS::IoT::ProvisioningTemplate": f"arn:aws:iot:{r}:{a}:provisioningtemplate/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{r}:{a}:log-group:{name}:*",
            "AWS::SNS::Topic": f"arn:aws:sns:{r}:{a}:{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{r}:{a}:key/{logical_id.lower()}",
        }
        if attribute in ("Arn", "TemplateArn") and kind in arns:
            return arns[kind]
        if attribute == "Arn":
            service = kind.split("::")[1].lower() if kind.count("::") == 2 else "local"
            return f"arn:aws:{service}:{r}:{a}:{logical_id}"
        return f"{name}.{attribute}"


def _parameter_value(spec: Any) -> Any:
    """A parameter's value locally: its Default (no one passes parameters), a list for the list types."""
    if not isinstance(spec, Mapping):
        return ""
    default = spec.get("Default", "")
    kind = str(spec.get("Type", "String"))
    if isinstance(default, str) and (kind == "CommaDelimitedList" or kind.startswith("List<")):
        return default.split(",")
    return default
