"""The opt-in load-test stack: off by default, its own stack when on (the backend does not depend on it),
Fargate tasks that read the claim from Secrets Manager and nothing more, cdk-nag and cfn-lint clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from app import build_app, load_fleet_config, synthesize
from infra.config import ConfigError
from infra.loadtest.config import load_loadtest_config
from infra.loadtest.tasks import ENV_CLAIM_CERTIFICATE, ENV_CLAIM_KEY

pytestmark = pytest.mark.xdist_group("infra-loadtest")
STACK = "FleetLoadTest"
SECRET = "FleetProvisioning/claim-credentials/line-a"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(outdir=tmp_path_factory.mktemp("loadtest") / "cdk.out", loadtest="true")


@pytest.fixture(scope="module")
def template(assembly: Path) -> Template:
    return Template.from_json(json.loads((assembly / f"{STACK}.template.json").read_text()))


def raw(assembly: Path, stack: str = STACK) -> dict[str, Any]:
    return json.loads((assembly / f"{stack}.template.json").read_text())


def test_off_by_default_and_the_backend_never_depends_on_it(tmp_path: Path, assembly: Path) -> None:
    app = build_app(outdir=tmp_path / "cdk.out")
    assert [stack.node.id for stack in app.node.children if hasattr(stack, "template_options")] == [
        "FleetProvisioning"
    ]
    manifest = json.loads((assembly / "manifest.json").read_text())
    backend = manifest["artifacts"]["FleetProvisioning"]
    assert not [d for d in backend.get("dependencies", []) if d.startswith(STACK)]
    assert "Fn::ImportValue" not in json.dumps(raw(assembly, "FleetProvisioning"))
    assert "Fn::ImportValue" not in json.dumps(raw(assembly))


def test_a_master_and_a_worker_task_on_fargate(template: Template) -> None:
    template.resource_count_is("AWS::ECS::Cluster", 1)
    template.resource_count_is("AWS::ECS::TaskDefinition", 2)
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": "1024",
            "Memory": "2048",
            "ContainerDefinitions": [Match.object_like({"Name": "worker", "Command": ["worker"]})],
        },
    )
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Cpu": "512",
            "Memory": "1024",
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Name": "master",
                        "Command": ["master"],
                        "PortMappings": [Match.object_like({"ContainerPort": 5557})],
                    }
                )
            ],
        },
    )


def containers(template: Template) -> dict[str, dict[str, Any]]:
    found = {}
    for definition in template.find_resources("AWS::ECS::TaskDefinition").values():
        for container in definition["Properties"]["ContainerDefinitions"]:
            found[container["Name"]] = container
    return found


def test_the_claim_comes_from_secrets_manager_at_run_time_and_only_to_workers(template: Template) -> None:
    by_name = containers(template)
    worker, master = by_name["worker"], by_name["master"]
    secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in worker["Secrets"]}
    assert set(secrets) == {ENV_CLAIM_CERTIFICATE, ENV_CLAIM_KEY}
    assert f":secret:{SECRET}" in secrets[ENV_CLAIM_CERTIFICATE]
    assert secrets[ENV_CLAIM_CERTIFICATE].endswith(':certificatePem::"]]}')
    assert secrets[ENV_CLAIM_KEY].endswith(':privateKey::"]]}')
    assert "Secrets" not in master and "Environment" not in master and "Environment" not in worker


def test_no_claim_key_anywhere_in_the_cloud_assembly(assembly: Path) -> None:
    files = [p for p in assembly.rglob("*") if p.is_file()]
    assert any(p.name == "Dockerfile" for p in files)  # the image's build context is staged
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data and b"BEGIN CERTIFICATE" not in data, path
    staged = {p.relative_to(p.parents[len(p.relative_to(assembly).parts) - 2]).as_posix() for p in files}
    assert not [p for p in staged if p.startswith(("tests/", ".state/", "emulator/", "lambdas/"))]


def policy_statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if any(r["Ref"].startswith(role_prefix) for r in policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def actions(statements: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        out |= set(value if isinstance(value, list) else [value])
    return out


def test_least_privilege_roles(template: Template) -> None:
    # The worker's own role can do nothing: the claim reaches it through ECS, not through an API call.
    assert policy_statements(template, "TasksWorkerTaskRole") == []
    master = policy_statements(template, "TasksMasterTaskRole")
    assert actions(master) == {"s3:PutObject"}
    assert json.dumps(master[0]["Resource"]).endswith('"/reports/*"]]}')
    worker_execution = policy_statements(template, "TasksWorkerExecutionRole")
    reads = [s for s in worker_execution if "secretsmanager:GetSecretValue" in actions([s])]
    assert len(reads) == 1 and json.dumps(reads[0]["Resource"]).endswith(f':secret:{SECRET}-??????"]]}}')
    decrypt = [s for s in worker_execution if actions([s]) == {"kms:Decrypt"}]
    assert len(decrypt) == 1
    condition = decrypt[0]["Condition"]
    assert "kms:ViaService" in condition["StringEquals"]
    assert SECRET in json.dumps(condition["StringLike"]["kms:EncryptionContext:SecretARN"])
    master_execution = policy_statements(template, "TasksMasterExecutionRole")
    assert not [a for a in actions(master_execution) if a.startswith(("secretsmanager:", "kms:"))]
    for statement in master + worker_execution + master_execution:
        assert "*" not in actions([statement])
        assert not [a for a in actions([statement]) if a.endswith(":*")]


def test_network_lets_in_only_workers_to_the_master(template: Template) -> None:
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress", {"IpProtocol": "tcp", "FromPort": 5557, "ToPort": 5557}
    )
    for group in template.find_resources("AWS::EC2::SecurityGroup").values():
        assert "SecurityGroupIngress" not in group["Properties"]
        egress = group["Properties"]["SecurityGroupEgress"]
        ports = {(rule["FromPort"], rule.get("CidrIp")) for rule in egress}
        assert ports <= {(443, "0.0.0.0/0"), (8883, "0.0.0.0/0")}
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": Match.object_like(
                {"BlockPublicAcls": True, "RestrictPublicBuckets": True}
            ),
            "BucketEncryption": Match.any_value(),
        },
    )


# cdk.json's @aws-cdk/aws-ec2:restrictDefaultSecurityGroup adds CDK's own provider, which names its role in
# DependsOn as well as in a GetAtt (W3005): CDK's code, not this project's. Nothing else is excused.
CDK_DEFAULT_SG_PROVIDER = "CustomVpcRestrictDefaultSGCustomResourceProvider"


def test_cfn_lint_is_clean(assembly: Path) -> None:
    text = (assembly / f"{STACK}.template.json").read_text()
    matches = lint(text, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    cdk_own = [m for m in matches if m.rule.id == "W3005" and CDK_DEFAULT_SG_PROVIDER in m.message]
    assert [str(m) for m in matches if m not in cdk_own] == []


def test_cdk_nag_reports_no_unacknowledged_finding(assembly: Path) -> None:
    report = json.loads((assembly / "validation-report.json").read_text())
    reports = report["pluginReports"]
    assert [r for r in reports if r.get("conclusion") != "success" or r.get("violations")] == []


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ('{"worker_cpu": 3000}', "loadtest.worker_cpu: must be one of Fargate's CPU sizes"),
        ('{"worker_memory_mib": 512}', "loadtest.worker_memory_mib: with 1024 CPU units"),
        ('{"stack_name": "FleetProvisioning"}', "loadtest.stack_name: must differ"),
        ('{"colour": "blue"}', "loadtest.colour: unknown key"),
        ("{not json", "loadtest: -c loadtest=... must be true, false or a JSON object"),
    ],
)
def test_bad_loadtest_context_is_one_clear_error(context: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_loadtest_config(context, load_fleet_config())
    assert str(caught.value).startswith(message)


def test_csr_only_backend_needs_a_named_secret() -> None:
    claims = [{"name": "line-a", "mode": "generated", "active": False}]
    fleet = load_fleet_config(None, {"claim_credentials": claims})
    with pytest.raises(ConfigError, match="loadtest.claim_secret_name: no generated claim"):
        load_loadtest_config("true", fleet)
    named = load_loadtest_config('{"claim_secret_name": "loadtest/claim"}', fleet)
    assert named.enabled and named.claim_secret_name == "loadtest/claim"


def test_a_backend_without_generated_claims_synthesizes_with_the_load_test_off(tmp_path: Path) -> None:
    claims = [{"name": "line-a", "mode": "generated", "active": False}]
    assembly = synthesize({"claim_credentials": claims}, outdir=tmp_path / "cdk.out")
    assert not (assembly / f"{STACK}.template.json").exists()
