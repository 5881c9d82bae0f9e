"""Certificate rotation in the stack (issue 15): the rotation template, the same hook keyed by template, the
device policy's few new rights, the retirer with its rule and schedules, the alarms; off by default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from app import synthesize
from infra import constants as c
from tests.infra.conftest import as_list, render

pytestmark = pytest.mark.xdist_group("infra-rotation")

STACK = "FleetProvisioning"
ROTATION = "FleetProvisioningTemplateRotation"


def _template(assembly: Path) -> dict[str, Any]:
    return json.loads((assembly / f"{STACK}.template.json").read_text())


def _of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == type_}


@pytest.fixture(scope="module")
def enabled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(
        {"rotation": {"enabled": True, "grace_s": 3600, "sweep_minutes": 2}},
        outdir=tmp_path_factory.mktemp("rotation") / "cdk.out",
    )


@pytest.fixture(scope="module")
def disabled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(outdir=tmp_path_factory.mktemp("no-rotation") / "cdk.out")


def _function(template: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    return next(
        (lid, f)
        for lid, f in _of_type(template, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == handler
    )


def _statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    found = []
    for policy in _of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_off_by_default(disabled: Path) -> None:
    template = _template(disabled)
    templates = [
        t["Properties"]["TemplateName"] for t in _of_type(template, "AWS::IoT::ProvisioningTemplate").values()
    ]
    assert templates == ["FleetProvisioningTemplate"]
    assert not _of_type(template, "AWS::IoT::TopicRule") and not _of_type(template, "AWS::Events::Rule")
    _, hook = _function(template, c.HOOK_HANDLER)
    assert hook["Properties"]["Environment"]["Variables"][c.ENV_ROTATION_TEMPLATE] == ""
    (table,) = _of_type(template, "AWS::DynamoDB::Table").values()
    assert "GlobalSecondaryIndexes" not in table["Properties"]
    assert "RotationTemplateName" not in template["Outputs"]


def test_rotation_template_leaves_the_thing_and_attaches_the_new_certificate(enabled: Path) -> None:
    template = _template(enabled)
    by_name = {
        t["Properties"]["TemplateName"]: t
        for t in _of_type(template, "AWS::IoT::ProvisioningTemplate").values()
    }
    assert set(by_name) == {"FleetProvisioningTemplate", ROTATION}
    rotation = by_name[ROTATION]["Properties"]
    hook_id, _ = _function(template, c.HOOK_HANDLER)
    # The same hook on both templates: one Lambda keyed by the template that calls it.
    for props in (rotation, by_name["FleetProvisioningTemplate"]["Properties"]):
        assert props["PreProvisioningHook"]["TargetArn"] == {"Fn::GetAtt": [hook_id, "Arn"]}
    body = json.loads(rotation["TemplateBody"])
    assert set(body["Parameters"]) == {"SerialNumber", "AWS::IoT::Certificate::Id"}
    thing = body["Resources"]["thing"]
    assert thing["OverrideSettings"] == {"AttributePayload": "DO_NOTHING", "ThingGroups": "DO_NOTHING"}
    assert set(thing["Properties"]) == {"ThingName"}  # nothing about the thing changes
    assert body["Resources"]["certificate"]["Properties"] == {
        "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
        "Status": "ACTIVE",
    }
    assert body["Resources"]["policy"]["Properties"] == {"PolicyName": "FleetProvisioning-DevicePolicy"}
    assert template["Outputs"]["RotationTemplateName"]["Value"] == {
        "Ref": next(
            lid
            for lid, t in _of_type(template, "AWS::IoT::ProvisioningTemplate").items()
            if t["Properties"]["TemplateName"] == ROTATION
        )
    }


def test_the_hook_knows_the_rotation_template_and_may_be_called_by_it(enabled: Path) -> None:
    template = _template(enabled)
    hook_id, hook = _function(template, c.HOOK_HANDLER)
    assert hook["Properties"]["Environment"]["Variables"][c.ENV_ROTATION_TEMPLATE] == ROTATION
    sources = sorted(
        render(p["Properties"]["SourceArn"])
        for p in _of_type(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [hook_id, "Arn"]}
    )
    assert sources == [
        "arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/FleetProvisioningTemplate",
        f"arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/{ROTATION}",
    ]
    actions = sorted(a for s in _statements(template, hook_id) for a in as_list(s["Action"]))
    assert actions == [
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "iot:DescribeCertificate",
        "iot:ListThingPrincipals",
        "iot:UpdateCertificate",
    ]
    # The hook reads the table, not the retirer's index.
    for statement in _statements(template, hook_id):
        assert "/index/" not in json.dumps(statement["Resource"])


def test_the_device_policy_adds_only_the_rotation_topics(enabled: Path, disabled: Path) -> None:
    def device_policy(assembly: Path) -> list[dict[str, Any]]:
        (policy,) = (
            p
            for p in _of_type(_template(assembly), "AWS::IoT::Policy").values()
            if p["Properties"]["PolicyName"].endswith("DevicePolicy")
        )
        return render(policy["Properties"]["PolicyDocument"])["Statement"]  # type: ignore[no-any-return]

    before, after = device_policy(disabled), device_policy(enabled)
    assert after[: len(before)] == before
    added = {s["Action"]: sorted(as_list(s["Resource"])) for s in after[len(before) :]}
    prefix = "arn:aws:iot:eu-west-1:123456789012"
    requests = [f"$aws/certificates/create-from-csr/{f}" for f in ("json", "cbor")] + [
        f"$aws/provisioning-templates/{ROTATION}/provision/{f}" for f in ("json", "cbor")
    ]
    replies = [f"{r}/{k}" for r in requests for k in ("accepted", "rejected")]
    assert added == {
        "iot:Publish": sorted(f"{prefix}:topic/{t}" for t in requests),
        "iot:Receive": sorted(f"{prefix}:topic/{t}" for t in replies),
        "iot:Subscribe": sorted(f"{prefix}:topicfilter/{t}" for t in replies),
    }
    assert not any("FleetProvisioningTemplate/" in json.dumps(s) for s in after)  # not the claim's template


def test_the_retirer_is_triggered_by_connections_and_schedules(enabled: Path) -> None:
    template = _template(enabled)
    retirer_id, retirer = _function(template, c.RETIRER_HANDLER)
    env = retirer["Properties"]["Environment"]["Variables"]
    assert (env[c.ENV_ROTATION_GRACE], env[c.ENV_ROTATIONS_INDEX], env[c.ENV_DEVICE_POLICY]) == (
        "3600",
        "rotations",
        "FleetProvisioning-DevicePolicy",
    )
    (rule,) = _of_type(template, "AWS::IoT::TopicRule").values()
    payload = rule["Properties"]["TopicRulePayload"]
    assert payload["Sql"] == "SELECT * FROM '$aws/events/presence/connected/+'"
    assert payload["Actions"] == [{"Lambda": {"FunctionArn": {"Fn::GetAtt": [retirer_id, "Arn"]}}}]
    schedules = {
        r["Properties"]["ScheduleExpression"]: json.loads(r["Properties"]["Targets"][0]["Input"])
        for r in _of_type(template, "AWS::Events::Rule").values()
    }
    assert schedules == {"rate(2 minutes)": {"action": "sweep"}, "rate(1 day)": {"action": "expiring"}}
    principals = {
        p["Properties"]["Principal"]
        for p in _of_type(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [retirer_id, "Arn"]}
    }
    assert principals == {"iot.amazonaws.com", "events.amazonaws.com"}


def test_the_retirer_has_exactly_what_it_uses(enabled: Path) -> None:
    template = _template(enabled)
    retirer_id, _ = _function(template, c.RETIRER_HANDLER)
    by_action = {a: s for s in _statements(template, retirer_id) for a in as_list(s["Action"])}
    assert sorted(by_action) == [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
        "iot:DescribeCertificate",
        "iot:DetachPolicy",
        "iot:DetachThingPrincipal",
        "iot:ListThingPrincipals",
        "iot:UpdateCertificate",
    ]
    assert (
        render(by_action["iot:DetachThingPrincipal"]["Resource"])
        == "arn:aws:iot:eu-west-1:123456789012:thing/*"
    )
    detach_policy = sorted(render(r) for r in as_list(by_action["iot:DetachPolicy"]["Resource"]))
    assert detach_policy == [
        "arn:aws:iot:eu-west-1:123456789012:cert/*",
        "arn:aws:iot:eu-west-1:123456789012:policy/FleetProvisioning-DevicePolicy",
    ]


def test_the_rotations_index_is_sparse_and_ordered_by_start(enabled: Path) -> None:
    (table,) = _of_type(_template(enabled), "AWS::DynamoDB::Table").values()
    (index,) = table["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "rotations"
    assert index["KeySchema"] == [
        {"AttributeName": "rotation_pending", "KeyType": "HASH"},
        {"AttributeName": "rotation_started_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"


def test_alarms_on_rotation_failures_and_the_retirer(enabled: Path) -> None:
    alarms = _of_type(_template(enabled), "AWS::CloudWatch::Alarm")
    failure = next(
        a for a in alarms.values() if "rotations are refused" in a["Properties"]["AlarmDescription"]
    )
    metrics = {
        m["MetricStat"]["Metric"]["MetricName"] for m in failure["Properties"]["Metrics"] if "MetricStat" in m
    }
    assert metrics == {"RotationAllowed", "RotationDenied"} and failure["Properties"]["Threshold"] == 10
    assert any("retirer failed" in a["Properties"]["AlarmDescription"] for a in alarms.values())


def test_cfn_lint_and_cdk_nag_are_clean(enabled: Path) -> None:
    matches = lint((enabled / f"{STACK}.template.json").read_text(), config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []
    report = json.loads((enabled / "validation-report.json").read_text())
    assert [
        r for r in report["pluginReports"] if r.get("conclusion") != "success" or r.get("violations")
    ] == []


def test_the_retirer_asset_holds_the_retirer_and_the_registry_names(enabled: Path) -> None:
    _, retirer = _function(_template(enabled), c.RETIRER_HANDLER)
    staged = enabled / retirer["Metadata"]["aws:asset:path"]
    assert (staged / "certificate_retirer" / "handler.py").is_file()
    assert (staged / "provisioning_hook" / "registry_dynamodb.py").is_file()  # its key prefixes
    assert not (staged / "claim_credential").exists()
