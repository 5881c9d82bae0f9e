from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra import constants as c
from infra.claim_policy import ClaimPolicy
from infra.device_policy import DevicePolicy
from tests.infra.conftest import ACCOUNT, REGION, make_config, render, synth_construct

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-policies")

ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
THING = "${iot:Connection.Thing.ThingName}"


def _synth(tmp_path_factory: pytest.TempPathFactory, **fleet: Any) -> dict[str, dict[str, Any]]:
    config = make_config(**fleet)

    def build(stack: Any) -> None:
        DevicePolicy(stack, c.ID_DEVICE_POLICY, config=config)
        ClaimPolicy(stack, c.ID_CLAIM_POLICY, config=config)

    template: Template
    template, _ = synth_construct(tmp_path_factory.mktemp("policies"), build)
    return {
        props["Properties"]["PolicyName"]: props["Properties"]
        for props in template.find_resources("AWS::IoT::Policy").values()
    }


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _synth(
        tmp_path_factory,
        stack_name="Fleet",
        template_name="Tpl",
        device_topic_root="dev",
        claim_client_id_pattern="prov-*",
    )


@pytest.fixture(scope="module")
def policies_with_create(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _synth(
        tmp_path_factory,
        stack_name="Fleet",
        template_name="Tpl",
        allow_create_keys_and_certificate=True,
        require_cn_match=False,
        claim_client_id_pattern="factory-?-*",
    )


def _by_action(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for statement in render(document)["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert action not in found, f"{action} in two statements"
            found[action] = statement
    return found


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return sorted(resource if isinstance(resource, list) else [resource])


def test_device_connects_only_as_its_own_attached_thing(policies: dict[str, dict[str, Any]]) -> None:
    statements = _by_action(policies["Fleet-DevicePolicy"]["PolicyDocument"])
    assert set(statements) == {"iot:Connect", "iot:Publish", "iot:Receive", "iot:Subscribe"}
    connect = statements["iot:Connect"]
    assert _resources(connect) == [f"{ARN}:client/{THING}"]
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}


def test_device_topics_are_its_own_namespace_shadow_and_jobs(policies: dict[str, dict[str, Any]]) -> None:
    statements = _by_action(policies["Fleet-DevicePolicy"]["PolicyDocument"])
    topics = [f"dev/{THING}/*", f"$aws/things/{THING}/shadow/*", f"$aws/things/{THING}/jobs/*"]
    assert _resources(statements["iot:Publish"]) == sorted(f"{ARN}:topic/{t}" for t in topics)
    assert statements["iot:Publish"] is statements["iot:Receive"]
    assert _resources(statements["iot:Subscribe"]) == sorted(f"{ARN}:topicfilter/{t}" for t in topics)


def test_claim_policy_allows_exactly_csr_and_register_thing_in_json_and_cbor(
    policies: dict[str, dict[str, Any]],
) -> None:
    statements = _by_action(policies["Fleet-ClaimPolicy"]["PolicyDocument"])
    assert set(statements) == {"iot:Connect", "iot:Publish", "iot:Receive", "iot:Subscribe"}
    requests = [f"$aws/certificates/create-from-csr/{f}" for f in ("json", "cbor")] + [
        f"$aws/provisioning-templates/Tpl/provision/{f}" for f in ("json", "cbor")
    ]
    replies = [f"{r}/{outcome}" for r in requests for outcome in ("accepted", "rejected")]
    assert _resources(statements["iot:Publish"]) == sorted(f"{ARN}:topic/{t}" for t in requests)
    assert _resources(statements["iot:Receive"]) == sorted(f"{ARN}:topic/{t}" for t in replies)
    assert _resources(statements["iot:Subscribe"]) == sorted(f"{ARN}:topicfilter/{t}" for t in replies)
    assert not any("/create/" in r for s in statements.values() for r in _resources(s))


def test_claim_connect_is_limited_to_the_client_id_pattern(
    policies: dict[str, dict[str, Any]], policies_with_create: dict[str, dict[str, Any]]
) -> None:
    assert _resources(_by_action(policies["Fleet-ClaimPolicy"]["PolicyDocument"])["iot:Connect"]) == [
        f"{ARN}:client/prov-*"
    ]
    assert _resources(
        _by_action(policies_with_create["Fleet-ClaimPolicy"]["PolicyDocument"])["iot:Connect"]
    ) == [f"{ARN}:client/factory-?-*"]


def test_create_keys_and_certificate_only_when_enabled(
    policies_with_create: dict[str, dict[str, Any]],
) -> None:
    statements = _by_action(policies_with_create["Fleet-ClaimPolicy"]["PolicyDocument"])
    create = [f"$aws/certificates/create/{f}" for f in ("json", "cbor")]
    publish = _resources(statements["iot:Publish"])
    assert all(f"{ARN}:topic/{t}" in publish for t in create)
    assert all(
        f"{ARN}:topicfilter/{t}/{o}" in _resources(statements["iot:Subscribe"])
        for t in create
        for o in ("accepted", "rejected")
    )
    assert len(publish) == 6
