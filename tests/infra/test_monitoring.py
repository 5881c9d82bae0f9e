from __future__ import annotations

import re
from typing import Any

import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra import constants as c
from infra.claims import ClaimCertificate
from infra.iot_logging import IotLogging
from infra.monitoring import DENIAL_RATE_EXPRESSION, Monitoring
from tests.infra.conftest import by_prefix, make_config, only, render, synth_construct

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-monitoring")

CONFIG = make_config(
    metrics_namespace="Plant7/Provisioning",
    denial_rate_alarm_percent=35,
    provisioning_spike_per_5min=250,
    alarm_email="ops@example.com",
)
CLAIMS = [
    ClaimCertificate(
        name="line-a", active=True, certificate_id="a" * 64, certificate_arn="arn:a", secret_arn=None
    ),
    ClaimCertificate(
        name="line-b", active=False, certificate_id="b" * 64, certificate_arn="arn:b", secret_arn=None
    ),
]
SERVICE = {"Name": "service", "Value": c.HOOK_SERVICE_NAME}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    def build(stack: Any) -> None:
        hook = lambda_.Function(
            stack,
            "Hook",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=lambda_.Code.from_inline("def handler(e, c): return {}"),
        )
        Monitoring(stack, c.ID_MONITORING, config=CONFIG, hook=hook, claims=CLAIMS, key=kms.Key(stack, "Key"))
        IotLogging(stack, "IotLogging")

    tpl, _ = synth_construct(tmp_path_factory.mktemp("monitoring"), build)
    return tpl


def _alarm(template: Template, name: str) -> dict[str, Any]:
    return by_prefix(template, "AWS::CloudWatch::Alarm", f"{c.ID_MONITORING}{name}")["Properties"]


def _topic_id(template: Template) -> str:
    return next(iter(template.find_resources("AWS::SNS::Topic")))


def _acts_on_topic(template: Template, alarm: dict[str, Any]) -> None:
    assert alarm["AlarmActions"] == [{"Ref": _topic_id(template)}]
    assert alarm["TreatMissingData"] == "notBreaching"


def test_hook_errors_alarm(template: Template) -> None:
    alarm = _alarm(template, "HookErrors")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert alarm["Dimensions"][0]["Name"] == "FunctionName"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    _acts_on_topic(template, alarm)


def test_hook_duration_p99_alarm_nears_aws_5s_limit(template: Template) -> None:
    alarm = _alarm(template, "HookDuration")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["ExtendedStatistic"]) == (
        "AWS/Lambda",
        "Duration",
        "p99",
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (4000, "GreaterThanOrEqualToThreshold")
    _acts_on_topic(template, alarm)


def test_denial_rate_alarm_is_denied_over_all_decisions(template: Template) -> None:
    alarm = _alarm(template, "DenialRate")
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (35, "GreaterThanOrEqualToThreshold")
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    assert queries["expr_1"]["Expression"] == DENIAL_RATE_EXPRESSION
    assert queries["expr_1"].get("ReturnData", True) is True
    for query_id, metric_name in (("allowed", c.METRIC_ALLOWED), ("denied", c.METRIC_DENIED)):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": "Plant7/Provisioning",
            "MetricName": metric_name,
            "Dimensions": [SERVICE],
        }
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
        assert queries[query_id]["ReturnData"] is False
    _acts_on_topic(template, alarm)


@pytest.mark.parametrize(("allowed", "denied", "percent"), [(1, 3, 75), (0, 2, 100), (9, 1, 10)])
def test_denial_rate_expression_is_denied_over_all_decisions_in_percent(
    allowed: int, denied: int, percent: int
) -> None:
    # FILL(x, 0) on a period with data is x itself; CloudWatch's arithmetic is Python's here.
    arithmetic = re.sub(r"FILL\((\w+), 0\)", r"\1", DENIAL_RATE_EXPRESSION)
    assert eval(arithmetic, {}, {"allowed": allowed, "denied": denied}) == percent


@pytest.mark.parametrize(("claim", "certificate_id"), [("LineA", "a" * 64), ("LineB", "b" * 64)])
def test_provisioning_spike_alarm_per_claim_credential(
    template: Template, claim: str, certificate_id: str
) -> None:
    alarm = _alarm(template, f"ProvisioningSpike{claim}")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
        "Plant7/Provisioning",
        c.METRIC_ALLOWED_BY_CLAIM,
        "Sum",
        300,
    )
    assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "ClaimCertificateId", "Value": certificate_id},
        SERVICE,
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (250, "GreaterThanThreshold")
    _acts_on_topic(template, alarm)


def test_alarm_topic_is_encrypted_with_the_stack_key_and_mails_the_operator(template: Template) -> None:
    topic = only(template, "AWS::SNS::Topic")["Properties"]
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": {"Ref": _topic_id(template)}},
    )
    template.resource_count_is("AWS::CloudWatch::Alarm", 5)


def test_dashboard_shows_every_alarm_and_metric(template: Template) -> None:
    body = render(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for metric in (c.METRIC_ALLOWED, c.METRIC_DENIED, c.METRIC_ALLOWED_BY_CLAIM, "Duration", "Errors"):
        assert metric in body
    assert "line-a" in body and "line-b" in body


def test_iot_logging_at_error_level_with_a_role_iot_assumes(template: Template) -> None:
    logging = only(template, "AWS::IoT::Logging")["Properties"]
    assert logging["DefaultLogLevel"] == "ERROR"
    assert logging["AccountId"] == {"Ref": "AWS::AccountId"}
    role_id = logging["RoleArn"]["Fn::GetAtt"][0]
    role = template.find_resources("AWS::IAM::Role")[role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "iot.amazonaws.com"}
    assert [render(p) for p in role["ManagedPolicyArns"]] == [
        "arn:aws:iam::aws:policy/service-role/AWSIoTLogging"
    ]


def test_no_email_subscription_without_an_address(tmp_path_factory: pytest.TempPathFactory) -> None:
    config = make_config(alarm_email=None)

    def build(stack: Any) -> None:
        hook = lambda_.Function(
            stack,
            "Hook",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=lambda_.Code.from_inline("def handler(e, c): return {}"),
        )
        Monitoring(
            stack, c.ID_MONITORING, config=config, hook=hook, claims=CLAIMS[:1], key=kms.Key(stack, "K")
        )

    template, _ = synth_construct(tmp_path_factory.mktemp("no-email"), build)
    template.resource_count_is("AWS::SNS::Subscription", 0)
    template.resource_count_is("AWS::CloudWatch::Alarm", 4)
