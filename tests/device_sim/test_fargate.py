"""`python -m device_sim fargate` and the image's entry point against moto: the stack's outputs, the master
started before its workers and pointed at by them, stop in the right order, the claim written 0600."""

from __future__ import annotations

import datetime
import ipaddress
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws

from device_sim.errors import Refused, UserError
from device_sim.locust import container, fargate

REGION = "eu-west-1"
# The stand-in stack has one resource moto's CloudFormation does not model; only its outputs matter here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:moto.cloudformation.parsing")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    from moto.moto_api import state_manager

    # moto moves a task on towards STOPPED each time it is read; AWS keeps it RUNNING until it is stopped.
    state_manager.set_transition(
        model_name="ecs::task", transition={"progression": "manual", "times": 10_000}
    )
    try:
        with mock_aws():
            yield
    finally:
        state_manager.unset_transition(model_name="ecs::task")


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def stack(aws: None) -> fargate.Stack:
    """What the load-test stack creates, made in moto, and its outputs read back from CloudFormation."""
    ec2, ecs = client("ec2"), client("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as CDK's Vpc has it
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    groups = [ec2.create_security_group(GroupName=n, Description=n, VpcId=vpc)["GroupId"] for n in ("m", "w")]
    ecs.create_cluster(clusterName="loadtest")
    definitions = [
        ecs.register_task_definition(
            family=name,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="512",
            memory="1024",
            containerDefinitions=[{"name": name, "image": "device-sim", "command": [name], "memory": 512}],
        )["taskDefinition"]["taskDefinitionArn"]
        for name in ("master", "worker")
    ]
    client("s3").create_bucket(Bucket="reports", CreateBucketConfiguration={"LocationConstraint": REGION})
    outputs = {
        "ClusterName": "loadtest",
        "MasterTaskDefinitionArn": definitions[0],
        "WorkerTaskDefinitionArn": definitions[1],
        "SubnetIds": subnet,
        "MasterSecurityGroupId": groups[0],
        "WorkerSecurityGroupId": groups[1],
        "ReportBucketName": "reports",
        "LogGroupName": "logs",
    }
    body = {
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    client("cloudformation").create_stack(StackName="FleetLoadTest", TemplateBody=json.dumps(body))
    return fargate.stack_outputs(client("cloudformation"), "FleetLoadTest")


def command_of(ecs: Any, stack: fargate.Stack, arn: str) -> list[str]:
    task = ecs.describe_tasks(cluster=stack.cluster, tasks=[arn])["tasks"][0]
    return list(task["overrides"]["containerOverrides"][0]["command"])


def test_start_runs_the_master_then_workers_pointed_at_it(stack: fargate.Stack) -> None:
    ecs = client("ecs")
    options = [
        "--endpoint",
        "example-ats.iot.eu-west-1.amazonaws.com",
        "--template-name",
        "T",
        "--devices",
        "50",
    ]
    started = fargate.start(ecs, stack, 12, options, run_id="run-1")
    assert len(started["workers"]) == 12  # two RunTask calls: ECS starts at most 10 at once
    master = command_of(ecs, stack, started["master"])
    assert master[:4] == ["master", "--upload", "s3://reports/reports/run-1/", "--"]
    assert master[4:6] == ["--expect-workers", "12"]
    assert master[master.index("--claim-key-file") + 1] == str(container.CLAIM_KEY_FILE)
    assert master[master.index("--ca-file") + 1] == str(container.AMAZON_ROOT_CA)
    assert master[-len(options) :] == options
    address = started["master_address"]
    assert ipaddress.ip_address(address).is_private  # the master's address inside the VPC
    for arn in started["workers"]:
        assert command_of(ecs, stack, arn) == ["worker", "--", "--master-host", address]
    tasks = fargate.running_tasks(ecs, stack, "run-1")
    assert len(tasks) == 13 and {t["group"] for t in tasks} == {"device-sim:run-1"}
    assert {t["startedBy"] for t in tasks} == {fargate.STARTED_BY}


def test_stop_stops_the_master_first_then_the_workers(stack: fargate.Stack) -> None:
    ecs = client("ecs")
    first = fargate.start(ecs, stack, 2, ["--devices", "5"], run_id="run-a")
    second = fargate.start(ecs, stack, 1, ["--devices", "5"], run_id="run-b")
    stopped = fargate.stop(ecs, stack, "run-a")
    assert stopped == {"masters": [first["master"]], "workers": first["workers"]}
    assert fargate.running_tasks(ecs, stack, "run-a") == []
    assert len(fargate.running_tasks(ecs, stack, "run-b")) == 2
    fargate.stop(ecs, stack)
    assert fargate.running_tasks(ecs, stack) == [] and second["run"] == "run-b"


def test_a_stack_that_is_not_the_load_test_says_so(aws: None) -> None:
    body = {"Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
    client("cloudformation").create_stack(StackName="Other", TemplateBody=json.dumps(body))
    with pytest.raises(UserError, match="the stack Other is not a load-test stack"):
        fargate.stack_outputs(client("cloudformation"), "Other")
    with pytest.raises(Refused, match="cannot read the stack Missing"):
        fargate.stack_outputs(client("cloudformation"), "Missing")


def pem_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "claim")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_the_worker_entry_point_writes_the_claim_0600_and_forgets_it(tmp_path: Path) -> None:
    certificate, key = pem_pair()
    environ = {container.ENV_CLAIM_CERTIFICATE: certificate, container.ENV_CLAIM_KEY: key, "OTHER": "kept"}
    cert_file, key_file = container.write_claim(environ, tmp_path / "claim")
    assert environ == {"OTHER": "kept"}
    assert cert_file.read_text() == certificate and key_file.read_text() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "claim").stat().st_mode) == 0o700
    with pytest.raises(SystemExit, match="must hold the claim certificate and key as PEM"):
        container.write_claim({container.ENV_CLAIM_CERTIFICATE: "x"}, tmp_path / "other")


def test_the_master_entry_point_uploads_its_reports(aws: None, tmp_path: Path) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="reports", CreateBucketConfiguration={"LocationConstraint": REGION})
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "report.html").write_text("<html></html>")
    keys = container.upload("s3://reports/reports/run-1/", tmp_path, s3)
    assert keys == ["reports/run-1/report.html", "reports/run-1/report.json"]
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="reports")["Contents"]]
    assert sorted(listed) == keys
    with pytest.raises(SystemExit, match="--upload must be s3://"):
        container.upload("/tmp/x", tmp_path, s3)
