"""`fleetctl registry why` against AWS: the hook's decisions from CloudWatch Logs Insights (moto), the query
it sends, and how it finds the hook's log group.

moto runs StartQuery and GetQueryResults but ignores a query's `filter` (it returns every event's
`@timestamp` and `@message`): the query text is checked here as text, and the command checks the serial of
each row itself, which the moto test proves by logging other serials' decisions beside it. moto has no
provisioning templates and no Lambda LoggingConfig, so the log-group discovery is tested with botocore's
Stubber on the two calls (their shapes checked against botocore's service models).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from fleetctl import why
from fleetctl.cli import app
from fleetctl.errors import FleetctlError, UsageError
from tests.hook.support import REGION, TABLE, put_serial

from .conftest import TARGET

runner = CliRunner()
LOG_GROUP = "FleetProvisioning-PreProvisioningHookLogs-abc"
CERT, CLAIM = "a" * 64, "c" * 64
NOW_MS = int(time.time() * 1000) - 60_000  # moto refuses log events from the future or long past


def powertools_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3] + "+0000"


def decision_line(
    at_ms: int, serial: str, decision: str, reason: str, certificate_id: str, **extra: Any
) -> str:
    """A line as the hook's Powertools logger writes it."""
    return json.dumps(
        {
            "level": "INFO",
            "location": "_log:79",
            "message": "provisioning decision",
            "timestamp": powertools_time(at_ms),
            "service": "provisioning-hook",
            "decision": decision,
            "reason": reason,
            "serial": serial,
            "detail": extra.get("detail"),
            "request_id": extra.get("request_id", "r-1"),
            "certificate_id": certificate_id,
            "claim_certificate_id": CLAIM,
            "client_id": f"prov-{serial}",
        },
        separators=(",", ":"),
    )


@pytest.fixture
def hook_logs(table: Any) -> Any:
    """moto's CloudWatch Logs with the hook's log group holding decisions about several serials."""
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="2027/01/15/[$LATEST]x")
    events = [
        (NOW_MS - 3000, "SN-000001", "deny", "UNKNOWN_SERIAL", "b" * 64, {}),
        (NOW_MS - 2000, "SN-000002", "allow", "ALLOWED_NEW", "d" * 64, {}),
        (NOW_MS - 1000, "SN-000001", "allow", "ALLOWED_NEW", CERT, {"request_id": "r-2"}),
        (NOW_MS, "SN-000001", "deny", "TAKEN", "e" * 64, {"detail": "reserved for another key"}),
    ]
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName="2027/01/15/[$LATEST]x",
        logEvents=sorted(
            [
                {"timestamp": NOW_MS - 500, "message": "START RequestId: r-3 Version: $LATEST"},
                *({"timestamp": e[0], "message": decision_line(*e[:5], **e[5])} for e in events),
            ],
            key=lambda event: event["timestamp"],
        ),
    )
    return logs


def test_the_query_asks_for_one_serials_decisions() -> None:
    assert why.insights_query("SN-000001") == (
        'fields @timestamp, @message | filter message = "provisioning decision" and serial = "SN-000001"'
        " | sort @timestamp asc | limit 1000"
    )
    with pytest.raises(UsageError, match="Logs Insights"):
        why.insights_query('SN" or serial = "x')


def test_insights_results_become_this_serials_attempts(hook_logs: Any) -> None:
    attempts = why.attempts_in_insights(
        hook_logs, LOG_GROUP, "SN-000001", since_s=86400, now=NOW_MS / 1000 + 1
    )
    assert [(a.decision, a.reason, a.certificate_id[:1]) for a in attempts] == [
        ("deny", "UNKNOWN_SERIAL", "b"),
        ("allow", "ALLOWED_NEW", "a"),
        ("deny", "TAKEN", "e"),
    ]
    assert attempts[1].request_id == "r-2" and attempts[2].detail == "reserved for another key"
    assert attempts[0].time == datetime.fromtimestamp((NOW_MS - 3000) / 1000, UTC).isoformat(
        timespec="milliseconds"
    )
    # The window is the query's: nothing from before it.
    assert (
        why.attempts_in_insights(hook_logs, LOG_GROUP, "SN-000001", since_s=0.5, now=NOW_MS / 1000 - 10) == []
    )


def test_a_missing_log_group_is_one_line(hook_logs: Any) -> None:
    with pytest.raises(FleetctlError, match="no log group /nope: give --log-group"):
        why.attempts_in_insights(hook_logs, "/nope", "SN-000001", since_s=60)


def test_why_on_aws_with_the_log_group(hook_logs: Any, table: Any) -> None:
    put_serial(table, "SN-000001", status="RESERVED", certificate_id=CERT, reserved_at=NOW_MS - 1000)
    table.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "serial#SN-000001"}},
        UpdateExpression="SET thing_name = :t",
        ExpressionAttributeValues={":t": {"S": "device-SN-000001"}},
    )
    iot = boto3.client("iot", region_name=REGION)
    iot.create_thing(thingName="device-SN-000001")
    result = runner.invoke(app, ["registry", "why", "SN-000001", *TARGET, "--log-group", LOG_GROUP, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [a["reason"] for a in report["attempts"]] == ["UNKNOWN_SERIAL", "ALLOWED_NEW", "TAKEN"]
    assert report["attempts_source"] == f"CloudWatch Logs Insights over {LOG_GROUP}, last 30 days"
    assert report["registry"]["status"] == "RESERVED" and report["thing"]["thing_name"] == "device-SN-000001"
    assert (
        report["verdict"].startswith("provisioned as ")
        and "later attempt(s) denied, last TAKEN" in report["verdict"]
    )
    table_view = runner.invoke(app, ["registry", "why", "SN-000001", *TARGET, "--log-group", LOG_GROUP])
    assert (
        table_view.exit_code == 0 and "UNKNOWN_SERIAL" in table_view.stdout and "TAKEN" in table_view.stdout
    )


def test_the_log_group_is_the_one_the_templates_hook_writes_to() -> None:
    iot = boto3.client("iot", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    lambda_client = boto3.client(
        "lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:FleetProvisioning-Hook"
    template = {
        "templateArn": f"arn:aws:iot:{REGION}:123456789012:provisioningtemplate/FleetProvisioningTemplate",
        "templateName": "FleetProvisioningTemplate",
        "preProvisioningHook": {"payloadVersion": "2020-04-01", "targetArn": function_arn},
    }
    for configured, expected in (
        ({"LoggingConfig": {"LogFormat": "Text", "LogGroup": LOG_GROUP}}, LOG_GROUP),
        ({}, "/aws/lambda/FleetProvisioning-Hook"),
    ):
        with Stubber(iot) as iot_stub, Stubber(lambda_client) as lambda_stub:
            iot_stub.add_response(
                "describe_provisioning_template", template, {"templateName": "FleetProvisioningTemplate"}
            )
            lambda_stub.add_response(
                "get_function_configuration",
                {"FunctionName": "FleetProvisioning-Hook", "FunctionArn": function_arn, **configured},
                {"FunctionName": function_arn},
            )
            assert why.hook_log_group(iot, lambda_client, "FleetProvisioningTemplate") == expected
    with Stubber(iot) as iot_stub:
        iot_stub.add_response(
            "describe_provisioning_template",
            {k: v for k, v in template.items() if k != "preProvisioningHook"},
        )
        with pytest.raises(FleetctlError, match="has no pre-provisioning hook: give --log-group"):
            why.hook_log_group(iot, lambda_client, "FleetProvisioningTemplate")
    with Stubber(iot) as iot_stub:
        iot_stub.add_client_error(
            "describe_provisioning_template", "ResourceNotFoundException", http_status_code=404
        )
        with pytest.raises(FleetctlError, match="no provisioning template 'Nope'"):
            why.hook_log_group(iot, lambda_client, "Nope")


def test_every_reason_the_hook_gives_has_a_next_step() -> None:
    from provisioning_hook.models import Reason

    assert set(why.NEXT_STEP) == {reason.value for reason in Reason}
