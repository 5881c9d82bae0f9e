"""The provisioning template body, generated from the configuration (never hand-written JSON).

The body is a JSON *string* in CloudFormation, so it is rendered here, at synth, where its size and the
template's name can be checked against AWS's limits before anything is deployed.
"""

from __future__ import annotations

import json
from typing import Any

from infra import constants as c
from infra import names
from infra.config import TEMPLATE_NAME_RE, ConfigError, FleetConfig

MAX_TEMPLATE_BODY = 10_240


def template_body(config: FleetConfig) -> dict[str, Any]:
    """The template as a dict: parameters, thing + certificate + device policy, device configuration."""
    parameters: dict[str, Any] = {
        c.PARAM_SERIAL: {"Type": "String"},
        c.PARAM_CERTIFICATE_ID: {"Type": "String"},
        # Overridden by the hook from the registry; the default keeps a hook-less evaluation valid.
        c.PARAM_BATCH: {"Type": "String", "Default": names.BATCH_DEFAULT},
    }
    attributes: dict[str, Any] = {names.BATCH_ATTRIBUTE: {"Ref": c.PARAM_BATCH}}
    for attribute in config.thing_attributes:
        parameters[attribute] = {"Type": "String", "Default": names.ATTRIBUTE_DEFAULT}
        attributes[attribute] = {"Ref": attribute}

    thing_properties: dict[str, Any] = {
        "ThingName": {"Fn::Join": ["", [config.thing_name_prefix, {"Ref": c.PARAM_SERIAL}]]},
        "AttributePayload": attributes,
        "ThingGroups": [config.thing_group_name],
    }
    # An existing thing (a serial reset after an RMA) keeps its identity; its registry data is merged in.
    override: dict[str, str] = {"AttributePayload": "MERGE", "ThingGroups": "MERGE"}
    if config.thing_type_name:
        thing_properties["ThingTypeName"] = config.thing_type_name
        override["ThingTypeName"] = "REPLACE"

    return {
        "Parameters": parameters,
        "Resources": {
            names.TEMPLATE_THING: {
                "Type": "AWS::IoT::Thing",
                "Properties": thing_properties,
                "OverrideSettings": override,
            },
            names.TEMPLATE_CERTIFICATE: {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": c.PARAM_CERTIFICATE_ID}, "Status": "ACTIVE"},
            },
            names.TEMPLATE_POLICY: {
                "Type": "AWS::IoT::Policy",
                "Properties": {"PolicyName": names.device_policy_name(config)},
            },
        },
        "DeviceConfiguration": {"topic_root": config.device_topic_root, **config.device_configuration},
    }


def hook_parameters(
    config: FleetConfig, *, rotation: bool = False
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where the hook takes each template parameter from: (the device, the registry); see infra/hook.py.
    A rotation leaves the thing as it is: the registry gives it nothing."""
    return tuple(c.DEVICE_PARAMETERS), () if rotation else (c.PARAM_BATCH, *config.thing_attributes)


def rotation_template_body(config: FleetConfig) -> dict[str, Any]:
    """The rotation template: the thing as it is, the new certificate ACTIVE, attached to it with the
    device policy (docs/rotation.md). The hook has checked that the requester is that thing."""
    return {
        "Parameters": {c.PARAM_SERIAL: {"Type": "String"}, c.PARAM_CERTIFICATE_ID: {"Type": "String"}},
        "Resources": {
            names.TEMPLATE_THING: {
                "Type": "AWS::IoT::Thing",
                "Properties": {
                    "ThingName": {"Fn::Join": ["", [config.thing_name_prefix, {"Ref": c.PARAM_SERIAL}]]}
                },
                "OverrideSettings": {"AttributePayload": "DO_NOTHING", "ThingGroups": "DO_NOTHING"},
            },
            names.TEMPLATE_CERTIFICATE: {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": c.PARAM_CERTIFICATE_ID}, "Status": "ACTIVE"},
            },
            names.TEMPLATE_POLICY: {
                "Type": "AWS::IoT::Policy",
                "Properties": {"PolicyName": names.device_policy_name(config)},
            },
        },
        "DeviceConfiguration": {"topic_root": config.device_topic_root, **config.device_configuration},
    }


def render_rotation_template_body(config: FleetConfig) -> str:
    document = rotation_template_body(config)
    check_parameters(document, config, rotation=True)
    return _sized(document, config)


def check_parameters(body: dict[str, Any], config: FleetConfig, *, rotation: bool = False) -> None:
    """The template's parameters are exactly those the hook sources: every one but the certificate id is
    the device's (its serial) or the registry's (the hook's overrides). A parameter the hook did not know
    would reach the template from the device's request (or fail it) after the hook allowed it."""
    declared = set(body.get("Parameters", {})) - {c.PARAM_CERTIFICATE_ID}
    from_device, from_registry = hook_parameters(config, rotation=rotation)
    sourced = set(from_device) | set(from_registry)
    if declared != sourced:
        unknown, unused = sorted(declared - sourced), sorted(sourced - declared)
        raise ConfigError(
            "thing_attributes",
            f"the provisioning template's parameters and the hook's differ (template only: {unknown}, "
            f"hook only: {unused})",
        )


def render_template_body(config: FleetConfig) -> str:
    """The body as CloudFormation's string; raises ConfigError when AWS would reject it."""
    if not TEMPLATE_NAME_RE.fullmatch(config.template_name):
        raise ConfigError("template_name", "must be 1-36 characters of [0-9A-Za-z_-]")
    document = template_body(config)
    check_parameters(document, config)
    return _sized(document, config)


def _sized(document: dict[str, Any], config: FleetConfig) -> str:
    body = json.dumps(document, separators=(",", ":"))
    if len(body) > MAX_TEMPLATE_BODY:
        raise ConfigError(
            _largest_contributor(config),
            f"makes the provisioning template body {len(body)} characters; "
            f"AWS allows at most {MAX_TEMPLATE_BODY}",
        )
    return body


def _largest_contributor(config: FleetConfig) -> str:
    """Name the key a user should shorten: the device configuration or the thing attributes."""
    dc = len(json.dumps(config.device_configuration))
    attributes = sum(2 * len(a) + 60 for a in config.thing_attributes)  # parameter + attribute entries
    return "device_configuration" if dc >= attributes else "thing_attributes"
