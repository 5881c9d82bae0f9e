"""What `aws_endpoint_url` answers besides moto's IoT and DynamoDB: an unserved action is one fast JSON
501 (boto3 and the real AWS CLI, no retries, no traceback), moto's control routes are refused and leave
the registry as it was, DescribeEndpoint names the emulator's own broker (issues 13 and 16)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.test_e2e import aws, new_serial, seed

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("emulator-e2e")]

NOT_EMULATED_LINE = "AWS API: AWS IoT ListAuditFindings is not emulated (501)"


def client(emulator: EmulatorProcess, service: str, mode: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint.aws_endpoint_url,
        region_name=emulator.endpoint.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": mode, "max_attempts": 5}),
    )


def aws_cli(emulator: EmulatorProcess, tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The real AWS CLI (awscli, a dev dependency) with its default retries, pointed at the emulator the
    documented way: AWS_ENDPOINT_URL, fake keys, and no configuration of the user's."""
    executable = Path(sys.executable).with_name("aws")
    assert executable.exists(), "the AWS CLI is a dev dependency (pip install -e '.[dev]')"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": emulator.endpoint.aws_endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": emulator.endpoint.region,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        [str(executable), *arguments], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_an_unserved_action_answers_once_with_a_json_501_and_no_traceback(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    log_before = emulator.log()
    for mode in ("legacy", "standard"):  # the AWS CLI v1 default, and the SDKs' newer one
        with pytest.raises(ClientError) as raised:
            client(emulator, "iot", mode).list_audit_findings()
        error = raised.value.response
        assert error["Error"]["Code"] == "NotImplemented"
        assert "ListAuditFindings is not emulated" in error["Error"]["Message"]
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 501
        assert error["ResponseMetadata"]["RetryAttempts"] == 0
    result = aws_cli(emulator, tmp_path, "iot", "list-audit-findings")
    assert result.returncode != 0
    assert "(NotImplemented)" in result.stderr and "ListAuditFindings is not emulated" in result.stderr
    new_lines = emulator.log()[len(log_before) :]
    assert new_lines.count(NOT_EMULATED_LINE) == 3, new_lines  # one request per call: nothing retried
    assert "Traceback" not in new_lines


def test_a_service_the_endpoint_does_not_serve_gets_its_own_error_format(emulator: EmulatorProcess) -> None:
    for service, call in (("s3", "list_buckets"), ("sns", "list_topics"), ("secretsmanager", "list_secrets")):
        with pytest.raises(ClientError) as raised:
            getattr(client(emulator, service, "standard"), call)()
        assert raised.value.response["Error"]["Code"] == "NotImplemented", service
        assert f"The {service} API is not emulated" in raised.value.response["Error"]["Message"]
        assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert client(emulator, "sts", "standard").get_caller_identity()["Account"] == "123456789012"


def registry_state(emulator: EmulatorProcess) -> tuple[Any, ...]:
    iot = aws(emulator.endpoint, "iot")
    things = sorted(t["thingName"] for t in iot.list_things()["things"])
    certificates = sorted((c["certificateId"], c["status"]) for c in iot.list_certificates()["certificates"])
    items = aws(emulator.endpoint, "dynamodb").scan(TableName=emulator.endpoint.serial_table)["Items"]
    return things, certificates, sorted(json.dumps(item, sort_keys=True) for item in items)


def test_moto_api_routes_are_refused_and_the_registry_is_intact(emulator: EmulatorProcess) -> None:
    seed(emulator.endpoint, new_serial("MA"))
    before = registry_state(emulator)
    assert before[1], "the claim certificates at least"
    for method, path in (
        ("POST", "/moto-api/reset"),
        ("POST", "/moto-api/seed?a=42"),
        ("GET", "/moto-api/data.json"),
        ("POST", "/moto-api/state-manager/set-transition"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
    ):
        request = urllib.request.Request(emulator.endpoint.aws_endpoint_url + path, data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404, path
        assert json.loads(refused.value.read())["__type"] == "NotFound"
    assert registry_state(emulator) == before


def test_describe_endpoint_names_the_emulators_broker(emulator: EmulatorProcess) -> None:
    iot = aws(emulator.endpoint, "iot")
    expected = f"{emulator.endpoint.host}:{emulator.endpoint.port}"  # not 8883: the port is kept
    for kind in (None, "iot:Data", "iot:Data-ATS"):
        answer = iot.describe_endpoint(**({"endpointType": kind} if kind else {}))
        assert answer["endpointAddress"] == expected
    with pytest.raises(ClientError) as jobs:
        iot.describe_endpoint(endpointType="iot:Jobs")
    assert jobs.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.describe_endpoint(endpointType="iot:Nonsense")


def test_an_unsigned_request_is_refused(emulator: EmulatorProcess) -> None:
    request = urllib.request.Request(emulator.endpoint.aws_endpoint_url + "/things", method="GET")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_an_oversized_body_is_refused_before_it_is_read(emulator: EmulatorProcess) -> None:
    """The Content-Length alone decides: the body is never sent, let alone buffered."""
    url = urllib.parse.urlsplit(emulator.endpoint.aws_endpoint_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (16 * 1024 * 1024 + 1))
        status_line = raw.makefile("rb").readline()
    assert status_line.split()[1] == b"413"
    assert aws(emulator.endpoint, "iot").list_provisioning_templates()["templates"]  # still serving
