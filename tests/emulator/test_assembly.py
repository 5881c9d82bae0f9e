"""Reading a cloud assembly: CloudFormation intrinsics resolved locally, claims issued, the rest listed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emulator.assembly.reader import AssemblyError, ClaimIdentity, ClaimSpec, load_stack
from emulator.cli import app
from emulator.intrinsics.evaluator import is_function_key
from emulator.provisioning.template_engine import evaluate_template

TEMPLATE: dict[str, Any] = {
    "Parameters": {"BootstrapVersion": {"Type": "String", "Default": "/cdk-bootstrap/version"}},
    "Mappings": {"Env": {"eu-central-1": {"Suffix": "eu"}}},
    "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
    "Resources": {
        "Table": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            },
        },
        "Hook": {
            "Type": "AWS::Lambda::Function",
            "Metadata": {"aws:asset:path": "asset.abc"},
            "Properties": {
                "Handler": "pkg.handler.main",
                "MemorySize": 512,
                "Environment": {"Variables": {"TABLE": {"Ref": "Table"}, "REGION": {"Ref": "AWS::Region"}}},
            },
        },
        "ClaimPolicy": {
            "Type": "AWS::IoT::Policy",
            "Properties": {
                "PolicyName": "claim",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "iot:Connect",
                            "Resource": {
                                "Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}"
                                ":client/prov-*"
                            },
                        },
                        {
                            "Effect": "Allow",
                            "Action": "iot:Publish",
                            "Resource": {
                                "Fn::Join": [
                                    "",
                                    [
                                        "arn:aws:iot:",
                                        {"Ref": "AWS::Region"},
                                        ":",
                                        {"Ref": "AWS::AccountId"},
                                        ":topic/${iot:Connection.Thing.ThingName}/",
                                        {"Fn::FindInMap": ["Env", {"Ref": "AWS::Region"}, "Suffix"]},
                                    ],
                                ]
                            },
                        },
                    ],
                },
            },
        },
        "Template": {
            "Type": "AWS::IoT::ProvisioningTemplate",
            "Properties": {
                "TemplateName": {"Fn::Select": [1, {"Fn::Split": [",", "x,Tmpl,y"]}]},
                "Enabled": True,
                "TemplateBody": json.dumps({"Resources": {}}),
                "PreProvisioningHook": {
                    "TargetArn": {"Fn::GetAtt": ["Hook", "Arn"]},
                    "PayloadVersion": "2020-04-01",
                },
            },
        },
        "LineACert": {
            "Type": "AWS::IoT::Certificate",
            "Metadata": {"aws:cdk:path": "S/ClaimCredentials/LineA/Certificate"},
            "Properties": {"CertificateSigningRequest": "csr", "Status": "INACTIVE"},
        },
        "LineB": {
            "Type": "Custom::ClaimCredential",
            "Properties": {"ClaimName": "line-b", "Status": "ACTIVE"},
        },
        "AttachA": {
            "Type": "AWS::IoT::PolicyPrincipalAttachment",
            "Properties": {
                "PolicyName": {"Ref": "ClaimPolicy"},
                "Principal": {"Fn::GetAtt": ["LineACert", "Arn"]},
            },
        },
        "AttachB": {
            "Type": "AWS::IoT::PolicyPrincipalAttachment",
            "Properties": {"PolicyName": "claim", "Principal": {"Fn::GetAtt": ["LineB", "CertificateArn"]}},
        },
        "Alarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {"AlarmDescription": {"Fn::Sub": "${!Literal}"}},
        },
        "Skipped": {"Type": "AWS::SNS::Topic", "Condition": "Never"},
    },
}


def write_assembly(directory: Path, template: dict[str, Any]) -> Path:
    (directory / "asset.abc").mkdir(parents=True)
    (directory / "S.template.json").write_text(json.dumps(template))
    (directory / "manifest.json").write_text(
        json.dumps(
            {
                "artifacts": {
                    "S": {
                        "type": "aws:cloudformation:stack",
                        "environment": "aws://unknown-account/eu-central-1",
                        "properties": {"templateFile": "S.template.json"},
                    }
                }
            }
        )
    )
    return directory


def test_load_stack_resolves_the_template(tmp_path: Path) -> None:
    issued: list[ClaimSpec] = []

    def issue(spec: ClaimSpec) -> ClaimIdentity:
        issued.append(spec)
        return ClaimIdentity(f"{spec.name}-id")

    model = load_stack(write_assembly(tmp_path, TEMPLATE), issue)
    assert model.region == "eu-central-1" and model.account_id == "123456789012"
    assert [(c.name, c.mode, c.active) for c in issued] == [
        ("line-a", "csr", False),
        ("line-b", "generated", True),
    ]
    (table,) = model.tables
    assert table.name == "S-Table" and table.key_schema == [{"AttributeName": "pk", "KeyType": "HASH"}]
    (function,) = model.functions
    assert function.environment == {"TABLE": "S-Table", "REGION": "eu-central-1"}
    assert function.asset_dir == tmp_path / "asset.abc" and function.memory_mb == 512
    (template,) = model.templates
    assert template.name == "Tmpl" and template.body == {"Resources": {}} and template.enabled
    assert template.arn == "arn:aws:iot:eu-central-1:123456789012:provisioningtemplate/Tmpl"
    assert model.hook_for(template) == function
    (policy,) = model.policies
    statements = policy.document["Statement"]
    assert statements[0]["Resource"] == "arn:aws:iot:eu-central-1:123456789012:client/prov-*"
    # Policy variables are text to CloudFormation and stay for IoT to resolve per connection.
    assert statements[1]["Resource"] == (
        "arn:aws:iot:eu-central-1:123456789012:topic/${iot:Connection.Thing.ThingName}/eu"
    )
    assert [(a.policy_name, a.principal_arn) for a in model.attachments] == [
        ("claim", "arn:aws:iot:eu-central-1:123456789012:cert/line-a-id"),
        ("claim", "arn:aws:iot:eu-central-1:123456789012:cert/line-b-id"),
    ]
    assert model.not_emulated == [
        ("Alarm", "AWS::CloudWatch::Alarm")
    ]  # the conditional topic is not deployed


def test_missing_assembly_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="does not exist"):
        load_stack(tmp_path / "nope", lambda spec: ClaimIdentity("x"))


def test_cli_reports_a_missing_assembly_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["up", "--state-dir", str(tmp_path / "s"), "--cloud-assembly", str(tmp_path / "missing")]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "does not exist" in result.output


def with_resources(**resources: Any) -> dict[str, Any]:
    template = json.loads(json.dumps(TEMPLATE))
    template["Resources"].update(resources)
    return template


VARIABLES = "Resources.Hook.Properties.Environment.Variables"


def hook_environment(variables: dict[str, Any], **sections: Any) -> dict[str, Any]:
    template = with_resources()
    template["Resources"]["Hook"]["Properties"]["Environment"]["Variables"] = variables
    template.update(sections)
    return template


def load(directory: Path, template: dict[str, Any]) -> Any:
    return load_stack(write_assembly(directory, template), lambda spec: ClaimIdentity(f"{spec.name}-id"))


def test_conditions_if_and_no_value(tmp_path: Path) -> None:
    variables = {
        "ALWAYS": "kept",
        "ONLY_IN_EU": {"Fn::If": ["InEu", "eu", {"Ref": "AWS::NoValue"}]},
        "NEVER": {"Fn::If": ["Never", "x", {"Ref": "AWS::NoValue"}]},
        "EITHER": {"Fn::If": ["NeverOrInEu", "a", "b"]},
        "B64": {"Fn::Base64": {"Fn::Sub": "${AWS::StackName}"}},
        "ZONES": {"Fn::Join": [",", {"Fn::GetAZs": ""}]},
        "LIST": {"Fn::Join": ["+", {"Ref": "Names"}]},
        "IMPORTED": {"Fn::ImportValue": "elsewhere"},
    }
    conditions = {
        "Never": {"Fn::Equals": ["a", "b"]},
        "NeverOrInEu": {"Fn::Or": [{"Condition": "Never"}, {"Condition": "InEu"}]},
        "InEu": {
            "Fn::And": [
                {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-central-1"]},
                {"Fn::Not": [{"Condition": "Never"}]},
            ]
        },
    }
    template = hook_environment(variables, Conditions=conditions)
    template["Parameters"]["Names"] = {"Type": "CommaDelimitedList", "Default": "a,b"}
    (function,) = load(tmp_path, template).functions
    assert function.environment == {
        "ALWAYS": "kept",
        "ONLY_IN_EU": "eu",
        "EITHER": "a",
        "B64": "Uw==",  # base64("S")
        "ZONES": "eu-central-1a,eu-central-1b,eu-central-1c",
        "LIST": "a+b",  # a CommaDelimitedList parameter is a list, as in CloudFormation
        "IMPORTED": "<Fn::ImportValue not resolved locally>",
    }


def test_a_conditional_name_property_falls_back_to_the_generated_name(tmp_path: Path) -> None:
    template = with_resources()
    template["Resources"]["Table"]["Properties"]["TableName"] = {
        "Fn::If": ["Never", "named", {"Ref": "AWS::NoValue"}]
    }
    (table,) = load(tmp_path, template).tables
    assert table.name == "S-Table"


@pytest.mark.parametrize(
    "variables, message",
    [
        (
            {"X": {"Fn::FindInMap": ["Env", {"Ref": "AWS::Region"}, "Nope"]}},
            f"{VARIABLES}.X.Fn::FindInMap: mapping 'Env'.'eu-central-1' has no key 'Nope'",
        ),
        (
            {"X": {"Fn::Select": [5, {"Fn::Split": [",", "a,b"]}]}},
            f"{VARIABLES}.X.Fn::Select: index 5 is out of range for a list of 2",
        ),
        (
            {"X": {"Fn::Join": ["", ["a", {"Ref": "Nope"}]]}},
            f"{VARIABLES}.X.Fn::Join[1][1].Ref: Ref to unknown resource Nope",
        ),
        (
            {"X": {"Fn::Sub": "${Nope.Arn}"}},
            f"{VARIABLES}.X.Fn::Sub: ${{Nope.Arn}} is neither a Fn::Sub variable, a parameter nor a resource",
        ),
        (
            {"X": {"Fn::If": ["Missing", "a", "b"]}},
            f"{VARIABLES}.X.Fn::If[0]: unknown condition Missing",
        ),
    ],
)
def test_errors_name_the_place_in_the_stack(tmp_path: Path, variables: dict[str, Any], message: str) -> None:
    # Once a KeyError or IndexError with a traceback; now the one-line AssemblyError the CLI prints.
    with pytest.raises(AssemblyError) as caught:
        load(tmp_path, hook_environment(variables))
    assert str(caught.value) == message


def test_an_unknown_resource_condition_names_the_resource(tmp_path: Path) -> None:
    template = with_resources(Odd={"Type": "AWS::SNS::Topic", "Condition": "Missing"})
    with pytest.raises(AssemblyError, match=r"^Resources\.Odd\.Condition: unknown condition Missing$"):
        load(tmp_path, template)


def _unresolved(value: Any, where: str = "model") -> list[str]:
    """Places in a loaded model where an intrinsic function or a placeholder was left unresolved.

    A function is a one-key object (an IAM statement's "Condition" beside "Effect" is data), and a
    provisioning template's body keeps its own functions until RegisterThing evaluates them.
    """
    if isinstance(value, dict):
        if len(value) == 1 and is_function_key(next(iter(value))):
            return [where]
        return [
            place
            for key, item in value.items()
            if not (key == "body" and where.startswith("model.templates"))
            for place in _unresolved(item, f"{where}.{key}")
        ]
    if isinstance(value, list | tuple):
        return [place for index, item in enumerate(value) for place in _unresolved(item, f"{where}[{index}]")]
    return [where] if isinstance(value, str) and "not resolved locally" in value else []


@pytest.mark.synth
@pytest.mark.xdist_group("emulator-e2e")  # shares the synthesized stack with the end-to-end tests
def test_the_synthesized_stack_loads_and_its_template_evaluates(cloud_assembly: Path) -> None:
    issued: list[ClaimSpec] = []

    def issue(spec: ClaimSpec) -> ClaimIdentity:
        issued.append(spec)
        return ClaimIdentity(f"{spec.name}-id")

    model = load_stack(cloud_assembly, issue)
    assert [(claim.name, claim.active) for claim in issued] == [("line-a", True), ("line-b", False)]
    assert _unresolved(dataclasses.asdict(model)) == []
    (template,) = model.templates
    assert template.arn == f"arn:aws:iot:{model.region}:123456789012:provisioningtemplate/{template.name}"
    assert template.hook_function_arn is not None and model.hook_for(template) is not None
    assert {a.principal_arn for a in model.attachments} == {
        f"arn:aws:iot:{model.region}:123456789012:cert/line-a-id",
        f"arn:aws:iot:{model.region}:123456789012:cert/line-b-id",
    }
    plan = evaluate_template(template.body, {"SerialNumber": "SN-0001"}, certificate_id="c" * 64)
    assert plan.thing is not None and plan.thing.thing_name == "device-SN-0001"
    assert plan.certificate is not None and plan.certificate.certificate_id == "c" * 64
    assert [policy.policy_name for policy in plan.policies] == [
        policy.name for policy in model.policies if "Device" in policy.name
    ]
