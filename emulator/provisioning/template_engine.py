"""AWS IoT fleet-provisioning template evaluation: a pure function from (template body, parameters) to a plan.

Behaviour follows the AWS IoT developer guide, "Provisioning templates" (provision-template.md), summarised
in ../shared/reference/aws-fleet-provisioning.md section 3. Nothing here touches the registry: the service
applies the plan (and `apply_overrides` tells it what to write to a thing that already exists).

One file over 400 lines: the template language is one grammar, and its intrinsics, sections and
resource rules refer to each other; split, each part would need the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.intrinsics.evaluator import Evaluator, Rules, contains_function, describe
from emulator.provisioning.template_errors import ResourceConflictError, TemplateEngineError, TemplateError

__all__ = [
    "CERTIFICATE_ID_PARAMETER",
    "CertificatePlan",
    "ExistingThing",
    "PolicyPlan",
    "ProvisioningPlan",
    "ResourceConflictError",
    "TemplateEngineError",
    "TemplateError",
    "ThingChange",
    "ThingPlan",
    "apply_overrides",
    "certificate_status_change",
    "evaluate_template",
]

CERTIFICATE_ID_PARAMETER = "AWS::IoT::Certificate::Id"

THING_TYPE = "AWS::IoT::Thing"
CERTIFICATE_TYPE = "AWS::IoT::Certificate"
POLICY_TYPE = "AWS::IoT::Policy"

DO_NOTHING = "DO_NOTHING"
REPLACE = "REPLACE"
FAIL = "FAIL"
MERGE = "MERGE"
# UNCONFIRMED: the guide does not say what happens to an existing resource when OverrideSettings is
# absent. DO_NOTHING ("leave the resource as is") is the least surprising reading.
DEFAULT_OVERRIDE = DO_NOTHING

THING_OVERRIDES: dict[str, frozenset[str]] = {
    "AttributePayload": frozenset({DO_NOTHING, REPLACE, FAIL, MERGE}),
    "ThingTypeName": frozenset({DO_NOTHING, REPLACE, FAIL}),
    "ThingGroups": frozenset({DO_NOTHING, REPLACE, FAIL, MERGE}),
}
CERTIFICATE_OVERRIDES: dict[str, frozenset[str]] = {"Status": frozenset({DO_NOTHING, REPLACE, FAIL})}
# The guide's prose spells the keys in upper snake case while every example uses CamelCase; accept both.
_OVERRIDE_ALIASES = {
    "ATTRIBUTE_PAYLOAD": "AttributePayload",
    "THING_TYPE_NAME": "ThingTypeName",
    "THING_GROUPS": "ThingGroups",
    "STATUS": "Status",
}

TEMPLATE_SECTIONS = frozenset({"Parameters", "Mappings", "Resources", "DeviceConfiguration"})
SUPPORTED_FUNCTIONS = frozenset({"Ref", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::Sub", "Fn::FindInMap"})


def _refuse(function: str, where: str) -> Any:
    # UNCONFIRMED: no AWS source documents Fn::If, Fn::Equals, Fn::GetAtt, Fn::Base64, Conditions... in
    # provisioning templates; refusing them clearly beats a silent misreading.
    raise TemplateError(
        f"{where}: {function} is not supported by fleet provisioning templates "
        f"(supported: {', '.join(sorted(SUPPORTED_FUNCTIONS))})"
    )


# AWS IoT's dialect of the intrinsic functions: the documented six, strings only, names are the parameters.
PROVISIONING_RULES = Rules(
    functions=SUPPORTED_FUNCTIONS,
    error=TemplateError,
    unsupported=_refuse,
    lone_function=True,
    strict_text=True,
    no_value=False,
    bad_ref="{where}: Ref takes a parameter name",
    unknown_ref="Cannot resolve reference value: {name} ({where} refers to an undeclared parameter)",
    unknown_sub="{where}: ${{{name}}} is neither a Fn::Sub variable nor a template parameter",
)

# Registry name rules (IoT API reference: CreateThing, CreateThingType, CreateThingGroup, CreateBillingGroup,
# AttributePayload, CreatePolicy).
NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
ATTRIBUTE_NAME_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#-]{1,128}$")
ATTRIBUTE_VALUE_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}$")
POLICY_NAME_RE = re.compile(r"^[\w+=,.@-]{1,128}$")


# --------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ThingPlan:
    """An `AWS::IoT::Thing` resource after evaluation. `None` means the template left the property out."""

    logical_id: str
    thing_name: str
    attributes: dict[str, str] | None = None
    thing_type_name: str | None = None
    thing_groups: list[str] | None = None
    billing_group: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)  # property -> DO_NOTHING|REPLACE|FAIL|MERGE

    def override(self, prop: str) -> str:
        return self.overrides.get(prop, DEFAULT_OVERRIDE)


@dataclass(frozen=True)
class CertificatePlan:
    """An `AWS::IoT::Certificate` resource: the certificate to activate (or leave inactive)."""

    logical_id: str
    certificate_id: str
    status: str = "ACTIVE"  # ACTIVE | INACTIVE, normalised to upper case
    overrides: dict[str, str] = field(default_factory=dict)  # "Status" -> DO_NOTHING|REPLACE|FAIL

    def override(self, prop: str) -> str:
        return self.overrides.get(prop, DEFAULT_OVERRIDE)


@dataclass(frozen=True)
class PolicyPlan:
    """An `AWS::IoT::Policy` resource to attach to the certificate.

    `policy_document` is None when the template names an existing policy; for an inline document,
    `policy_name` is the hash AWS documents as the default name and the service creates the policy
    if it does not exist yet.
    """

    logical_id: str
    policy_name: str
    policy_document: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProvisioningPlan:
    things: list[ThingPlan]
    certificates: list[CertificatePlan]
    policies: list[PolicyPlan]
    device_configuration: dict[str, str]

    @property
    def thing(self) -> ThingPlan | None:
        return self.things[0] if self.things else None

    @property
    def certificate(self) -> CertificatePlan | None:
        return self.certificates[0] if self.certificates else None


# ----------------------------------------------------------------------------------------------- evaluate


def evaluate_template(
    body: str | Mapping[str, Any],
    parameters: Mapping[str, str],
    *,
    certificate_id: str | None = None,
) -> ProvisioningPlan:
    """Evaluate a fleet-provisioning template body with the request (and hook-overridden) parameters.

    `certificate_id`, when given, is the value of `AWS::IoT::Certificate::Id` and wins over anything a
    device put under that name in its parameters (a device must not name another certificate).
    Raises TemplateError with a message naming the section/resource/property at fault.
    """
    template = _load_body(body)
    unknown_sections = sorted(set(template) - TEMPLATE_SECTIONS)
    if "Conditions" in unknown_sections:
        raise TemplateError("the Conditions section is not supported by fleet provisioning templates")
    if unknown_sections:
        raise TemplateError(f"unknown template section(s): {', '.join(unknown_sections)}")

    values = _resolve_parameters(template.get("Parameters", {}), parameters, certificate_id)
    mappings = _check_mappings(template.get("Mappings", {}))
    evaluator = Evaluator(PROVISIONING_RULES, parameters=values, mappings=mappings)

    resources = template.get("Resources")
    if not isinstance(resources, dict):
        raise TemplateError("Resources: the section is required and must be an object")
    things: list[ThingPlan] = []
    certificates: list[CertificatePlan] = []
    policies: list[PolicyPlan] = []
    for logical_id, resource in resources.items():
        kind, properties, overrides = _split_resource(logical_id, resource)
        where = f"Resources.{logical_id}"
        evaluated = evaluator.evaluate(properties, f"{where}.Properties")
        if kind == THING_TYPE:
            things.append(_thing_plan(logical_id, evaluated, overrides))
        elif kind == CERTIFICATE_TYPE:
            certificates.append(_certificate_plan(logical_id, evaluated, overrides))
        elif kind == POLICY_TYPE:
            if overrides is not None:
                raise TemplateError(f"{where}: OverrideSettings are not allowed on an AWS::IoT::Policy")
            policies.append(_policy_plan(logical_id, evaluated))
        else:
            raise TemplateError(
                f"{where}: resource type {kind!r} is not allowed; a provisioning template may only declare "
                f"{THING_TYPE}, {CERTIFICATE_TYPE} and {POLICY_TYPE}"
            )
    # UNCONFIRMED: the guide describes "a thing, a certificate, and one or more policies"; RegisterThing
    # answers with a single thingName, so more than one thing or certificate is refused.
    if len(things) > 1:
        raise TemplateError(f"Resources: at most one {THING_TYPE} is allowed, found {len(things)}")
    if len(certificates) > 1:
        raise TemplateError(
            f"Resources: at most one {CERTIFICATE_TYPE} is allowed, found {len(certificates)}"
        )

    device_configuration = _device_configuration(
        evaluator.evaluate(template.get("DeviceConfiguration", {}), "DeviceConfiguration")
    )
    return ProvisioningPlan(things, certificates, policies, device_configuration)


def _load_body(body: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(body, str):
        try:
            loaded = json.loads(body)
        except json.JSONDecodeError as error:
            raise TemplateError(f"the template body is not valid JSON: {error}") from None
    else:
        loaded = body
    if not isinstance(loaded, Mapping):
        raise TemplateError("the template body must be a JSON object")
    return dict(loaded)


def _resolve_parameters(
    declared: Any, request: Mapping[str, str], certificate_id: str | None
) -> dict[str, str]:
    """Declared parameters -> values: the request's value, else the Default, else an error.

    UNCONFIRMED: request parameters the template does not declare are ignored (AWS documents only that
    the defaults fill in missing ones). `AWS::IoT::Certificate::Id` is resolvable even when undeclared.
    """
    if not isinstance(declared, Mapping):
        raise TemplateError("Parameters: the section must be an object")
    values: dict[str, str] = {}
    if certificate_id is not None:
        request = {**request, CERTIFICATE_ID_PARAMETER: certificate_id}
    for name, spec in declared.items():
        if not isinstance(spec, Mapping):
            raise TemplateError(f"Parameters.{name}: a parameter declaration must be an object")
        kind = spec.get("Type", "String")
        if kind != "String":
            # Only "String" appears in AWS's documentation of provisioning templates.
            raise TemplateError(f'Parameters.{name}: Type {kind!r} is not supported; use "String"')
        if "Default" in spec and not isinstance(spec["Default"], str):
            raise TemplateError(f"Parameters.{name}: Default must be a string")
        if name in request:
            value = request[name]
            if not isinstance(value, str):
                raise TemplateError(f"parameter {name!r} must be a string, got {type(value).__name__}")
            values[name] = value
        elif "Default" in spec:
            values[name] = spec["Default"]
        else:
            raise TemplateError(
                f"Cannot resolve reference value: {name} (the template requires this parameter and it has "
                "no default)"
            )
    if CERTIFICATE_ID_PARAMETER not in values and isinstance(request.get(CERTIFICATE_ID_PARAMETER), str):
        values[CERTIFICATE_ID_PARAMETER] = request[CERTIFICATE_ID_PARAMETER]
    return values


def _check_mappings(mappings: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Mappings are two-level maps of literals: no parameters, pseudo parameters or functions (AWS guide)."""
    if not isinstance(mappings, Mapping):
        raise TemplateError("Mappings: the section must be an object")
    for map_name, top in mappings.items():
        if not isinstance(top, Mapping):
            raise TemplateError(f"Mappings.{map_name}: a mapping must be an object of objects")
        for top_key, second in top.items():
            if not isinstance(second, Mapping):
                raise TemplateError(f"Mappings.{map_name}.{top_key}: must be an object of values")
            for second_key, value in second.items():
                where = f"Mappings.{map_name}.{top_key}.{second_key}"
                if contains_function(value):
                    raise TemplateError(f"{where}: intrinsic functions are not allowed in Mappings")
                if not isinstance(value, str) and not (
                    isinstance(value, list) and all(isinstance(item, str) for item in value)
                ):
                    raise TemplateError(f"{where}: a mapping value must be a string or a list of strings")
    return {name: {key: dict(second) for key, second in top.items()} for name, top in mappings.items()}


# ---------------------------------------------------------------------------------------------- resources


def _split_resource(logical_id: str, resource: Any) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    where = f"Resources.{logical_id}"
    if not isinstance(resource, Mapping):
        raise TemplateError(f"{where}: a resource must be an object")
    unknown = sorted(set(resource) - {"Type", "Properties", "OverrideSettings"})
    if "Condition" in unknown:
        raise TemplateError(f"{where}: Condition is not supported by fleet provisioning templates")
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = resource.get("Type")
    if not isinstance(kind, str):
        raise TemplateError(f"{where}: Type is required")
    properties = resource.get("Properties", {})
    if not isinstance(properties, Mapping):
        raise TemplateError(f"{where}.Properties: must be an object")
    overrides = resource.get("OverrideSettings")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TemplateError(f"{where}.OverrideSettings: must be an object")
    return kind, dict(properties), None if overrides is None else dict(overrides)


def _overrides(
    where: str, raw: Mapping[str, Any] | None, allowed: Mapping[str, frozenset[str]]
) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in (raw or {}).items():
        prop = _OVERRIDE_ALIASES.get(key, key)
        if prop not in allowed:
            raise TemplateError(
                f"{where}.OverrideSettings: {key!r} cannot be overridden (allowed: {', '.join(allowed)})"
            )
        if value not in allowed[prop]:
            raise TemplateError(
                f"{where}.OverrideSettings.{key}: {value!r} is not one of {', '.join(sorted(allowed[prop]))}"
            )
        result[prop] = value
    return result


def _check_properties(where: str, properties: Mapping[str, Any], allowed: Collection[str]) -> None:
    unknown = sorted(set(properties) - set(allowed))
    if unknown:
        raise TemplateError(f"{where}.Properties: unsupported propert(y/ies) {', '.join(unknown)}")


def _name(where: str, value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"{where}: {what} must be a string, got {describe(value)}")
    if not NAME_RE.match(value):
        raise TemplateError(f"{where}: {what} {value!r} must be 1-128 characters of [a-zA-Z0-9:_-]")
    return value


def _thing_plan(
    logical_id: str, properties: dict[str, Any], raw_overrides: dict[str, Any] | None
) -> ThingPlan:
    where = f"Resources.{logical_id}"
    # PackageVersions (software package catalog) exists in newer docs; the emulator does not emulate it.
    _check_properties(
        where, properties, ("ThingName", "AttributePayload", "ThingTypeName", "ThingGroups", "BillingGroup")
    )
    if "ThingName" not in properties:
        raise TemplateError(f"{where}.Properties: ThingName is required")
    thing_name = _name(f"{where}.Properties.ThingName", properties["ThingName"], "the thing name")

    attributes: dict[str, str] | None = None
    if "AttributePayload" in properties:
        payload = properties["AttributePayload"]
        if not isinstance(payload, Mapping):
            raise TemplateError(f"{where}.Properties.AttributePayload: must be an object of name: value")
        attributes = {}
        for attr_name, attr_value in payload.items():
            attr_where = f"{where}.Properties.AttributePayload.{attr_name}"
            if not ATTRIBUTE_NAME_RE.match(attr_name):
                raise TemplateError(f"{attr_where}: the attribute name must be 1-128 of [a-zA-Z0-9_.,@/:#-]")
            if not isinstance(attr_value, str):
                raise TemplateError(f"{attr_where}: the value must be a string, got {describe(attr_value)}")
            if not ATTRIBUTE_VALUE_RE.match(attr_value):
                raise TemplateError(
                    f"{attr_where}: the value {attr_value!r} must be at most 800 of [a-zA-Z0-9_.,@/:#=[]-]"
                )
            attributes[attr_name] = attr_value

    thing_type_name = None
    if properties.get("ThingTypeName") is not None:
        thing_type_name = _name(
            f"{where}.Properties.ThingTypeName", properties["ThingTypeName"], "the thing type"
        )

    thing_groups: list[str] | None = None
    if "ThingGroups" in properties:
        groups = properties["ThingGroups"]
        if not isinstance(groups, list):
            raise TemplateError(f"{where}.Properties.ThingGroups: must be a list of group names")
        thing_groups = []
        for index, group in enumerate(groups):
            group = _name(f"{where}.Properties.ThingGroups[{index}]", group, "the thing group")
            if group not in thing_groups:
                thing_groups.append(group)

    billing_group = None
    if properties.get("BillingGroup") is not None:
        billing_group = _name(
            f"{where}.Properties.BillingGroup", properties["BillingGroup"], "the billing group"
        )

    return ThingPlan(
        logical_id=logical_id,
        thing_name=thing_name,
        attributes=attributes,
        thing_type_name=thing_type_name,
        thing_groups=thing_groups,
        billing_group=billing_group,
        overrides=_overrides(where, raw_overrides, THING_OVERRIDES),
    )


def _certificate_plan(
    logical_id: str, properties: dict[str, Any], raw_overrides: dict[str, Any] | None
) -> CertificatePlan:
    where = f"Resources.{logical_id}"
    for foreign in ("CertificateSigningRequest", "CertificatePem", "CACertificatePem"):
        if foreign in properties:
            raise TemplateError(
                f"{where}.Properties.{foreign}: fleet provisioning templates may only use CertificateId "
                f'(normally {{"Ref": "{CERTIFICATE_ID_PARAMETER}"}})'
            )
    _check_properties(where, properties, ("CertificateId", "Status"))
    certificate_id = properties.get("CertificateId")
    if not isinstance(certificate_id, str) or not certificate_id:
        raise TemplateError(f"{where}.Properties: CertificateId is required and must be a non-empty string")
    status = properties.get("Status", "ACTIVE")
    # AWS's own fleet example writes "Status": "Active", so the value is case-insensitive.
    if not isinstance(status, str) or status.upper() not in ("ACTIVE", "INACTIVE"):
        raise TemplateError(f"{where}.Properties.Status: {status!r} is not ACTIVE or INACTIVE")
    return CertificatePlan(
        logical_id=logical_id,
        certificate_id=certificate_id,
        status=status.upper(),
        overrides=_overrides(where, raw_overrides, CERTIFICATE_OVERRIDES),
    )


def _policy_plan(logical_id: str, properties: dict[str, Any]) -> PolicyPlan:
    where = f"Resources.{logical_id}.Properties"
    _check_properties(where.rsplit(".", 1)[0], properties, ("PolicyName", "PolicyDocument"))
    has_name, has_document = "PolicyName" in properties, "PolicyDocument" in properties
    if has_name == has_document:
        raise TemplateError(f"{where}: set exactly one of PolicyName and PolicyDocument")
    if has_name:
        name = properties["PolicyName"]
        if not isinstance(name, str) or not POLICY_NAME_RE.match(name):
            raise TemplateError(f"{where}.PolicyName: {name!r} must be 1-128 characters of [\\w+=,.@-]")
        return PolicyPlan(logical_id=logical_id, policy_name=name)
    document = properties["PolicyDocument"]
    if isinstance(document, str):  # bulk-registration examples write the document as an escaped string
        try:
            document = json.loads(document)
        except json.JSONDecodeError as error:
            raise TemplateError(f"{where}.PolicyDocument: not valid JSON: {error}") from None
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise TemplateError(f"{where}.PolicyDocument: must be a policy object with a Statement")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    # "PolicyName ... Defaults to a hash of the policy document" (provisioning-template guide).
    name = hashlib.sha256(canonical.encode()).hexdigest()
    return PolicyPlan(logical_id=logical_id, policy_name=name, policy_document=dict(document))


def _device_configuration(value: Any) -> dict[str, str]:
    """DeviceConfiguration: flat string -> string; nested objects and lists are refused (AWS guide)."""
    if not isinstance(value, Mapping):
        raise TemplateError("DeviceConfiguration: must be an object of name: value")
    result: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            result[key] = item
        elif isinstance(item, bool):
            # UNCONFIRMED: AWS does not say how it returns non-string scalars; the emulator returns their
            # JSON spelling as a string, so "port": 8883 comes back as "8883".
            result[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            result[key] = json.dumps(item)
        elif isinstance(item, Mapping | list):
            raise TemplateError(f"DeviceConfiguration.{key}: nested values are not allowed")
        else:
            raise TemplateError(f"DeviceConfiguration.{key}: expected a string, got {describe(item)}")
    return result


# ---------------------------------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class ExistingThing:
    """What the registry holds for a thing the template names."""

    attributes: Mapping[str, str] = field(default_factory=dict)
    thing_type_name: str | None = None
    thing_groups: Collection[str] = ()
    billing_group: str | None = None


@dataclass(frozen=True)
class ThingChange:
    """What to write so the registry matches the template.

    `attributes` is the thing's complete attribute set afterwards (write it with merge=False), None to leave
    the attributes alone; `thing_type_name` is written only when `update_thing_type`; `billing_group` is the
    group to add the thing to, None for no change.
    """

    thing_name: str
    create: bool
    attributes: dict[str, str] | None = None
    thing_type_name: str | None = None
    update_thing_type: bool = False
    groups_to_add: list[str] = field(default_factory=list)
    groups_to_remove: list[str] = field(default_factory=list)
    billing_group: str | None = None

    @property
    def changes_anything(self) -> bool:
        return bool(
            self.create
            or self.attributes is not None
            or self.update_thing_type
            or self.groups_to_add
            or self.groups_to_remove
            or self.billing_group is not None
        )


def apply_overrides(existing: ExistingThing | None, plan: ThingPlan) -> ThingChange:
    """The registry writes a thing plan needs, given the thing as it exists (None: it does not exist).

    OverrideSettings decide for an existing thing, per property the template sets: DO_NOTHING leaves it,
    REPLACE writes the template's value, MERGE (attributes, groups) adds the template's to the existing,
    FAIL raises ResourceConflictError when the existing value differs from the template's.
    """
    if existing is None:
        return ThingChange(
            thing_name=plan.thing_name,
            create=True,
            attributes=dict(plan.attributes or {}),
            thing_type_name=plan.thing_type_name,
            update_thing_type=plan.thing_type_name is not None,
            groups_to_add=list(plan.thing_groups or []),
            billing_group=plan.billing_group,
        )

    attributes = _attribute_change(existing, plan)
    thing_type_name, update_thing_type = _thing_type_change(existing, plan)
    groups_to_add, groups_to_remove = _group_change(existing, plan)
    billing_group = None
    # BillingGroup has no override setting. UNCONFIRMED: the emulator only fills an empty billing group and
    # never moves a thing out of one it already belongs to (the DO_NOTHING reading).
    if plan.billing_group is not None and existing.billing_group is None:
        billing_group = plan.billing_group
    return ThingChange(
        thing_name=plan.thing_name,
        create=False,
        attributes=attributes,
        thing_type_name=thing_type_name,
        update_thing_type=update_thing_type,
        groups_to_add=groups_to_add,
        groups_to_remove=groups_to_remove,
        billing_group=billing_group,
    )


def _conflict(plan: ThingPlan, prop: str, existing: Any, wanted: Any) -> ResourceConflictError:
    return ResourceConflictError(
        f"thing {plan.thing_name!r} already exists with {prop} {existing!r}, the template sets {wanted!r} "
        f"and OverrideSettings.{prop} is FAIL"
    )


def _attribute_change(existing: ExistingThing, plan: ThingPlan) -> dict[str, str] | None:
    if plan.attributes is None:
        return None
    current = dict(existing.attributes)
    mode = plan.override("AttributePayload")
    if mode == DO_NOTHING:
        return None
    if mode == FAIL:
        if current != plan.attributes:
            raise _conflict(plan, "AttributePayload", current, plan.attributes)
        return None
    wanted = {**current, **plan.attributes} if mode == MERGE else dict(plan.attributes)
    return wanted if wanted != current else None


def _thing_type_change(existing: ExistingThing, plan: ThingPlan) -> tuple[str | None, bool]:
    if plan.thing_type_name is None or plan.thing_type_name == existing.thing_type_name:
        return existing.thing_type_name, False
    mode = plan.override("ThingTypeName")
    if mode == FAIL:
        raise _conflict(plan, "ThingTypeName", existing.thing_type_name, plan.thing_type_name)
    if mode == REPLACE:
        return plan.thing_type_name, True
    return existing.thing_type_name, False


def _group_change(existing: ExistingThing, plan: ThingPlan) -> tuple[list[str], list[str]]:
    if plan.thing_groups is None:
        return [], []
    current = list(existing.thing_groups)
    missing = [group for group in plan.thing_groups if group not in current]
    extra = [group for group in current if group not in plan.thing_groups]
    mode = plan.override("ThingGroups")
    if mode == FAIL:
        if missing or extra:
            raise _conflict(plan, "ThingGroups", sorted(current), sorted(plan.thing_groups))
        return [], []
    if mode == REPLACE:
        return missing, extra
    if mode == MERGE:
        return missing, []
    return [], []


def certificate_status_change(current_status: str, plan: CertificatePlan) -> str | None:
    """The status to set on the certificate, or None to leave it.

    A certificate still PENDING_ACTIVATION is being provisioned now, so it takes the template's status.
    One that is already ACTIVE/INACTIVE (a retried RegisterThing) follows OverrideSettings.Status.
    """
    if current_status == plan.status:
        return None
    if current_status == "PENDING_ACTIVATION":
        return plan.status
    mode = plan.override("Status")
    if mode == FAIL:
        raise ResourceConflictError(
            f"certificate {plan.certificate_id} is already {current_status}, the template sets {plan.status} "
            "and OverrideSettings.Status is FAIL"
        )
    return plan.status if mode == REPLACE else None
