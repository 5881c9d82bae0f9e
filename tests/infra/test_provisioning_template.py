from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra import constants as c
from infra.config import ConfigError
from infra.device_policy import DevicePolicy
from infra.provisioning_template import ProvisioningRole, ProvisioningTemplate
from infra.template_body import MAX_TEMPLATE_BODY, render_template_body
from infra.things import ThingGrouping
from tests.infra.conftest import by_prefix, make_config, only, render

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-provisioning_template")

CONFIG = make_config(
    stack_name="Plant7",
    template_name="Plant7_Template-v2",
    thing_name_prefix="rx-",
    thing_group_name="plant7-devices",
    thing_type_name="rx65n-sensor",
    thing_attributes=["model", "hw_rev"],
    device_configuration={"telemetry_interval_s": "30", "ota_channel": "stable"},
    device_topic_root="plant7",
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    from tests.infra.conftest import synth_construct

    def build(stack: Any) -> None:
        hook = lambda_.Function(
            stack,
            "Hook",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=lambda_.Code.from_inline("def handler(e, c): return {}"),
        )
        policy = DevicePolicy(stack, c.ID_DEVICE_POLICY, config=CONFIG)
        things = ThingGrouping(stack, "Things", config=CONFIG)
        role = ProvisioningRole(stack, c.ID_ROLE)
        ProvisioningTemplate(
            stack,
            c.ID_TEMPLATE,
            config=CONFIG,
            role=role.role,
            hook=hook,
            depends_on=[policy.policy, things.thing_group],
        )

    tpl, _ = synth_construct(tmp_path_factory.mktemp("template"), build)
    return tpl


def _template(template: Template) -> dict[str, Any]:
    return only(template, "AWS::IoT::ProvisioningTemplate")


def _body(template: Template) -> dict[str, Any]:
    body = _template(template)["Properties"]["TemplateBody"]
    assert isinstance(body, str) and len(body) <= MAX_TEMPLATE_BODY
    return json.loads(body)


def test_role_is_trusted_by_iot_with_the_registration_policy(template: Template) -> None:
    role = by_prefix(template, "AWS::IAM::Role", c.ID_ROLE)["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"}}
    ]
    assert [render(p) for p in role["ManagedPolicyArns"]] == [
        "arn:aws:iam::aws:policy/service-role/AWSIoTThingsRegistration"
    ]


def test_template_is_enabled_fleet_provisioning_with_the_hook(template: Template) -> None:
    resource = _template(template)
    props = resource["Properties"]
    assert props["TemplateName"] == "Plant7_Template-v2"
    assert props["TemplateType"] == "FLEET_PROVISIONING"
    assert props["Enabled"] is True
    assert props["PreProvisioningHook"]["PayloadVersion"] == "2020-04-01"
    target = props["PreProvisioningHook"]["TargetArn"]["Fn::GetAtt"]
    assert target[0].startswith("Hook") and target[1] == "Arn"
    assert props["ProvisioningRoleArn"]["Fn::GetAtt"][0].startswith(c.ID_ROLE)
    # The device policy and thing group the body names exist before the template does.
    assert any(d.startswith(c.ID_DEVICE_POLICY) for d in resource["DependsOn"])
    assert any(d.startswith("ThingsGroup") for d in resource["DependsOn"])


def test_body_parameters_include_serial_certificate_and_overridable_ones_with_defaults(
    template: Template,
) -> None:
    assert _body(template)["Parameters"] == {
        c.PARAM_SERIAL: {"Type": "String"},
        c.PARAM_CERTIFICATE_ID: {"Type": "String"},
        c.PARAM_BATCH: {"Type": "String", "Default": "none"},
        "model": {"Type": "String", "Default": "unknown"},
        "hw_rev": {"Type": "String", "Default": "unknown"},
    }


def test_body_thing_is_prefix_plus_serial_with_attributes_group_and_type(template: Template) -> None:
    resources = _body(template)["Resources"]
    assert {r["Type"] for r in resources.values()} == {
        "AWS::IoT::Thing",
        "AWS::IoT::Certificate",
        "AWS::IoT::Policy",
    }
    thing = next(r for r in resources.values() if r["Type"] == "AWS::IoT::Thing")["Properties"]
    assert thing["ThingName"] == {"Fn::Join": ["", ["rx-", {"Ref": c.PARAM_SERIAL}]]}
    assert thing["AttributePayload"] == {
        "batch": {"Ref": "Batch"},
        "model": {"Ref": "model"},
        "hw_rev": {"Ref": "hw_rev"},
    }
    assert thing["ThingGroups"] == ["plant7-devices"]
    assert thing["ThingTypeName"] == "rx65n-sensor"


def test_body_activates_the_certificate_and_attaches_the_device_policy_by_name(template: Template) -> None:
    resources = _body(template)["Resources"]
    cert = next(r for r in resources.values() if r["Type"] == "AWS::IoT::Certificate")["Properties"]
    assert cert == {"CertificateId": {"Ref": c.PARAM_CERTIFICATE_ID}, "Status": "ACTIVE"}
    policy = next(r for r in resources.values() if r["Type"] == "AWS::IoT::Policy")["Properties"]
    device_policy = only(template, "AWS::IoT::Policy")["Properties"]
    assert policy == {"PolicyName": device_policy["PolicyName"]} == {"PolicyName": "Plant7-DevicePolicy"}


def test_body_device_configuration_has_topic_root_and_the_configured_values(template: Template) -> None:
    assert _body(template)["DeviceConfiguration"] == {
        "topic_root": "plant7",
        "telemetry_interval_s": "30",
        "ota_channel": "stable",
    }


def test_thing_group_and_thing_type_are_created(template: Template) -> None:
    template.has_resource_properties("AWS::IoT::ThingGroup", {"ThingGroupName": "plant7-devices"})
    template.has_resource_properties("AWS::IoT::ThingType", {"ThingTypeName": "rx65n-sensor"})


def test_no_thing_type_when_none_is_configured() -> None:
    body = json.loads(render_template_body(make_config(thing_type_name=None)))
    thing = body["Resources"]["thing"]
    assert "ThingTypeName" not in thing["Properties"]
    assert "ThingTypeName" not in thing["OverrideSettings"]


def test_body_over_10240_characters_is_refused_naming_the_key() -> None:
    config = make_config(device_configuration={f"k{i}": "v" * 200 for i in range(60)})
    with pytest.raises(ConfigError) as caught:
        render_template_body(config)
    assert str(caught.value).startswith("fleet.device_configuration: ")
    assert "10240" in str(caught.value)


def test_body_just_under_the_limit_is_accepted() -> None:
    base = len(render_template_body(make_config(device_configuration={"k": ""})))
    config = make_config(device_configuration={"k": "v" * (MAX_TEMPLATE_BODY - base)})
    assert len(render_template_body(config)) == MAX_TEMPLATE_BODY


def test_template_parameters_equal_the_hooks_at_synth(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parameter the hook does not source would come from the device's request, after the hook allowed
    it: synth refuses a template whose parameters and the hook's lists differ."""
    from infra import template_body as body_module

    config = make_config(thing_attributes=["model", "hw_rev"])
    body = body_module.template_body(config)
    body_module.check_parameters(body, config)  # the generated body and the hook agree
    assert set(body["Parameters"]) == {
        "SerialNumber",
        "AWS::IoT::Certificate::Id",
        "Batch",
        "model",
        "hw_rev",
    }

    real = body_module.template_body

    def with_extra(cfg: Any) -> dict[str, Any]:
        tampered = real(cfg)
        tampered["Parameters"]["Location"] = {"Type": "String"}
        return tampered

    monkeypatch.setattr(body_module, "template_body", with_extra)
    with pytest.raises(ConfigError, match=r"template only: \['Location'\]"):
        render_template_body(config)

    def without_attribute(cfg: Any) -> dict[str, Any]:
        tampered = real(cfg)
        del tampered["Parameters"]["hw_rev"]
        return tampered

    monkeypatch.setattr(body_module, "template_body", without_attribute)
    with pytest.raises(ConfigError, match=r"hook only: \['hw_rev'\]"):
        render_template_body(config)
