"""Reading a cloud assembly: CloudFormation intrinsics resolved locally, claims issued, the rest listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emulator.assembly.reader import AssemblyError, ClaimIdentity, ClaimSpec, load_stack
from emulator.cli import app

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
