"""The whole app, synthesized as `cdk synth` would, in both claim modes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from app import build_app, synthesize
from infra import constants as c
from tests.infra.conftest import write_csr

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-stack")

STACK = "FleetProvisioning"


def _template(assembly: Path, stack: str = STACK) -> dict[str, Any]:
    return json.loads((assembly / f"{stack}.template.json").read_text())


def _of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == type_}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cdk.json as committed: one generated claim credential."""
    return synthesize(outdir=tmp_path_factory.mktemp("generated") / "cdk.out")


@pytest.fixture(scope="module")
def csr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CSR claims (one inactive) beside a generated one, thing type set, IoT logging off."""
    tmp = tmp_path_factory.mktemp("csr")
    line_b = write_csr(tmp / "line-b.csr")
    line_c = write_csr(tmp / "line-c.csr")
    return synthesize(
        {
            "stack_name": "PlantSeven",
            "thing_type_name": "sensor",
            "iot_logging": False,
            "claim_credentials": [
                {"name": "line-b", "mode": "csr", "csr_file": str(line_b)},
                {"name": "line-c", "mode": "csr", "csr_file": str(line_c), "active": False},
            ],
        },
        outdir=tmp / "cdk.out",
    )


def test_stack_composes_every_resource_of_the_backend(generated: Path) -> None:
    template = _template(generated)
    counts: dict[str, int] = {}
    for resource in template["Resources"].values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    assert counts["AWS::DynamoDB::Table"] == 1
    assert counts["AWS::IoT::ProvisioningTemplate"] == 1
    assert counts["AWS::IoT::Policy"] == 2
    assert counts["AWS::IoT::ThingGroup"] == 1
    assert counts["Custom::ClaimCredential"] == 1
    assert counts["AWS::IoT::PolicyPrincipalAttachment"] == 1
    assert counts["AWS::IoT::Logging"] == 1
    assert counts["AWS::KMS::Key"] == 1
    assert counts["AWS::SNS::Topic"] == 1
    assert counts["AWS::CloudWatch::Alarm"] == 4  # errors, duration, denial rate, one claim
    assert counts["AWS::CloudWatch::Dashboard"] == 1
    assert counts["AWS::Lambda::Permission"] == 1
    hook = [
        f
        for f in _of_type(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == c.HOOK_HANDLER
    ]
    assert len(hook) == 1
    template_resource = next(iter(_of_type(template, "AWS::IoT::ProvisioningTemplate").values()))
    permission_id = next(iter(_of_type(template, "AWS::Lambda::Permission")))
    assert permission_id in template_resource["DependsOn"]


def test_outputs_in_generated_mode(generated: Path) -> None:
    template = _template(generated)
    outputs = template["Outputs"]
    template_id = next(iter(_of_type(template, "AWS::IoT::ProvisioningTemplate")))
    table_id = next(iter(_of_type(template, "AWS::DynamoDB::Table")))
    claim_id = next(iter(_of_type(template, "Custom::ClaimCredential")))
    assert outputs[c.OUT_TEMPLATE_NAME]["Value"] == {"Ref": template_id}
    assert outputs[c.OUT_SERIAL_TABLE]["Value"] == {"Ref": table_id}
    assert outputs[f"{c.OUT_CLAIM_CERT_PREFIX}LineA"]["Value"] == {"Fn::GetAtt": [claim_id, "CertificateId"]}
    assert outputs[f"{c.OUT_CLAIM_SECRET_PREFIX}LineA"]["Value"] == {"Fn::GetAtt": [claim_id, "SecretArn"]}
    assert len(outputs) == 4


def test_outputs_in_csr_mode_carry_certificate_ids_and_no_secret(csr: Path) -> None:
    template = _template(csr, "PlantSeven")
    outputs = template["Outputs"]
    certificates = _of_type(template, "AWS::IoT::Certificate")
    assert {
        o["Value"]["Fn::GetAtt"][0] for k, o in outputs.items() if k.startswith(c.OUT_CLAIM_CERT_PREFIX)
    } == set(certificates)
    assert {k for k in outputs if k.startswith(c.OUT_CLAIM_CERT_PREFIX)} == {
        f"{c.OUT_CLAIM_CERT_PREFIX}LineB",
        f"{c.OUT_CLAIM_CERT_PREFIX}LineC",
    }
    assert not [k for k in outputs if k.startswith(c.OUT_CLAIM_SECRET_PREFIX)]
    assert sorted(r["Properties"]["Status"] for r in certificates.values()) == ["ACTIVE", "INACTIVE"]
    assert not _of_type(template, "AWS::IoT::Logging")
    assert not _of_type(template, "Custom::ClaimCredential")
    assert _of_type(template, "AWS::IoT::ThingType")


@pytest.mark.parametrize("mode", ["generated", "csr"])
def test_no_private_key_text_anywhere_in_the_cloud_assembly(
    mode: str, request: pytest.FixtureRequest
) -> None:
    assembly: Path = request.getfixturevalue(mode)
    files = [p for p in assembly.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        assert b"PRIVATE KEY" not in path.read_bytes(), path


@pytest.mark.parametrize(("mode", "stack"), [("generated", STACK), ("csr", "PlantSeven")])
def test_cfn_lint_is_clean(mode: str, stack: str, request: pytest.FixtureRequest) -> None:
    assembly: Path = request.getfixturevalue(mode)
    text = (assembly / f"{stack}.template.json").read_text()
    matches = lint(text, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize("mode", ["generated", "csr"])
def test_cdk_nag_reports_no_unacknowledged_finding(mode: str, request: pytest.FixtureRequest) -> None:
    assembly: Path = request.getfixturevalue(mode)
    report = json.loads((assembly / "validation-report.json").read_text())
    failures = [r for r in report["pluginReports"] if r.get("conclusion") != "success" or r.get("violations")]
    assert failures == []


def test_cdk_nag_is_live_an_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    from aws_cdk import aws_sqs as sqs

    app = build_app(outdir=tmp_path / "cdk.out")
    stack = app.node.find_child(STACK)
    sqs.Queue(stack, "UnencryptedQueueWithoutDlq")  # AwsSolutions-SQS3 / SQS4
    with pytest.raises(RuntimeError, match="^ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "cdk.out" / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert "AwsSolutions-SQS4" in rules
    assert all(
        v["violatingConstructs"][0]["constructPath"].startswith(f"{STACK}/UnencryptedQueue")
        for r in report["pluginReports"]
        for v in r["violations"]
    )


def test_hook_asset_is_the_lambdas_directory_with_the_hook_package(generated: Path) -> None:
    template = _template(generated)
    hook = next(
        f
        for f in _of_type(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == c.HOOK_HANDLER
    )
    staged = generated / hook["Metadata"]["aws:asset:path"]
    assert (staged / "provisioning_hook").is_dir()
    assert not (staged / "claim_credential").exists()
