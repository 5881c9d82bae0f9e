"""The hook process (provisioning/hook_host.py): a Lambda and moto's DynamoDB in a child process, invoked
over a pipe; the emulator's AWS endpoint forwarding DynamoDB to it."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.awsapi.server import LocalAwsServer
from emulator.provisioning.errors import AccessDenied
from emulator.provisioning.hook import Hook, LambdaSpec, hosted_lambda_hook
from emulator.provisioning.hook_host import HookHost, HookHostError

ARN = "arn:aws:lambda:eu-west-1:000000000000:function:probe"

HANDLER = """
import os, time
import boto3

def handler(event, context):
    action = event.get("action")
    if action == "raise":
        raise ValueError("bad event")
    if action == "sleep":
        time.sleep(float(event["seconds"]))
    if action == "table":
        table = boto3.client("dynamodb").describe_table(TableName=os.environ["TABLE"])["Table"]
        return {"allowProvisioning": True, "parameterOverrides": {"table": table["TableName"]}}
    return {
        "allowProvisioning": action != "deny",
        "parameterOverrides": {
            "pid": str(os.getpid()),
            "dynamodb": os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", ""),
            "endpoint": os.environ.get("AWS_ENDPOINT_URL", ""),
            "remaining_ms": str(context.get_remaining_time_in_millis()),
        },
    }
"""


def client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def probe_spec(asset_dir: Path, handler: str = "probe_handler.handler", **environment: str) -> LambdaSpec:
    return LambdaSpec(
        asset_dir=str(asset_dir),
        handler=handler,
        environment=environment,
        function_name="probe",
        function_arn=ARN,
    )


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookHost]:
    asset = tmp_path_factory.mktemp("asset")
    (asset / "probe_handler.py").write_text(textwrap.dedent(HANDLER))
    host = HookHost(
        [probe_spec(asset, TABLE="serials")],
        iot_endpoint_url="http://127.0.0.1:9",
        region="eu-west-1",
        workers=4,
    )
    client("dynamodb", host.dynamodb_url).create_table(
        TableName="serials",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield host
    host.close()


def hook(host: HookHost, timeout_s: float = 5.0) -> Hook:
    return hosted_lambda_hook(host, probe_spec(Path("unused")), timeout_s=timeout_s)


def test_the_lambda_runs_in_the_child_with_its_own_environment(host: HookHost) -> None:
    decision = hook(host).invoke({"action": "allow"})
    overrides = decision.parameter_overrides
    assert int(overrides["pid"]) == host.pid != os.getpid()
    assert overrides["dynamodb"] == host.dynamodb_url  # DynamoDB next to it
    assert overrides["endpoint"] == "http://127.0.0.1:9"  # everything else at the emulator
    assert 4000 < int(overrides["remaining_ms"]) <= 5000
    assert "AWS_ENDPOINT_URL_DYNAMODB" not in os.environ  # nothing leaked into this process
    # Its boto3 reaches the table in its own process.
    assert hook(host).invoke({"action": "table"}).parameter_overrides == {"table": "serials"}


def test_deny_raise_and_timeout_are_access_denied(host: HookHost) -> None:
    with pytest.raises(AccessDenied, match="denied"):
        hook(host).invoke({"action": "deny"})
    with pytest.raises(AccessDenied, match="failed: ValueError"):
        hook(host).invoke({"action": "raise"})
    started = time.monotonic()
    with pytest.raises(AccessDenied, match="within 0.3 s"):
        hook(host, timeout_s=0.3).invoke({"action": "sleep", "seconds": 1.0})
    assert time.monotonic() - started < 1.0
    # The slow call's late answer is dropped; the next one gets its own.
    time.sleep(1.0)
    assert hook(host).invoke({"action": "allow"}).allowed


def test_concurrent_invocations_each_get_their_own_answer(host: HookHost) -> None:
    answers: dict[int, Any] = {}

    def call(i: int) -> None:
        answers[i] = hook(host).invoke({"action": "sleep", "seconds": 0.05 * (i % 3), "n": i}).allowed

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {i: True for i in range(24)}


def test_an_unknown_function_is_a_failure(host: HookHost) -> None:
    with pytest.raises(HookHostError, match="no function"):
        host.invoke("arn:aws:lambda:eu-west-1:000000000000:function:other", {}).result(5)


def test_the_emulator_endpoint_forwards_dynamodb_and_keeps_iot(host: HookHost) -> None:
    server = LocalAwsServer(threading.RLock())
    server.start()
    try:
        server.route("dynamodb", host.dynamodb_url)
        dynamodb = client("dynamodb", server.url)
        dynamodb.put_item(
            TableName="serials", Item={"pk": {"S": "serial#FWD1"}, "status": {"S": "AVAILABLE"}}
        )
        # Written through the emulator's endpoint, held in the hook process.
        direct = client("dynamodb", host.dynamodb_url)
        assert direct.get_item(TableName="serials", Key={"pk": {"S": "serial#FWD1"}})["Item"]["status"] == {
            "S": "AVAILABLE"
        }
        # Errors come back as DynamoDB's own.
        with pytest.raises(ClientError) as raised:
            dynamodb.describe_table(TableName="missing")
        assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
        # IoT is not forwarded: this process's moto answers it.
        iot = client("iot", server.url)
        iot.create_thing(thingName="local-only")
        assert iot.describe_thing(thingName="local-only")["thingName"] == "local-only"
        with pytest.raises(ClientError):
            client("iot", host.dynamodb_url).describe_thing(thingName="local-only")
    finally:
        server.stop()


def test_a_dead_target_is_a_503_not_a_hang() -> None:
    server = LocalAwsServer(threading.RLock())
    server.start()
    try:
        server.route("dynamodb", "http://127.0.0.1:9")  # discard port: nothing listens
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=server.url,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=__import__("botocore.config").config.Config(retries={"total_max_attempts": 1}),
        )
        with pytest.raises(ClientError) as raised:
            dynamodb.list_tables()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        server.stop()


def test_a_dead_hook_process_denies_pending_and_later_calls(tmp_path: Path) -> None:
    (tmp_path / "probe_handler.py").write_text(textwrap.dedent(HANDLER))
    host = HookHost(
        [probe_spec(tmp_path)], iot_endpoint_url="http://127.0.0.1:9", region="eu-west-1", workers=2
    )
    try:
        pending = host.invoke(ARN, {"action": "sleep", "seconds": 30})
        os.kill(host.pid, signal.SIGKILL)
        with pytest.raises(HookHostError, match="exited"):
            pending.result(10)
        with pytest.raises(AccessDenied, match="failed: HookHostError"):
            hook(host).invoke({"action": "allow"})
    finally:
        host.close()


def test_a_handler_that_cannot_load_fails_the_start(tmp_path: Path) -> None:
    with pytest.raises(HookHostError, match="ModuleNotFoundError"):
        HookHost(
            [probe_spec(tmp_path, "missing_module.handler")],
            iot_endpoint_url="http://127.0.0.1:9",
            region="eu-west-1",
        )


def test_the_hook_processs_dynamodb_refuses_motos_control_routes(host: HookHost) -> None:
    """Its port is on 127.0.0.1 as well: one POST to /moto-api/reset must not wipe the serial table."""
    import urllib.error
    import urllib.request

    for path in ("/moto-api/reset", "/moto-api/seed?a=1"):
        request = urllib.request.Request(host.dynamodb_url + path, data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404
    assert (
        client("dynamodb", host.dynamodb_url).describe_table(TableName="serials")["Table"]["TableName"]
        == "serials"
    )
