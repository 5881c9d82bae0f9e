"""Provisioning-template evaluation: every intrinsic, section, resource rule and override setting.

One file over 400 lines: one test per rule of the template language, beside the others.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from emulator.provisioning.template_engine import (
    CERTIFICATE_ID_PARAMETER,
    CertificatePlan,
    ExistingThing,
    ProvisioningPlan,
    ThingPlan,
    apply_overrides,
    certificate_status_change,
    evaluate_template,
)
from emulator.provisioning.template_errors import ResourceConflictError, TemplateEngineError, TemplateError

CERT_ID = "a" * 64

# The shape the stack synthesizes (infra/template_body.py) with one configured attribute.
PROJECT_TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "SerialNumber": {"Type": "String"},
        CERTIFICATE_ID_PARAMETER: {"Type": "String"},
        "Batch": {"Type": "String", "Default": "none"},
        "hw_revision": {"Type": "String", "Default": "unknown"},
    },
    "Resources": {
        "thing": {
            "Type": "AWS::IoT::Thing",
            "Properties": {
                "ThingName": {"Fn::Join": ["", ["device-", {"Ref": "SerialNumber"}]]},
                "AttributePayload": {"batch": {"Ref": "Batch"}, "hw_revision": {"Ref": "hw_revision"}},
                "ThingGroups": ["provisioned-devices"],
            },
            "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "MERGE"},
        },
        "certificate": {
            "Type": "AWS::IoT::Certificate",
            "Properties": {"CertificateId": {"Ref": CERTIFICATE_ID_PARAMETER}, "Status": "ACTIVE"},
        },
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "FleetProvisioning-device"}},
    },
    "DeviceConfiguration": {"topic_root": "devices", "ntp": "pool.ntp.org"},
}


def template(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(PROJECT_TEMPLATE)
    body.update(changes)
    return body


def with_thing_properties(**properties: Any) -> dict[str, Any]:
    body = template()
    body["Resources"]["thing"]["Properties"].update(properties)
    return body


def evaluate(body: Any, **parameters: str) -> ProvisioningPlan:
    return evaluate_template(body, {"SerialNumber": "S", **parameters}, certificate_id=CERT_ID)


def device_config(value: Any, parameters: dict[str, str] | None = None, **sections: Any) -> dict[str, str]:
    """Evaluate `value` as a DeviceConfiguration entry; returns the whole device configuration."""
    body = template(DeviceConfiguration={"value": value}, **sections)
    return evaluate_template(
        body, {"SerialNumber": "SN1", **(parameters or {})}, certificate_id=CERT_ID
    ).device_configuration


def value_of(node: Any, parameters: dict[str, str] | None = None, **sections: Any) -> str:
    return device_config(node, parameters, **sections)["value"]


def fails(body: Any, parameters: dict[str, str] | None = None, match: str | None = None) -> TemplateError:
    with pytest.raises(TemplateError, match=match) as caught:
        evaluate_template(body, {"SerialNumber": "SN1", **(parameters or {})}, certificate_id=CERT_ID)
    return caught.value


# ------------------------------------------------------------------------------------------------ whole


def test_project_template_evaluates_to_a_plan() -> None:
    plan = evaluate_template(
        json.dumps(PROJECT_TEMPLATE), {"SerialNumber": "SN-0001", "Batch": "b7"}, certificate_id=CERT_ID
    )
    thing = plan.thing
    assert thing is not None
    assert thing.logical_id == "thing"
    assert thing.thing_name == "device-SN-0001"
    assert thing.attributes == {"batch": "b7", "hw_revision": "unknown"}
    assert thing.thing_groups == ["provisioned-devices"]
    assert thing.thing_type_name is None and thing.billing_group is None
    assert thing.overrides == {"AttributePayload": "MERGE", "ThingGroups": "MERGE"}
    assert plan.certificates == [CertificatePlan("certificate", CERT_ID, "ACTIVE", {})]
    assert [(p.logical_id, p.policy_name, p.policy_document) for p in plan.policies] == [
        ("policy", "FleetProvisioning-device", None)
    ]
    assert plan.device_configuration == {"topic_root": "devices", "ntp": "pool.ntp.org"}


def test_aws_documented_fleet_example_evaluates() -> None:
    # The fleet-provisioning example of the AWS guide: Mappings, FindInMap in DeviceConfiguration,
    # "Status": "Active", BillingGroup, inline PolicyDocument object.
    body = {
        "Parameters": {"SerialNumber": {"Type": "String"}, "DeviceLocation": {"Type": "String"}},
        "Mappings": {"LocationTable": {"Seattle": {"LocationUrl": "https://example.aws"}}},
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": {
                    "ThingName": {"Ref": "SerialNumber"},
                    "AttributePayload": {"version": "v1", "serialNumber": "serialNumber"},
                    "ThingTypeName": {"Fn::Join": ["", ["ThingPrefix_", {"Ref": "SerialNumber"}]]},
                    "ThingGroups": ["v1-lightbulbs", "WA"],
                    "BillingGroup": "LightBulbBillingGroup",
                },
                "OverrideSettings": {
                    "AttributePayload": "MERGE",
                    "ThingTypeName": "REPLACE",
                    "ThingGroups": "DO_NOTHING",
                },
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": CERTIFICATE_ID_PARAMETER}, "Status": "Active"},
            },
            "policy": {
                "Type": "AWS::IoT::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["iot:Publish"],
                                "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"],
                            }
                        ],
                    }
                },
            },
        },
        "DeviceConfiguration": {
            "FallbackUrl": "https://www.example.com/test-site",
            "LocationUrl": {"Fn::FindInMap": ["LocationTable", {"Ref": "DeviceLocation"}, "LocationUrl"]},
        },
    }
    plan = evaluate(body, SerialNumber="bulb1", DeviceLocation="Seattle")
    assert plan.thing is not None and plan.thing.thing_type_name == "ThingPrefix_bulb1"
    assert plan.thing.billing_group == "LightBulbBillingGroup"
    assert plan.certificate is not None and plan.certificate.status == "ACTIVE"
    assert plan.device_configuration["LocationUrl"] == "https://example.aws"
    assert plan.policies[0].policy_document is not None


@pytest.mark.parametrize("body", ["{not json", "[]", '"a string"', 42])
def test_body_must_be_a_json_object(body: Any) -> None:
    with pytest.raises(TemplateError, match="JSON"):
        evaluate_template(body, {})


def test_errors_carry_status_and_code() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate_template(PROJECT_TEMPLATE, {}, certificate_id=CERT_ID)
    assert caught.value.status_code == 400
    assert caught.value.error_code == "InvalidParameters"
    assert "SerialNumber" in caught.value.message
    assert issubclass(ResourceConflictError, TemplateEngineError)
    assert (ResourceConflictError.status_code, ResourceConflictError.error_code) == (
        409,
        "ResourceConflictsException",
    )


@pytest.mark.parametrize("section", ["Conditions", "Outputs", "Transform"])
def test_sections_outside_the_provisioning_language_are_refused(section: str) -> None:
    error = fails(template(**{section: {}}), match=section)
    if section == "Conditions":
        assert "not supported by fleet provisioning templates" in error.message


# ------------------------------------------------------------------------------------------- parameters


def test_missing_parameter_without_default_fails_naming_it() -> None:
    with pytest.raises(TemplateError, match="Cannot resolve reference value: SerialNumber"):
        evaluate_template(PROJECT_TEMPLATE, {}, certificate_id=CERT_ID)


def test_default_applies_only_when_the_request_omits_the_parameter() -> None:
    assert value_of({"Ref": "Batch"}) == "none"
    assert value_of({"Ref": "Batch"}, {"Batch": "b1"}) == "b1"
    assert value_of({"Ref": "Batch"}, {"Batch": ""}) == ""  # an empty value is a value


def test_undeclared_request_parameters_are_ignored() -> None:
    assert value_of({"Ref": "SerialNumber"}, {"Extra": "x"}) == "SN1"
    fails(
        template(DeviceConfiguration={"v": {"Ref": "Extra"}}),
        {"Extra": "x"},
        match="Cannot resolve reference value: Extra",
    )


def test_request_values_must_be_strings() -> None:
    fails(template(), {"Batch": 7}, match="'Batch' must be a string")  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "declaration, match",
    [
        ({"Type": "Number"}, "Type 'Number' is not supported"),
        ({"Type": "String", "Default": 3}, "Default must be a string"),
        ("String", "must be an object"),
    ],
)
def test_bad_parameter_declarations(declaration: Any, match: str) -> None:
    body = template()
    body["Parameters"]["Odd"] = declaration
    fails(body, {"Odd": "x"} if match != "Default must be a string" else {}, match=match)


def test_parameters_section_must_be_an_object() -> None:
    fails(template(Parameters=["SerialNumber"]), match="Parameters: the section must be an object")


def test_certificate_id_comes_from_the_service_not_the_device() -> None:
    plan = evaluate_template(
        PROJECT_TEMPLATE, {"SerialNumber": "S", CERTIFICATE_ID_PARAMETER: "b" * 64}, certificate_id=CERT_ID
    )
    assert plan.certificate is not None and plan.certificate.certificate_id == CERT_ID


def test_certificate_id_resolves_even_when_undeclared() -> None:
    body = template()
    del body["Parameters"][CERTIFICATE_ID_PARAMETER]
    plan = evaluate(body)
    assert plan.certificate is not None and plan.certificate.certificate_id == CERT_ID


# ------------------------------------------------------------------------------------------ intrinsics


def test_ref_to_an_unknown_name_fails() -> None:
    fails(template(DeviceConfiguration={"v": {"Ref": "Nope"}}), match="Cannot resolve reference value: Nope")


def test_ref_takes_a_name() -> None:
    fails(template(DeviceConfiguration={"v": {"Ref": ["SerialNumber"]}}), match="Ref takes a parameter name")


def test_join() -> None:
    assert value_of({"Fn::Join": ["-", ["a", {"Ref": "SerialNumber"}, "c"]]}) == "a-SN1-c"
    assert value_of({"Fn::Join": ["", ["x", "y"]]}) == "xy"
    assert value_of({"Fn::Join": [",", []]}) == ""
    assert value_of({"Fn::Join": ["+", {"Fn::Split": [",", "a,b"]}]}) == "a+b"


@pytest.mark.parametrize(
    "argument, match",
    [
        ("a", r"Fn::Join takes \[delimiter, \[values...\]\]"),
        (["-", "ab"], "expected a list"),
        (["-", ["a", 1]], r"\[1\]: expected a string, got int 1"),
        (["-", ["a", None]], "expected a string, got null"),
        ([1, ["a"]], "expected a string"),
    ],
)
def test_join_failures(argument: Any, match: str) -> None:
    fails(template(DeviceConfiguration={"v": {"Fn::Join": argument}}), match=match)


def test_select() -> None:
    assert value_of({"Fn::Select": [1, ["a", "b", "c"]]}) == "b"
    assert value_of({"Fn::Select": ["0", ["a", "b"]]}) == "a"  # a string of digits, as CloudFormation
    assert (
        value_of(
            {"Fn::Select": [2, {"Fn::Split": ["-", {"Ref": "SerialNumber"}]}]},
            {"SerialNumber": "acme-line3-0042"},
        )
        == "0042"
    )


@pytest.mark.parametrize(
    "argument, match",
    [
        ([3, ["a", "b", "c"]], "index 3 is out of range for a list of 3"),
        ([-1, ["a"]], "index -1 is out of range"),
        ([0, []], "index 0 is out of range for a list of 0"),
        ([1, ["a", None]], r"the selected value \(index 1\) is null"),
        (["one", ["a"]], "the index must be a non-negative integer"),
        ([True, ["a", "b"]], "the index must be a non-negative integer"),
        ([0, "a,b"], "expected a list"),
        ([0], r"Fn::Select takes \[index, \[values...\]\]"),
    ],
)
def test_select_failures_are_provisioning_errors(argument: Any, match: str) -> None:
    # AWS: "Fn::Select does not check for null values or if the index is out of bounds ... Both conditions
    # result in a provisioning error".
    fails(template(DeviceConfiguration={"v": {"Fn::Select": argument}}), match=match)


def test_select_out_of_range_from_a_device_parameter() -> None:
    line = {"Fn::Select": [1, {"Fn::Split": ["-", {"Ref": "SerialNumber"}]}]}
    body = template(DeviceConfiguration={"line": line})
    fails(body, {"SerialNumber": "nodash"}, match="index 1 is out of range for a list of 1")


@pytest.mark.parametrize("index", ["²", "١", "1.5", " 1", "-1", ""])
def test_select_index_from_a_device_parameter_is_validated(index: str) -> None:
    # A device chooses the index: "²" and "١" are digits to str.isdigit() yet not to int(), and once escaped
    # as a ValueError (an InternalFailure reply) instead of InvalidParameters.
    body = template(DeviceConfiguration={"v": {"Fn::Select": [{"Ref": "Index"}, ["a", "b"]]}})
    body["Parameters"]["Index"] = {"Type": "String"}
    error = fails(body, {"Index": index}, match=r"DeviceConfiguration\.v\.Fn::Select\[0\]: the index must be")
    assert (error.status_code, error.error_code) == (400, "InvalidParameters")


def test_split() -> None:
    assert device_config({"Fn::Join": ["|", {"Fn::Split": [",", "a,,b"]}]})["value"] == "a||b"
    assert value_of({"Fn::Select": [0, {"Fn::Split": [":", "no-delimiter"]}]}) == "no-delimiter"


@pytest.mark.parametrize(
    "argument, match",
    [
        (["", "abc"], "the delimiter must not be empty"),
        ([",", ["a"]], "expected a string, got a list"),
        ([","], r"Fn::Split takes \[delimiter, string\]"),
    ],
)
def test_split_failures(argument: Any, match: str) -> None:
    fails(template(DeviceConfiguration={"v": {"Fn::Join": ["", {"Fn::Split": argument}]}}), match=match)


def test_sub_string_form() -> None:
    assert value_of({"Fn::Sub": "device-${SerialNumber}/${Batch}"}) == "device-SN1/none"
    assert value_of({"Fn::Sub": "cert ${AWS::IoT::Certificate::Id}"}) == f"cert {CERT_ID}"
    assert value_of({"Fn::Sub": "no variables"}) == "no variables"


def test_sub_literal_escape() -> None:
    assert value_of({"Fn::Sub": "${!SerialNumber} is ${SerialNumber}"}) == "${SerialNumber} is SN1"
    assert value_of({"Fn::Sub": "${!Literal}"}) == "${Literal}"


def test_sub_list_form_with_variables() -> None:
    node = {
        "Fn::Sub": [
            "${Prefix}-${SerialNumber}-${Line}",
            {
                "Prefix": "dev",
                "Line": {"Fn::Select": [1, {"Fn::Split": ["-", "acme-l3"]}]},
            },
        ]
    }
    assert value_of(node) == "dev-SN1-l3"
    # A Fn::Sub variable shadows a parameter of the same name (as in CloudFormation).
    assert value_of({"Fn::Sub": ["${SerialNumber}", {"SerialNumber": "local"}]}) == "local"


@pytest.mark.parametrize(
    "argument, match",
    [
        ("${Unknown}", r"\$\{Unknown\} is neither a Fn::Sub variable nor a template parameter"),
        (["${A}", {"A": ["x"]}], "expected a string, got a list"),
        (["${A}"], "Fn::Sub takes a string or"),
        (["${A}", ["A", "x"]], "Fn::Sub takes a string or"),
        ({"Ref": "SerialNumber"}, "the Fn::Sub template must be a literal string"),
    ],
)
def test_sub_failures(argument: Any, match: str) -> None:
    fails(template(DeviceConfiguration={"v": {"Fn::Sub": argument}}), match=match)


MAPPINGS = {"Lines": {"acme": {"group": "acme-devices", "regions": ["eu", "us"]}, "none": {"group": "misc"}}}


def test_find_in_map() -> None:
    assert value_of({"Fn::FindInMap": ["Lines", "acme", "group"]}, Mappings=MAPPINGS) == "acme-devices"
    assert value_of({"Fn::FindInMap": ["Lines", {"Ref": "Batch"}, "group"]}, Mappings=MAPPINGS) == "misc"
    assert (
        value_of({"Fn::Select": [1, {"Fn::FindInMap": ["Lines", "acme", "regions"]}]}, Mappings=MAPPINGS)
        == "us"
    )


@pytest.mark.parametrize(
    "argument, match",
    [
        (["Nope", "acme", "group"], "no mapping named 'Nope'"),
        (["Lines", "nope", "group"], "mapping 'Lines' has no key 'nope'"),
        (["Lines", "acme", "nope"], "has no key 'nope'"),
        (["Lines", "acme"], r"Fn::FindInMap takes \[MapName, TopLevelKey, SecondLevelKey\]"),
        (["Lines", {"Ref": "Missing"}, "group"], "Cannot resolve reference value: Missing"),
    ],
)
def test_find_in_map_failures(argument: Any, match: str) -> None:
    fails(template(Mappings=MAPPINGS, DeviceConfiguration={"v": {"Fn::FindInMap": argument}}), match=match)


@pytest.mark.parametrize(
    "mappings, match",
    [
        ({"M": {"k": {"v": {"Ref": "SerialNumber"}}}}, "intrinsic functions are not allowed in Mappings"),
        ({"M": {"k": {"v": {"Fn::Join": ["", ["a"]]}}}}, "intrinsic functions are not allowed in Mappings"),
        ({"M": {"k": {"v": ["a", {"Fn::Sub": "x"}]}}}, "intrinsic functions are not allowed in Mappings"),
        ({"M": {"k": {"v": 1}}}, "a mapping value must be a string or a list of strings"),
        ({"M": {"k": "v"}}, "must be an object of values"),
        ({"M": ["k"]}, "a mapping must be an object of objects"),
        (["M"], "Mappings: the section must be an object"),
    ],
)
def test_mappings_are_literal_two_level_maps(mappings: Any, match: str) -> None:
    # Checked on every evaluation, even when no Fn::FindInMap reads the offending entry.
    fails(template(Mappings=mappings), match=match)


def test_nested_combinations() -> None:
    node = {
        "Fn::Join": [
            "/",
            [
                {
                    "Fn::FindInMap": [
                        "Lines",
                        {"Fn::Select": [0, {"Fn::Split": ["-", {"Ref": "SerialNumber"}]}]},
                        "group",
                    ]
                },
                {"Fn::Sub": ["${X}", {"X": {"Fn::Join": ["", [{"Ref": "Batch"}, "!"]]}}]},
            ],
        ]
    }
    assert value_of(node, {"SerialNumber": "acme-0001"}, Mappings=MAPPINGS) == "acme-devices/none!"


@pytest.mark.parametrize(
    "function",
    [
        "Fn::If",
        "Fn::Equals",
        "Fn::GetAtt",
        "Fn::Base64",
        "Fn::ImportValue",
        "Fn::Not",
        "Fn::Length",
        "Condition",
    ],
)
def test_functions_outside_the_documented_set_are_refused(function: str) -> None:
    error = fails(template(DeviceConfiguration={"v": {function: ["a", "b"]}}), match=function)
    assert "not supported by fleet provisioning templates" in error.message


def test_a_function_must_be_alone_in_its_object() -> None:
    fails(
        template(DeviceConfiguration={"v": {"Ref": "SerialNumber", "Other": "x"}}),
        match="must be the only key of its object",
    )


def test_error_messages_name_the_place() -> None:
    error = fails(with_thing_properties(ThingName={"Fn::Select": [5, ["a"]]}))
    assert error.message.startswith("Resources.thing.Properties.ThingName.Fn::Select")


# ------------------------------------------------------------------------------------------- resources


def test_resources_section_is_required() -> None:
    body = template()
    del body["Resources"]
    fails(body, match="Resources: the section is required")


@pytest.mark.parametrize("kind", ["AWS::IoT::ThingGroup", "AWS::Lambda::Function", "AWS::IoT::ThingType"])
def test_only_thing_certificate_and_policy_resources(kind: str) -> None:
    body = template()
    body["Resources"]["extra"] = {"Type": kind, "Properties": {}}
    fails(body, match=f"resource type '{kind}' is not allowed")


@pytest.mark.parametrize(
    "resource, match",
    [
        ({"Properties": {}}, "Type is required"),
        ("thing", "a resource must be an object"),
        ({"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "p"}, "DependsOn": "x"}, "unknown key"),
        (
            {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "p"}, "Condition": "c"},
            "Condition is not supported by fleet provisioning templates",
        ),
        ({"Type": "AWS::IoT::Policy", "Properties": ["p"]}, "Properties: must be an object"),
    ],
)
def test_resource_shape(resource: Any, match: str) -> None:
    body = template()
    body["Resources"]["extra"] = resource
    fails(body, match=match)


def test_at_most_one_thing_and_one_certificate() -> None:
    body = template()
    body["Resources"]["thing2"] = copy.deepcopy(body["Resources"]["thing"])
    fails(body, match="at most one AWS::IoT::Thing")
    body = template()
    body["Resources"]["cert2"] = copy.deepcopy(body["Resources"]["certificate"])
    fails(body, match="at most one AWS::IoT::Certificate")


def test_template_without_a_thing_has_no_thing_plan() -> None:
    body = template()
    del body["Resources"]["thing"]
    plan = evaluate(body)
    assert plan.thing is None and plan.things == []


# ---------------------------------------------------------------------------------------------- thing


@pytest.mark.parametrize("name", ["a", "device-SN_1", "urn:thing:1", "x" * 128])
def test_valid_thing_names(name: str) -> None:
    plan = evaluate(with_thing_properties(ThingName=name))
    assert plan.thing is not None and plan.thing.thing_name == name


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "slash/name", "dot.name", "ümlaut"])
def test_invalid_thing_names(name: str) -> None:
    fails(with_thing_properties(ThingName=name), match=r"1-128 characters of \[a-zA-Z0-9:_-\]")


def test_invalid_thing_name_from_a_parameter() -> None:
    fails(template(), {"SerialNumber": "bad serial"}, match="the thing name 'device-bad serial'")


def test_thing_name_is_required_and_a_string() -> None:
    body = template()
    del body["Resources"]["thing"]["Properties"]["ThingName"]
    fails(body, match="ThingName is required")
    fails(with_thing_properties(ThingName=["a"]), match="the thing name must be a string")


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"bad name": "v"}, "the attribute name must be"),
        ({"x" * 129: "v"}, "the attribute name must be"),
        ({"n": 1}, "the value must be a string, got int 1"),
        ({"n": None}, "the value must be a string, got null"),
        ({"n": "has space"}, "the value 'has space' must be at most 800"),
        ({"n": "x" * 801}, "must be at most 800"),
        (["n", "v"], "AttributePayload: must be an object"),
    ],
)
def test_attribute_validation(payload: Any, match: str) -> None:
    fails(with_thing_properties(AttributePayload=payload), match=match)


def test_attribute_edge_values_are_accepted() -> None:
    payload = {"a.b,c@d/e:f#g-h_i": "x=[1]-", "empty": "", "long": "v" * 800}
    plan = evaluate_template(
        with_thing_properties(AttributePayload=payload), {"SerialNumber": "S"}, certificate_id=CERT_ID
    )
    assert plan.thing is not None and plan.thing.attributes == payload


def test_absent_optional_thing_properties_are_none() -> None:
    body = template()
    body["Resources"]["thing"]["Properties"] = {"ThingName": "t1"}
    plan = evaluate(body)
    assert plan.thing == ThingPlan(
        "thing", "t1", None, None, None, None, {"AttributePayload": "MERGE", "ThingGroups": "MERGE"}
    )


def test_thing_type_groups_and_billing_group() -> None:
    plan = evaluate_template(
        with_thing_properties(
            ThingTypeName="sensor", ThingGroups=["g1", {"Ref": "Batch"}, "g1"], BillingGroup="billing-1"
        ),
        {"SerialNumber": "S"},
        certificate_id=CERT_ID,
    )
    assert plan.thing is not None
    assert plan.thing.thing_type_name == "sensor"
    assert plan.thing.thing_groups == ["g1", "none"]  # duplicates collapse, order kept
    assert plan.thing.billing_group == "billing-1"


@pytest.mark.parametrize(
    "properties, match",
    [
        ({"ThingGroups": "g1"}, "ThingGroups: must be a list of group names"),
        ({"ThingGroups": ["ok", "not ok"]}, r"ThingGroups\[1\]: the thing group 'not ok'"),
        ({"ThingTypeName": "bad type"}, "ThingTypeName: the thing type 'bad type'"),
        ({"BillingGroup": "bad/group"}, "the billing group 'bad/group'"),
        ({"PackageVersions": {"p": "1"}}, "unsupported propert"),
        ({"Attributes": {}}, "unsupported propert"),
    ],
)
def test_thing_property_failures(properties: dict[str, Any], match: str) -> None:
    fails(with_thing_properties(**properties), match=match)


# -------------------------------------------------------------------------------------------- certificate


@pytest.mark.parametrize(
    "written, status",
    [
        (None, "ACTIVE"),
        ("ACTIVE", "ACTIVE"),
        ("Active", "ACTIVE"),
        ("INACTIVE", "INACTIVE"),
        ("inactive", "INACTIVE"),
    ],
)
def test_certificate_status_ignores_case_defaults_active(written: str | None, status: str) -> None:
    body = template()
    properties = body["Resources"]["certificate"]["Properties"]
    properties.pop("Status")
    if written is not None:
        properties["Status"] = written
    plan = evaluate(body)
    assert plan.certificate is not None and plan.certificate.status == status


@pytest.mark.parametrize(
    "properties, match",
    [
        ({"CertificateSigningRequest": "csr"}, "may only use CertificateId"),
        ({"CertificatePem": "pem"}, "may only use CertificateId"),
        ({"CACertificatePem": "pem"}, "may only use CertificateId"),
        ({"Status": "REVOKED"}, "'REVOKED' is not ACTIVE or INACTIVE"),
        ({"Status": "PENDING_ACTIVATION"}, "is not ACTIVE or INACTIVE"),
        ({"CertificateId": ""}, "CertificateId is required"),
        ({"CertificateMode": "DEFAULT"}, "unsupported propert"),
    ],
)
def test_certificate_failures(properties: dict[str, Any], match: str) -> None:
    body = template()
    body["Resources"]["certificate"]["Properties"].update(properties)
    fails(body, match=match)


def test_certificate_id_is_required() -> None:
    body = template()
    body["Resources"]["certificate"]["Properties"] = {"Status": "ACTIVE"}
    fails(body, match="CertificateId is required")


# ---------------------------------------------------------------------------------------------- policy

DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/x"}],
}


def policy_plan(properties: dict[str, Any]) -> Any:
    body = template()
    body["Resources"]["policy"]["Properties"] = properties
    return evaluate(body).policies[0]


def test_inline_policy_document_gets_a_stable_hash_name() -> None:
    as_object = policy_plan({"PolicyDocument": DOCUMENT})
    as_string = policy_plan({"PolicyDocument": json.dumps(DOCUMENT, indent=2)})
    assert as_object.policy_document == DOCUMENT == as_string.policy_document
    assert as_object.policy_name == as_string.policy_name
    assert len(as_object.policy_name) == 64
    other = policy_plan({"PolicyDocument": {**DOCUMENT, "Version": "2008-10-17"}})
    assert other.policy_name != as_object.policy_name


def test_inline_policy_document_with_intrinsics() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": {"Fn::Sub": "arn:aws:iot:eu-west-1:123456789012:topic/d/${SerialNumber}"},
            }
        ],
    }
    plan = policy_plan({"PolicyDocument": document})
    assert plan.policy_document["Statement"][0]["Resource"] == "arn:aws:iot:eu-west-1:123456789012:topic/d/S"


@pytest.mark.parametrize(
    "properties, match",
    [
        ({}, "set exactly one of PolicyName and PolicyDocument"),
        ({"PolicyName": "p", "PolicyDocument": DOCUMENT}, "set exactly one of PolicyName and PolicyDocument"),
        ({"PolicyDocument": "{nope"}, "PolicyDocument: not valid JSON"),
        ({"PolicyDocument": {"Version": "2012-10-17"}}, "must be a policy object with a Statement"),
        ({"PolicyName": "bad name!"}, "PolicyName: 'bad name!'"),
        ({"PolicyName": "p", "Tags": []}, "unsupported propert"),
    ],
)
def test_policy_failures(properties: dict[str, Any], match: str) -> None:
    body = template()
    body["Resources"]["policy"]["Properties"] = properties
    fails(body, match=match)


def test_policy_takes_no_override_settings() -> None:
    body = template()
    body["Resources"]["policy"]["OverrideSettings"] = {}
    fails(body, match="OverrideSettings are not allowed on an AWS::IoT::Policy")


# ------------------------------------------------------------------------------------------ OverrideSettings


@pytest.mark.parametrize(
    "key, value",
    [("AttributePayload", v) for v in ("DO_NOTHING", "REPLACE", "FAIL", "MERGE")]
    + [("ThingTypeName", v) for v in ("DO_NOTHING", "REPLACE", "FAIL")]
    + [("ThingGroups", v) for v in ("DO_NOTHING", "REPLACE", "FAIL", "MERGE")],
)
def test_valid_thing_overrides(key: str, value: str) -> None:
    body = template()
    body["Resources"]["thing"]["OverrideSettings"] = {key: value}
    plan = evaluate(body)
    assert plan.thing is not None and plan.thing.overrides == {key: value}


def test_upper_snake_case_override_keys_of_the_guide_prose_are_accepted() -> None:
    body = template()
    body["Resources"]["thing"]["OverrideSettings"] = {"ATTRIBUTE_PAYLOAD": "REPLACE", "THING_GROUPS": "FAIL"}
    plan = evaluate(body)
    assert plan.thing is not None
    assert plan.thing.overrides == {"AttributePayload": "REPLACE", "ThingGroups": "FAIL"}


@pytest.mark.parametrize(
    "resource, overrides, match",
    [
        ("thing", {"ThingTypeName": "MERGE"}, "'MERGE' is not one of DO_NOTHING, FAIL, REPLACE"),
        ("thing", {"AttributePayload": "merge"}, "'merge' is not one of"),
        ("thing", {"ThingName": "REPLACE"}, "'ThingName' cannot be overridden"),
        ("thing", {"BillingGroup": "REPLACE"}, "'BillingGroup' cannot be overridden"),
        ("certificate", {"Status": "MERGE"}, "'MERGE' is not one of DO_NOTHING, FAIL, REPLACE"),
        ("certificate", {"CertificateId": "REPLACE"}, "'CertificateId' cannot be overridden"),
        ("thing", ["MERGE"], "OverrideSettings: must be an object"),
    ],
)
def test_invalid_overrides(resource: str, overrides: Any, match: str) -> None:
    body = template()
    body["Resources"][resource]["OverrideSettings"] = overrides
    fails(body, match=match)


def test_certificate_status_override() -> None:
    body = template()
    body["Resources"]["certificate"]["OverrideSettings"] = {"Status": "REPLACE"}
    plan = evaluate(body)
    assert plan.certificate is not None and plan.certificate.overrides == {"Status": "REPLACE"}


# ------------------------------------------------------------------------------------ DeviceConfiguration


def test_device_configuration_values_are_evaluated() -> None:
    body = template(DeviceConfiguration={"thing": {"Fn::Sub": "device-${SerialNumber}"}, "root": "devices"})
    plan = evaluate_template(body, {"SerialNumber": "S9"}, certificate_id=CERT_ID)
    assert plan.device_configuration == {"thing": "device-S9", "root": "devices"}


def test_device_configuration_is_optional() -> None:
    body = template()
    del body["DeviceConfiguration"]
    assert evaluate(body).device_configuration == {}


@pytest.mark.parametrize("value, expected", [(8883, "8883"), (1.5, "1.5"), (True, "true"), (False, "false")])
def test_device_configuration_scalars_come_back_as_strings(value: Any, expected: str) -> None:
    assert value_of(value) == expected


@pytest.mark.parametrize(
    "value, match",
    [
        ({"nested": "x"}, "nested values are not allowed"),
        (["a"], "nested values are not allowed"),
        ({"Fn::Split": [",", "a,b"]}, "nested values are not allowed"),
        (None, "expected a string, got null"),
    ],
)
def test_device_configuration_is_flat(value: Any, match: str) -> None:
    fails(template(DeviceConfiguration={"value": value}), match=match)


def test_device_configuration_must_be_an_object() -> None:
    fails(template(DeviceConfiguration=["a"]), match="DeviceConfiguration: must be an object")


# ------------------------------------------------------------------------------------------- apply_overrides


def thing_plan(overrides: dict[str, str] | None = None, **fields: Any) -> ThingPlan:
    values: dict[str, Any] = {
        "attributes": {"batch": "b2", "hw": "r2"},
        "thing_type_name": "sensor",
        "thing_groups": ["provisioned", "line-2"],
        "billing_group": None,
    }
    values.update(fields)
    return ThingPlan(logical_id="thing", thing_name="device-1", overrides=overrides or {}, **values)


EXISTING = ExistingThing(
    attributes={"batch": "b1", "owner": "x"},
    thing_type_name="old-type",
    thing_groups=["provisioned", "line-1"],
)


def test_new_thing_gets_everything_the_plan_says() -> None:
    change = apply_overrides(None, thing_plan(billing_group="bill"))
    assert change.create and change.changes_anything
    assert change.attributes == {"batch": "b2", "hw": "r2"}
    assert (change.thing_type_name, change.update_thing_type) == ("sensor", True)
    assert change.groups_to_add == ["provisioned", "line-2"] and change.groups_to_remove == []
    assert change.billing_group == "bill"


def test_new_thing_without_optional_properties() -> None:
    change = apply_overrides(None, thing_plan(attributes=None, thing_type_name=None, thing_groups=None))
    assert change.create and change.attributes == {} and not change.update_thing_type
    assert change.groups_to_add == []


def test_existing_thing_without_override_settings_is_left_alone() -> None:
    change = apply_overrides(EXISTING, thing_plan())
    assert not change.create and not change.changes_anything


def test_do_nothing_everywhere_leaves_the_thing() -> None:
    overrides = {"AttributePayload": "DO_NOTHING", "ThingTypeName": "DO_NOTHING", "ThingGroups": "DO_NOTHING"}
    assert not apply_overrides(EXISTING, thing_plan(overrides)).changes_anything


def test_attribute_replace_and_merge() -> None:
    replaced = apply_overrides(EXISTING, thing_plan({"AttributePayload": "REPLACE"}))
    assert replaced.attributes == {"batch": "b2", "hw": "r2"}
    merged = apply_overrides(EXISTING, thing_plan({"AttributePayload": "MERGE"}))
    assert merged.attributes == {"batch": "b2", "hw": "r2", "owner": "x"}


def test_attribute_merge_that_changes_nothing_writes_nothing() -> None:
    existing = ExistingThing(attributes={"batch": "b2", "hw": "r2", "owner": "x"})
    assert apply_overrides(existing, thing_plan({"AttributePayload": "MERGE"})).attributes is None


def test_attribute_fail_raises_on_a_real_conflict_only() -> None:
    with pytest.raises(ResourceConflictError, match="AttributePayload") as caught:
        apply_overrides(EXISTING, thing_plan({"AttributePayload": "FAIL"}))
    assert caught.value.status_code == 409 and caught.value.error_code == "ResourceConflictsException"
    same = ExistingThing(attributes={"batch": "b2", "hw": "r2"})
    assert apply_overrides(same, thing_plan({"AttributePayload": "FAIL"})).attributes is None


def test_template_without_attributes_never_touches_them() -> None:
    for mode in ("REPLACE", "FAIL", "MERGE"):
        change = apply_overrides(EXISTING, thing_plan({"AttributePayload": mode}, attributes=None))
        assert change.attributes is None


def test_thing_type_replace_and_fail() -> None:
    change = apply_overrides(EXISTING, thing_plan({"ThingTypeName": "REPLACE"}))
    assert (change.thing_type_name, change.update_thing_type) == ("sensor", True)
    with pytest.raises(ResourceConflictError, match="ThingTypeName"):
        apply_overrides(EXISTING, thing_plan({"ThingTypeName": "FAIL"}))
    same = ExistingThing(thing_type_name="sensor")
    assert not apply_overrides(same, thing_plan({"ThingTypeName": "FAIL"})).update_thing_type


def test_thing_groups_replace_merge_fail() -> None:
    replaced = apply_overrides(EXISTING, thing_plan({"ThingGroups": "REPLACE"}))
    assert (replaced.groups_to_add, replaced.groups_to_remove) == (["line-2"], ["line-1"])
    merged = apply_overrides(EXISTING, thing_plan({"ThingGroups": "MERGE"}))
    assert (merged.groups_to_add, merged.groups_to_remove) == (["line-2"], [])
    with pytest.raises(ResourceConflictError, match="ThingGroups"):
        apply_overrides(EXISTING, thing_plan({"ThingGroups": "FAIL"}))
    same = ExistingThing(thing_groups=["line-2", "provisioned"])
    change = apply_overrides(same, thing_plan({"ThingGroups": "FAIL"}))
    assert (change.groups_to_add, change.groups_to_remove) == ([], [])


def test_project_overrides_on_a_reprovisioned_device() -> None:
    # After an RMA reset the thing exists: its registry data is merged in, nothing is removed.
    plan = evaluate(PROJECT_TEMPLATE, SerialNumber="SN-1", Batch="b9")
    assert plan.thing is not None
    existing = ExistingThing(attributes={"batch": "b1", "note": "rma"}, thing_groups=["old-group"])
    change = apply_overrides(existing, plan.thing)
    assert change.attributes == {"batch": "b9", "hw_revision": "unknown", "note": "rma"}
    assert (change.groups_to_add, change.groups_to_remove) == (["provisioned-devices"], [])


def test_billing_group_is_only_filled_when_empty() -> None:
    assert apply_overrides(EXISTING, thing_plan(billing_group="bill")).billing_group == "bill"
    in_one = ExistingThing(billing_group="other")
    assert apply_overrides(in_one, thing_plan(billing_group="bill")).billing_group is None


# ---------------------------------------------------------------------------------- certificate status


def cert_plan(status: str = "ACTIVE", mode: str | None = None) -> CertificatePlan:
    return CertificatePlan("certificate", CERT_ID, status, {"Status": mode} if mode else {})


def test_pending_certificate_takes_the_template_status() -> None:
    assert certificate_status_change("PENDING_ACTIVATION", cert_plan("ACTIVE")) == "ACTIVE"
    assert certificate_status_change("PENDING_ACTIVATION", cert_plan("INACTIVE", "DO_NOTHING")) == "INACTIVE"


def test_already_set_certificate_follows_override_settings() -> None:
    assert certificate_status_change("ACTIVE", cert_plan("ACTIVE", "FAIL")) is None
    assert certificate_status_change("INACTIVE", cert_plan("ACTIVE")) is None
    assert certificate_status_change("INACTIVE", cert_plan("ACTIVE", "DO_NOTHING")) is None
    assert certificate_status_change("INACTIVE", cert_plan("ACTIVE", "REPLACE")) == "ACTIVE"
    with pytest.raises(ResourceConflictError, match="OverrideSettings.Status is FAIL"):
        certificate_status_change("INACTIVE", cert_plan("ACTIVE", "FAIL"))
