from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from infra import constants as c
from infra.claim_policy import ClaimPolicy
from infra.claims import CLAIM_RESOURCE_TYPE, ClaimCredentials
from tests.infra.conftest import ACCOUNT, REGION, as_list, make_config, render, statements, synth_construct

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-claims")


@pytest.fixture(scope="module")
def csr_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.infra.conftest import write_csr

    return write_csr(tmp_path_factory.mktemp("csr") / "line-b.csr")


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory, csr_path: Path) -> tuple[Template, Path]:
    config = make_config(
        stack_name="Fleet",
        claim_credentials=[
            {"name": "line-a", "mode": "generated"},
            {"name": "line-b", "mode": "csr", "csr_file": str(csr_path), "active": False},
            {"name": "line-c", "mode": "generated", "active": False},
            {"name": "line-d", "mode": "csr", "csr_file": str(csr_path)},
        ],
    )
    out = tmp_path_factory.mktemp("claims")

    def build(stack: Any) -> None:
        key = kms.Key(stack, "Key")
        policy = ClaimPolicy(stack, c.ID_CLAIM_POLICY, config=config)
        ClaimCredentials(
            stack,
            c.ID_CLAIMS,
            config=config,
            key=key,
            claim_policy_name=policy.policy_name,
            claim_policy=policy.policy,
        )

    template, _ = synth_construct(out, build)
    return template, out


@pytest.fixture(scope="module")
def template(synthesized: tuple[Template, Path]) -> Template:
    return synthesized[0]


def _logical_id(template: Template, type_: str, claim: str) -> str:
    prefix = f"{c.ID_CLAIMS}{claim}"
    found = [lid for lid in template.find_resources(type_) if lid.startswith(prefix)]
    assert len(found) == 1, found
    return found[0]


def test_csr_mode_certificate_comes_from_the_csr_with_its_status(template: Template, csr_path: Path) -> None:
    certificates = template.find_resources("AWS::IoT::Certificate")
    assert len(certificates) == 2
    line_b = certificates[_logical_id(template, "AWS::IoT::Certificate", "LineB")]["Properties"]
    line_d = certificates[_logical_id(template, "AWS::IoT::Certificate", "LineD")]["Properties"]
    assert line_b == {"CertificateSigningRequest": csr_path.read_text(), "Status": "INACTIVE"}
    assert line_d["Status"] == "ACTIVE"


def test_generated_mode_is_a_custom_resource_under_the_stack_key(template: Template) -> None:
    credentials = template.find_resources(CLAIM_RESOURCE_TYPE)
    assert len(credentials) == 2
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    line_a = credentials[_logical_id(template, CLAIM_RESOURCE_TYPE, "LineA")]["Properties"]
    line_c = credentials[_logical_id(template, CLAIM_RESOURCE_TYPE, "LineC")]["Properties"]
    assert line_a["ClaimName"] == "line-a" and line_a["Status"] == "ACTIVE"
    assert line_c["ClaimName"] == "line-c" and line_c["Status"] == "INACTIVE"
    assert line_a["SecretKmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert line_a["SecretName"] == "Fleet/claim-credentials/line-a"
    assert line_a["ServiceToken"]["Fn::GetAtt"][0].startswith(f"{c.ID_CLAIMS}Providerframework")


def test_each_claim_certificate_gets_the_claim_policy(template: Template) -> None:
    attachments = template.find_resources("AWS::IoT::PolicyPrincipalAttachment")
    assert len(attachments) == 4
    principals = {}
    for attachment in attachments.values():
        assert attachment["Properties"]["PolicyName"] == "Fleet-ClaimPolicy"
        assert any(d.startswith(c.ID_CLAIM_POLICY) for d in attachment["DependsOn"])
        principal = attachment["Properties"]["Principal"]["Fn::GetAtt"]
        principals[principal[0]] = principal[1]
    assert principals[_logical_id(template, "AWS::IoT::Certificate", "LineB")] == "Arn"
    assert principals[_logical_id(template, CLAIM_RESOURCE_TYPE, "LineA")] == "CertificateArn"
    assert principals[_logical_id(template, CLAIM_RESOURCE_TYPE, "LineC")] == "CertificateArn"


def test_provider_function_runs_the_claim_handler_from_lambdas_without_the_hook(
    synthesized: tuple[Template, Path],
) -> None:
    template, out = synthesized
    functions = template.find_resources("AWS::Lambda::Function")
    handler = next(f for lid, f in functions.items() if lid.startswith(f"{c.ID_CLAIMS}ProviderFunction"))
    assert handler["Properties"]["Handler"] == c.CLAIM_CR_HANDLER
    assert handler["Properties"]["Runtime"] == "python3.12"
    staged = {p.name for p in (out / handler["Metadata"]["aws:asset:path"]).iterdir()}
    assert staged == {"claim_credential"}


def test_provider_permissions_are_scoped_to_its_secrets_key_and_certificates(template: Template) -> None:
    found = statements(template, f"{c.ID_CLAIMS}ProviderFunctionServiceRole")
    by_action = {a: s for s in found for a in as_list(s["Action"])}
    assert by_action["iot:CreateKeysAndCertificate"]["Resource"] == "*"
    assert render(by_action["iot:DeleteCertificate"]["Resource"]) == [
        f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/*",
        f"arn:aws:iot:{REGION}:{ACCOUNT}:policy/Fleet-ClaimPolicy",
    ]
    assert sorted(render(by_action["secretsmanager:CreateSecret"]["Resource"])) == [
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:Fleet/claim-credentials/{n}-??????"
        for n in ("line-a", "line-c")
    ]
    assert "secretsmanager:GetSecretValue" not in by_action
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    assert by_action["kms:GenerateDataKey"]["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_only_csr_claims_need_no_provider(tmp_path_factory: pytest.TempPathFactory, csr_path: Path) -> None:
    config = make_config(claim_credentials=[{"name": "hsm", "mode": "csr", "csr_file": str(csr_path)}])

    def build(stack: Any) -> None:
        policy = ClaimPolicy(stack, c.ID_CLAIM_POLICY, config=config)
        ClaimCredentials(
            stack,
            c.ID_CLAIMS,
            config=config,
            key=kms.Key(stack, "Key"),
            claim_policy_name=policy.policy_name,
            claim_policy=policy.policy,
        )

    template, _ = synth_construct(tmp_path_factory.mktemp("csr-only"), build)
    template.resource_count_is("AWS::Lambda::Function", 0)
    template.resource_count_is(CLAIM_RESOURCE_TYPE, 0)
    template.resource_count_is("AWS::IoT::Certificate", 1)
