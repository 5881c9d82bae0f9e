from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk.assertions import Template

from infra import constants as c
from infra.hook import PreProvisioningHook
from tests.infra.conftest import (
    ACCOUNT,
    REGION,
    as_list,
    make_config,
    only,
    render,
    statements,
    synth_construct,
)

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-hook")

CONFIG = make_config(log_retention_days=14, powertools_layer_version=21, thing_attributes=["model", "hw_rev"])


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path]:
    out = tmp_path_factory.mktemp("hook")

    def build(stack: Any) -> None:
        table = dynamodb.Table(
            stack, "Table", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING)
        )
        PreProvisioningHook(stack, c.ID_HOOK, config=CONFIG, table=table)

    template, _ = synth_construct(out, build)
    return template, out


@pytest.fixture(scope="module")
def template(synthesized: tuple[Template, Path]) -> Template:
    return synthesized[0]


def _function(template: Template) -> dict[str, Any]:
    return only(template, "AWS::Lambda::Function")


def test_runtime_handler_timeout_inside_aws_5s_and_powertools_layer(template: Template) -> None:
    props = _function(template)["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == c.HOOK_HANDLER
    assert props["Timeout"] < 5
    assert props["Architectures"] == ["x86_64"]
    assert render(props["Layers"]) == [
        f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:21"
    ]


def test_environment_names_are_exactly_the_shared_ones(template: Template) -> None:
    env = _function(template)["Properties"]["Environment"]["Variables"]
    assert set(env) == c.HOOK_ENV_NAMES
    assert set(env[c.ENV_SERIAL_TABLE]) == {"Ref"} and env[c.ENV_SERIAL_TABLE]["Ref"].startswith("Table")
    assert env[c.ENV_SERIAL_PATTERN] == CONFIG.serial_pattern
    assert env[c.ENV_THING_NAME_PREFIX] == CONFIG.thing_name_prefix
    assert env[c.ENV_RESERVATION_TIMEOUT] == str(CONFIG.reservation_timeout_s)
    assert env[c.ENV_TEMPLATE_ATTRIBUTES] == "model,hw_rev"
    assert env[c.ENV_DEVICE_PARAMETERS] == "SerialNumber"
    assert (env[c.ENV_REQUIRE_DEVICE_KEY], env[c.ENV_REQUIRE_CN_MATCH]) == ("false", "true")
    assert env[c.ENV_POWERTOOLS_SERVICE] == c.HOOK_SERVICE_NAME
    assert env[c.ENV_POWERTOOLS_NAMESPACE] == CONFIG.metrics_namespace


def test_permissions_are_exactly_get_update_item_and_describe_update_certificate(template: Template) -> None:
    found = statements(template, "PreProvisioningHookFunctionServiceRole")
    actions = sorted(a for s in found for a in as_list(s["Action"]))
    assert actions == [
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "iot:DescribeCertificate",
        "iot:UpdateCertificate",
    ]
    by_action = {a: s for s in found for a in as_list(s["Action"])}
    table_arn = by_action["dynamodb:GetItem"]["Resource"]
    assert all("Fn::GetAtt" in r and r["Fn::GetAtt"][0].startswith("Table") for r in as_list(table_arn))
    assert (
        render(by_action["iot:DescribeCertificate"]["Resource"]) == f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/*"
    )
    assert all(s["Effect"] == "Allow" for s in found)


def test_role_trusts_lambda_with_basic_execution_only(template: Template) -> None:
    role = only(template, "AWS::IAM::Role")["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }
    assert [render(p) for p in role["ManagedPolicyArns"]] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]


def test_log_group_has_the_configured_retention(template: Template) -> None:
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 14})
    log_group_id = next(iter(template.find_resources("AWS::Logs::LogGroup")))
    assert _function(template)["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}


def test_only_iot_may_invoke_and_only_for_this_template_and_account(template: Template) -> None:
    permission = only(template, "AWS::Lambda::Permission")["Properties"]
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["Principal"] == "iot.amazonaws.com"
    assert render(permission["SourceArn"]) == (
        f"arn:aws:iot:{REGION}:{ACCOUNT}:provisioningtemplate/{CONFIG.template_name}"
    )
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_code_asset_is_lambdas_without_the_claim_custom_resource(synthesized: tuple[Template, Path]) -> None:
    template, out = synthesized
    metadata = _function(template)["Metadata"]
    asset = out / metadata["aws:asset:path"]
    staged = {p.name for p in asset.iterdir()}
    assert "claim_credential" not in staged
    assert not list(asset.rglob("__pycache__"))
    manifest = json.loads((out / "Test.assets.json").read_text())
    sources = {f["source"]["path"] for f in manifest["files"].values()}
    assert metadata["aws:asset:path"] in sources


def test_attestation_settings_reach_the_hook(tmp_path: Path) -> None:
    config = make_config(require_device_key=True, require_cn_match=False)
    built, _ = synth_construct(
        tmp_path,
        lambda stack: PreProvisioningHook(
            stack,
            c.ID_HOOK,
            config=config,
            table=dynamodb.Table(
                stack,
                "Table",
                partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            ),
        ),
    )
    env = _function(built)["Properties"]["Environment"]["Variables"]
    assert (env[c.ENV_REQUIRE_DEVICE_KEY], env[c.ENV_REQUIRE_CN_MATCH]) == ("true", "false")
