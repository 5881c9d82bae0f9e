"""IoT policy evaluation: the project's claim and device policies, wildcards, variables, conditions, Deny.

One file over 400 lines: one test per rule of the policy language, beside the others.
"""

from __future__ import annotations

import json
import re
import timeit
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.mqtt.policy_engine import (
    ConnectionContext,
    Decision,
    PolicyDocumentError,
    PolicyEngine,
    client_arn,
    topic_arn,
    topicfilter_arn,
)

REGION, ACCOUNT = "eu-west-1", "123456789012"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
THING = "${iot:Connection.Thing.ThingName}"
TEMPLATE = "FleetProvisioningTemplate"
CERT_ID = "c" * 64


def client(client_id: str) -> str:
    return client_arn(REGION, ACCOUNT, client_id)


def topic(name: str) -> str:
    return topic_arn(REGION, ACCOUNT, name)


def topicfilter(name: str) -> str:
    return topicfilter_arn(REGION, ACCOUNT, name)


def device(
    client_id: str = "device-1", thing: str | None = "device-1", attached: bool = True, **extra: Any
) -> ConnectionContext:
    return ConnectionContext(
        client_id=client_id, thing_name=thing, is_attached=attached, certificate_id=CERT_ID, **extra
    )


def claim(client_id: str = "prov-SN1") -> ConnectionContext:
    return ConnectionContext(client_id=client_id, thing_name=None, is_attached=False, certificate_id="d" * 64)


def allow(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def engine(*statements: dict[str, Any], version: str = "2012-10-17") -> PolicyEngine:
    return PolicyEngine([{"Version": version, "Statement": list(statements)}])


# The device policy the stack synthesizes (infra/device_policy.py), pseudo parameters resolved.
DEVICE_TOPICS = [f"devices/{THING}/*", f"$aws/things/{THING}/shadow/*", f"$aws/things/{THING}/jobs/*"]
DEVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        allow(
            "iot:Connect",
            f"{ARN}:client/{THING}",
            Condition={"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        ),
        allow(["iot:Publish", "iot:Receive"], [f"{ARN}:topic/{t}" for t in DEVICE_TOPICS]),
        allow("iot:Subscribe", [f"{ARN}:topicfilter/{t}" for t in DEVICE_TOPICS]),
    ],
}

# The claim policy the stack synthesizes (infra/claim_policy.py): exact topics, client ids `prov-*`.
CLAIM_REQUESTS = [f"$aws/certificates/create-from-csr/{fmt}" for fmt in ("json", "cbor")] + [
    f"$aws/provisioning-templates/{TEMPLATE}/provision/{fmt}" for fmt in ("json", "cbor")
]
CLAIM_REPLIES = [f"{request}/{reply}" for request in CLAIM_REQUESTS for reply in ("accepted", "rejected")]
CLAIM_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        allow("iot:Connect", f"{ARN}:client/prov-*"),
        allow("iot:Publish", [f"{ARN}:topic/{t}" for t in CLAIM_REQUESTS]),
        allow("iot:Receive", [f"{ARN}:topic/{t}" for t in CLAIM_REPLIES]),
        allow("iot:Subscribe", [f"{ARN}:topicfilter/{t}" for t in CLAIM_REPLIES]),
    ],
}


@pytest.fixture(scope="module")
def device_policy() -> PolicyEngine:
    return PolicyEngine([DEVICE_POLICY])


@pytest.fixture(scope="module")
def claim_policy() -> PolicyEngine:
    return PolicyEngine([CLAIM_POLICY])


# ------------------------------------------------------------------------------------------ device policy


def test_device_connects_as_its_own_attached_thing(device_policy: PolicyEngine) -> None:
    assert device_policy.evaluate("iot:Connect", client("device-1"), device()) is Decision.ALLOW


@pytest.mark.parametrize(
    "ctx, reason",
    [
        (device(attached=False), "certificate not attached to the thing"),
        (device(client_id="device-2", thing=None), "client id is not a thing of this certificate"),
        (device(client_id="device-2", thing="device-1"), "client id differs from the thing name"),
        (claim("device-1"), "a claim certificate has no thing"),
    ],
)
def test_device_connect_refusals(device_policy: PolicyEngine, ctx: ConnectionContext, reason: str) -> None:
    assert not device_policy.is_allowed("iot:Connect", client(ctx.client_id), ctx), reason


@pytest.mark.parametrize(
    "name",
    [
        "devices/device-1/telemetry",
        "devices/device-1/a/b/c",
        "devices/device-1/",
        "$aws/things/device-1/shadow/update",
        "$aws/things/device-1/shadow/name/x/get",
        "$aws/things/device-1/jobs/notify-next",
    ],
)
def test_device_publishes_and_receives_on_its_own_topics(device_policy: PolicyEngine, name: str) -> None:
    assert device_policy.is_allowed("iot:Publish", topic(name), device())
    assert device_policy.is_allowed("iot:Receive", topic(name), device())


@pytest.mark.parametrize(
    "name",
    [
        "devices/device-2/telemetry",
        "devices/device-1",
        "devices/device-10/x",
        "devices/device-/x",
        "$aws/things/device-2/shadow/update",
        "$aws/certificates/create-from-csr/json",
        "other/device-1/x",
        "Devices/device-1/x",
    ],
)
def test_device_cannot_publish_elsewhere(device_policy: PolicyEngine, name: str) -> None:
    assert not device_policy.is_allowed("iot:Publish", topic(name), device())
    assert not device_policy.is_allowed("iot:Receive", topic(name), device())


def test_device_subscriptions(device_policy: PolicyEngine) -> None:
    ctx = device()
    assert device_policy.is_allowed("iot:Subscribe", topicfilter("devices/device-1/commands"), ctx)
    # `*` in the policy covers the literal characters `#` and `+` of an MQTT filter under its own root...
    assert device_policy.is_allowed("iot:Subscribe", topicfilter("devices/device-1/#"), ctx)
    shadow_replies = topicfilter("$aws/things/device-1/shadow/+/accepted")
    assert device_policy.is_allowed("iot:Subscribe", shadow_replies, ctx)
    # ...but a filter reaching other devices is a different string, and refused.
    assert not device_policy.is_allowed("iot:Subscribe", topicfilter("devices/+/commands"), ctx)
    assert not device_policy.is_allowed("iot:Subscribe", topicfilter("#"), ctx)
    assert not device_policy.is_allowed("iot:Subscribe", topicfilter("devices/#"), ctx)


def test_device_topic_permissions_need_the_thing(device_policy: PolicyEngine) -> None:
    # An unattached certificate: the thing variable does not resolve, so nothing matches.
    unattached = device(attached=False)
    assert not device_policy.is_allowed("iot:Publish", topic("devices/device-1/x"), unattached)
    assert not device_policy.is_allowed("iot:Subscribe", topicfilter("devices/device-1/x"), unattached)


def test_device_policy_does_not_grant_subscribe_as_publish(device_policy: PolicyEngine) -> None:
    assert not device_policy.is_allowed("iot:Subscribe", topic("devices/device-1/x"), device())
    assert not device_policy.is_allowed("iot:Publish", topicfilter("devices/device-1/x"), device())
    assert not device_policy.is_allowed("iot:UpdateThingShadow", topic("devices/device-1/x"), device())


# ------------------------------------------------------------------------------------------- claim policy


@pytest.mark.parametrize(
    "client_id, allowed",
    [
        ("prov-SN1", True),
        ("prov-", True),
        ("prov-a/b:c", True),
        ("device-1", False),
        ("PROV-SN1", False),
        ("xprov-SN1", False),
        ("prov", False),
    ],
)
def test_claim_connect_client_id_pattern(claim_policy: PolicyEngine, client_id: str, allowed: bool) -> None:
    assert claim_policy.is_allowed("iot:Connect", client(client_id), claim(client_id)) is allowed


@pytest.mark.parametrize("name", CLAIM_REQUESTS)
def test_claim_publishes_its_requests(claim_policy: PolicyEngine, name: str) -> None:
    assert claim_policy.is_allowed("iot:Publish", topic(name), claim())


@pytest.mark.parametrize(
    "name",
    [
        "$aws/certificates/create/json",  # CreateKeysAndCertificate is not enabled in this configuration
        "$aws/provisioning-templates/OtherTemplate/provision/json",
        f"$aws/provisioning-templates/{TEMPLATE}/provision/json/accepted",  # replies are the service's
        "devices/prov-SN1/x",
        "$aws/things/x/shadow/update",
        "#",
    ],
)
def test_claim_cannot_publish_elsewhere(claim_policy: PolicyEngine, name: str) -> None:
    assert not claim_policy.is_allowed("iot:Publish", topic(name), claim())


@pytest.mark.parametrize("name", CLAIM_REPLIES)
def test_claim_subscribes_to_and_receives_its_replies(claim_policy: PolicyEngine, name: str) -> None:
    assert claim_policy.is_allowed("iot:Subscribe", topicfilter(name), claim())
    assert claim_policy.is_allowed("iot:Receive", topic(name), claim())


@pytest.mark.parametrize(
    "name",
    [
        "#",
        "$aws/#",
        "$aws/certificates/create-from-csr/+/accepted",
        "$aws/certificates/create-from-csr/json/#",
        f"$aws/provisioning-templates/{TEMPLATE}/provision/json",  # a request topic, not a reply
        "$aws/certificates/create/json/accepted",
    ],
)
def test_claim_cannot_subscribe_widely(claim_policy: PolicyEngine, name: str) -> None:
    assert not claim_policy.is_allowed("iot:Subscribe", topicfilter(name), claim())


def test_aws_doc_claim_policy_with_wildcards() -> None:
    # The provision-wo-cert example: `*` after the API path covers formats and replies.
    policy = engine(
        allow("iot:Connect", "*"),
        allow(
            ["iot:Publish", "iot:Receive"],
            [
                f"{ARN}:topic/$aws/certificates/create/*",
                f"{ARN}:topic/$aws/provisioning-templates/{TEMPLATE}/provision/*",
            ],
        ),
        allow(
            "iot:Subscribe",
            [
                f"{ARN}:topicfilter/$aws/certificates/create/*",
                f"{ARN}:topicfilter/$aws/provisioning-templates/{TEMPLATE}/provision/*",
            ],
        ),
    )
    ctx = claim("anything")
    assert policy.is_allowed("iot:Connect", client("anything"), ctx)
    assert policy.is_allowed("iot:Publish", topic("$aws/certificates/create/cbor"), ctx)
    assert policy.is_allowed("iot:Receive", topic("$aws/certificates/create/json/accepted"), ctx)
    assert policy.is_allowed("iot:Subscribe", topicfilter("$aws/certificates/create/#"), ctx)
    assert not policy.is_allowed("iot:Publish", topic("$aws/certificates/create-from-csr/json"), ctx)


# ------------------------------------------------------------------------------------------- Deny, default


def test_nothing_allowed_means_denied() -> None:
    assert PolicyEngine([]).evaluate("iot:Connect", client("x"), claim("x")) is Decision.IMPLICIT_DENY
    assert not PolicyEngine([]).is_allowed("iot:Connect", client("x"), claim("x"))


def test_explicit_deny_wins_over_allow() -> None:
    policy = engine(allow("iot:*", "*"), deny("iot:Publish", f"{ARN}:topic/secret/*"))
    assert policy.evaluate("iot:Publish", topic("secret/x"), claim()) is Decision.EXPLICIT_DENY
    assert policy.evaluate("iot:Publish", topic("public/x"), claim()) is Decision.ALLOW
    assert policy.evaluate("iot:Receive", topic("secret/x"), claim()) is Decision.ALLOW


def test_deny_in_one_policy_wins_over_allow_in_another() -> None:
    policies = PolicyEngine(
        [
            {"Version": "2012-10-17", "Statement": [allow("iot:Connect", "*")]},
            {"Version": "2012-10-17", "Statement": [deny("iot:Connect", f"{ARN}:client/blocked-*")]},
        ]
    )
    assert policies.is_allowed("iot:Connect", client("fine"), claim("fine"))
    assert policies.evaluate("iot:Connect", client("blocked-1"), claim("blocked-1")) is Decision.EXPLICIT_DENY


def test_deny_with_an_unresolved_variable_does_not_apply() -> None:
    policy = engine(allow("iot:Publish", "*"), deny("iot:Publish", f"{ARN}:topic/{THING}/*"))
    assert policy.is_allowed("iot:Publish", topic("device-1/x"), claim("device-1"))
    assert not policy.is_allowed("iot:Publish", topic("device-1/x"), device())


# ------------------------------------------------------------------------------------------------ actions


@pytest.mark.parametrize(
    "pattern, action, hit",
    [
        ("iot:*", "iot:Publish", True),
        ("*", "iot:Connect", True),
        ("iot:Pub*", "iot:Publish", True),
        ("iot:?ublish", "iot:Publish", True),
        ("IOT:PUBLISH", "iot:Publish", True),
        ("iot:Publish", "iot:Subscribe", False),
        ("iot:Pub*", "iot:Receive", False),
        ("greengrass:*", "iot:Connect", False),
        ("iot:Publish", "iot:PublishRetain", False),
    ],
)
def test_action_matching(pattern: str, action: str, hit: bool) -> None:
    assert engine(allow(pattern, "*")).is_allowed(action, topic("a"), claim()) is hit


def test_action_list_and_not_action() -> None:
    policy = engine(allow(["iot:Publish", "iot:Receive"], "*"))
    assert policy.is_allowed("iot:Receive", topic("a"), claim())
    assert not policy.is_allowed("iot:Subscribe", topicfilter("a"), claim())
    everything_but_connect = engine({"Effect": "Allow", "NotAction": "iot:Connect", "Resource": "*"})
    assert everything_but_connect.is_allowed("iot:Publish", topic("a"), claim())
    assert not everything_but_connect.is_allowed("iot:Connect", client("a"), claim("a"))


# ---------------------------------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    "pattern, name, hit",
    [
        ("a/?/c", "a/b/c", True),
        ("a/?/c", "a/bb/c", False),
        ("a/?/c", "a//c", False),
        ("a/*", "a/b/c/d", True),
        ("a/*", "a", False),
        ("*/c", "a/b/c", True),
        ("a/+/c", "a/b/c", False),
        ("a/+/c", "a/+/c", True),  # MQTT wildcards are literal in a policy
        ("a/#", "a/b", False),
        ("a/#", "a/#", True),
        ("a.b", "axb", False),
        ("a(b)|c", "a(b)|c", True),
        ("x[1]", "x[1]", True),  # no regex leaks
        ("A/b", "a/b", False),  # resources are case-sensitive
        ("a*a", "a", False),
        ("ab*b", "ab", False),
        ("ab*b", "abb", True),
        ("a*", "a", True),
        ("*a*", "a", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("a*b*b", "abb", True),
        ("a*b*b", "ab", False),
        ("**", "", True),
    ],
)
def test_resource_wildcards(pattern: str, name: str, hit: bool) -> None:
    assert (
        engine(allow("iot:Publish", f"{ARN}:topic/{pattern}")).is_allowed("iot:Publish", topic(name), claim())
        is hit
    )


def test_star_spans_arn_parts() -> None:
    policy = engine(allow("iot:Publish", "arn:aws:iot:*:topic/x"))
    assert policy.is_allowed("iot:Publish", topic("x"), claim())
    assert not policy.is_allowed("iot:Publish", f"arn:aws:iot:{REGION}:999999999999:topic/y", claim())


def test_resource_list_and_not_resource() -> None:
    policy = engine(allow("iot:Publish", [f"{ARN}:topic/a", f"{ARN}:topic/b"]))
    assert policy.is_allowed("iot:Publish", topic("b"), claim())
    assert not policy.is_allowed("iot:Publish", topic("c"), claim())
    not_secret = engine({"Effect": "Allow", "Action": "iot:Publish", "NotResource": f"{ARN}:topic/secret/*"})
    assert not_secret.is_allowed("iot:Publish", topic("public"), claim())
    assert not not_secret.is_allowed("iot:Publish", topic("secret/x"), claim())


# ---------------------------------------------------------------------------------------------- variables


def test_client_id_variable() -> None:
    policy = engine(allow("iot:Publish", f"{ARN}:topic/clients/${{iot:ClientId}}/*"))
    assert policy.is_allowed("iot:Publish", topic("clients/prov-SN1/x"), claim())
    assert not policy.is_allowed("iot:Publish", topic("clients/prov-SN2/x"), claim())


def test_certificate_id_variable() -> None:
    policy = engine(allow("iot:Publish", f"{ARN}:topic/certs/${{iot:CertificateId}}"))
    assert policy.is_allowed("iot:Publish", topic(f"certs/{CERT_ID}"), device())
    assert not policy.is_allowed("iot:Publish", topic("certs/other"), device())
    no_cert = ConnectionContext(client_id="x")
    assert not policy.is_allowed("iot:Publish", topic("certs/"), no_cert)


def test_thing_type_and_attribute_variables() -> None:
    policy = engine(
        allow(
            "iot:Publish",
            [
                f"{ARN}:topic/types/${{iot:Connection.Thing.ThingTypeName}}",
                f"{ARN}:topic/lines/${{iot:Connection.Thing.Attributes[line]}}/*",
            ],
        )
    )
    ctx = device(thing_type_name="sensor", thing_attributes={"line": "l3"})
    assert policy.is_allowed("iot:Publish", topic("types/sensor"), ctx)
    assert policy.is_allowed("iot:Publish", topic("lines/l3/x"), ctx)
    assert not policy.is_allowed("iot:Publish", topic("lines/l4/x"), ctx)
    bare = device()  # no type, no such attribute: unresolved, so no match
    assert not policy.is_allowed("iot:Publish", topic("types/"), bare)
    assert not policy.is_allowed("iot:Publish", topic("lines//x"), bare)
    # The same thing data does not resolve when the client id is not the thing's name.
    other = device(client_id="someone", thing_type_name="sensor", thing_attributes={"line": "l3"})
    assert not policy.is_allowed("iot:Publish", topic("lines/l3/x"), other)


@pytest.mark.parametrize(
    "variable",
    [
        "${iot:Nope}",
        "${aws:SourceIp}",
        "${iot:Connection.Thing.Attributes[]}",
        "${}",
    ],
)
def test_unknown_variables_match_nothing(variable: str) -> None:
    policy = engine(allow("iot:Publish", [f"{ARN}:topic/x/{variable}", f"{ARN}:topic/y/{variable}*"]))
    for name in ("x/", f"x/{variable}", "y/anything"):
        assert not policy.is_allowed("iot:Publish", topic(name), device())


@pytest.mark.parametrize(
    "pattern, name, hit",
    [
        ("a${*}", "a*", True),
        ("a${*}", "ab", False),
        ("a${?}", "a?", True),
        ("a${?}", "ab", False),
        ("a${$}{x}", "a${x}", True),
        ("a$(*)", "a*", True),
        ("a$(*)", "ab", False),  # the IoT guide's spelling of the same escapes
        ("$aws/x", "$aws/x", True),  # a `$` not followed by `{` is just a character
    ],
)
def test_special_character_escapes(pattern: str, name: str, hit: bool) -> None:
    assert (
        engine(allow("iot:Publish", f"{ARN}:topic/{pattern}")).is_allowed("iot:Publish", topic(name), claim())
        is hit
    )


def test_substituted_values_are_literal_not_wildcards() -> None:
    policy = engine(allow("iot:Publish", f"{ARN}:topic/c/${{iot:ClientId}}"))
    assert policy.is_allowed("iot:Publish", topic("c/a*"), claim("a*"))
    assert not policy.is_allowed("iot:Publish", topic("c/abc"), claim("a*"))
    assert not policy.is_allowed("iot:Publish", topic("c/ab"), claim("a?"))


def test_variables_need_version_2012_10_17() -> None:
    old = engine(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}"), version="2008-10-17")
    assert not old.is_allowed("iot:Publish", topic("prov-SN1"), claim())
    assert old.is_allowed("iot:Publish", topic("${iot:ClientId}"), claim())


# --------------------------------------------------------------------------------------------- conditions


def conditioned(condition: dict[str, Any]) -> PolicyEngine:
    return engine(allow("iot:Connect", "*", Condition=condition))


def connects(policy: PolicyEngine, ctx: ConnectionContext) -> bool:
    return policy.is_allowed("iot:Connect", client(ctx.client_id), ctx)


@pytest.mark.parametrize("value", ["true", "TRUE", ["true"], True])
def test_bool_is_attached(value: Any) -> None:
    policy = conditioned({"Bool": {"iot:Connection.Thing.IsAttached": value}})
    assert connects(policy, device())
    assert not connects(policy, device(attached=False))
    assert not connects(policy, claim())


def test_bool_false_selects_unattached_connections() -> None:
    policy = conditioned({"Bool": {"iot:Connection.Thing.IsAttached": "false"}})
    assert connects(policy, claim())
    assert not connects(policy, device())


@pytest.mark.parametrize(
    "operator, value, client_id, hit",
    [
        ("StringEquals", "prov-SN1", "prov-SN1", True),
        ("StringEquals", "prov-SN1", "prov-sn1", False),
        ("StringEquals", ["a", "prov-SN1"], "prov-SN1", True),  # any value matches (OR)
        ("StringEquals", "prov-*", "prov-SN1", False),  # no wildcards in *Equals
        ("StringNotEquals", "prov-SN1", "prov-SN1", False),
        ("StringNotEquals", ["a", "b"], "prov-SN1", True),
        ("StringEqualsIgnoreCase", "PROV-sn1", "prov-SN1", True),
        ("StringNotEqualsIgnoreCase", "PROV-sn1", "prov-SN1", False),
        ("StringLike", "prov-*", "prov-SN1", True),
        ("StringLike", "prov-???", "prov-SN1", True),
        ("StringLike", "prov-??", "prov-SN1", False),
        ("StringNotLike", "prov-*", "prov-SN1", False),
        ("StringNotLike", "device-*", "prov-SN1", True),
        ("ArnLike", "arn:aws:iot:*:*:client/*", "prov-SN1", False),  # not an ARN
        ("ArnLike", "arn:aws:iot:*:*:client/p*", f"{ARN}:client/prov-1", True),
        ("ArnEquals", f"{ARN}:client/prov-1", f"{ARN}:client/prov-1", True),
        ("ArnLike", "arn:aws:iot:*:*:client/p*", f"{ARN}:client/other", False),
    ],
)
def test_string_and_arn_operators_on_client_id(operator: str, value: Any, client_id: str, hit: bool) -> None:
    policy = conditioned({operator: {"iot:ClientId": value}})
    assert connects(policy, claim(client_id)) is hit


def test_condition_values_take_variables() -> None:
    policy = conditioned({"StringEquals": {"iot:ClientId": "${iot:Connection.Thing.ThingName}"}})
    assert connects(policy, device())
    assert not connects(policy, claim())  # unresolved value matches nothing


def test_thing_name_condition_key() -> None:
    policy = conditioned({"StringLike": {"iot:Connection.Thing.ThingName": "device-*"}})
    assert connects(policy, device())
    assert not connects(policy, device(client_id="x", thing="x"))
    assert not connects(policy, claim())  # key absent: positive operators are false


def test_attribute_condition_key() -> None:
    policy = conditioned(
        {
            "StringEquals": {
                "iot:Connection.Thing.Attributes[batch]": "b1",
                "iot:Connection.Thing.ThingTypeName": "sensor",
            }
        }
    )
    assert connects(policy, device(thing_type_name="sensor", thing_attributes={"batch": "b1"}))
    assert not connects(policy, device(thing_type_name="sensor", thing_attributes={"batch": "b2"}))
    assert not connects(policy, device(thing_attributes={"batch": "b1"}))  # both keys must hold (AND)


def test_every_operator_must_hold() -> None:
    policy = conditioned(
        {"Bool": {"iot:Connection.Thing.IsAttached": "true"}, "StringLike": {"iot:ClientId": "device-*"}}
    )
    assert connects(policy, device())
    assert not connects(policy, device(client_id="x-1", thing="x-1"))


def test_absent_key_with_negated_operator_and_if_exists() -> None:
    negated = conditioned({"StringNotEquals": {"iot:Connection.Thing.ThingName": "device-1"}})
    assert connects(negated, claim())  # IAM: a negated operator on an absent key is true
    assert not connects(negated, device())
    if_exists = conditioned({"StringEqualsIfExists": {"iot:Connection.Thing.ThingName": "device-1"}})
    assert connects(if_exists, claim())
    assert connects(if_exists, device())
    assert not connects(if_exists, device(client_id="device-2", thing="device-2"))


def test_null_operator() -> None:
    no_thing = conditioned({"Null": {"iot:Connection.Thing.ThingName": "true"}})
    assert connects(no_thing, claim())
    assert not connects(no_thing, device())
    has_thing = conditioned({"Null": {"iot:Connection.Thing.ThingName": "false"}})
    assert connects(has_thing, device())


@pytest.mark.parametrize("operator", ["NumericEquals", "DateGreaterThan", "IpAddress", "StringMatches"])
def test_unknown_operator_means_the_statement_does_not_apply(operator: str) -> None:
    assert not connects(conditioned({operator: {"iot:ClientId": "prov-SN1"}}), claim())
    # ...for a Deny as well: it does not take effect.
    policy = engine(
        allow("iot:Connect", "*"), deny("iot:Connect", "*", Condition={operator: {"iot:ClientId": "x"}})
    )
    assert connects(policy, claim())


def test_conditional_deny() -> None:
    policy = engine(
        allow("iot:Connect", "*"),
        deny("iot:Connect", "*", Condition={"Bool": {"iot:Connection.Thing.IsAttached": "false"}}),
    )
    assert connects(policy, device())
    assert policy.evaluate("iot:Connect", client("prov-SN1"), claim()) is Decision.EXPLICIT_DENY


# ----------------------------------------------------------------------------------------------- documents


def test_documents_as_json_strings_and_single_statement_objects() -> None:
    policy = PolicyEngine([json.dumps({"Version": "2012-10-17", "Statement": allow("iot:Connect", "*")})])
    assert connects(policy, claim())


@pytest.mark.parametrize(
    "document, match",
    [
        ("{nope", "not valid JSON"),
        ({"Version": "2012-10-17"}, "no Statement"),
        ([allow("iot:Connect", "*")], "no Statement"),
        ({"Statement": "x"}, "Statement must be a list"),
        ({"Statement": ["x"]}, "a statement must be an object"),
        ({"Statement": [{"Action": "iot:Connect", "Resource": "*"}]}, "Effect must be"),
        ({"Statement": [{"Effect": "allow", "Action": "iot:Connect", "Resource": "*"}]}, "Effect must be"),
        ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, "exactly one of Action and NotAction"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "a", "NotAction": "b", "Resource": "*"}]},
            "exactly one of Action",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "iot:Connect"}]},
            "exactly one of Resource and NotResource",
        ),
        ({"Statement": [allow([], "*")]}, "non-empty list of strings"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": ["*", 1]}]},
            "non-empty list of strings",
        ),
        ({"Statement": [allow("iot:Connect", "*", Condition=["x"])]}, "Condition must be an object"),
        ({"Statement": [allow("iot:Connect", "*", Condition={"Bool": "x"})]}, "must be an object of key"),
        (
            {"Statement": [allow("iot:Connect", "*", Condition={"Bool": {"k": []}})]},
            "a value or a non-empty list",
        ),
    ],
)
def test_malformed_documents_are_refused_at_construction(document: Any, match: str) -> None:
    with pytest.raises(PolicyDocumentError, match=match):
        PolicyEngine([document])


def test_arn_helpers() -> None:
    assert client_arn("us-east-1", "1", "c") == "arn:aws:iot:us-east-1:1:client/c"
    shadow = "$aws/things/t/shadow/get"
    assert topic_arn("us-east-1", "1", shadow) == f"arn:aws:iot:us-east-1:1:topic/{shadow}"
    assert topicfilter_arn("us-east-1", "1", "a/+/#") == "arn:aws:iot:us-east-1:1:topicfilter/a/+/#"


def test_evaluation_is_cheap(device_policy: PolicyEngine) -> None:
    # Measured on the dev box (2 cores, loaded): 5-11 us per publish check for the device policy, and
    # ~14 us for a device never seen before (no regex to compile for `*`-only patterns).
    # The bound is 20x that, to stay meaningful without flaking on a loaded CI runner.
    ctx = device()
    resource = topic("devices/device-1/telemetry")
    calls = 2000
    seconds = min(
        timeit.repeat(lambda: device_policy.is_allowed("iot:Publish", resource, ctx), number=calls, repeat=3)
    )
    assert seconds / calls < 200e-6


def _reference_match(pattern: str, value: str) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


@settings(max_examples=1000, deadline=None)
@given(pattern=st.text(alphabet="ab/#*?", max_size=7), name=st.text(alphabet="ab/#", max_size=6))
def test_wildcard_matching_agrees_with_a_reference_regex(pattern: str, name: str) -> None:
    # Covers both matchers: the scan for `*`-only patterns and the regex for patterns with `?`.
    policy = engine(allow("iot:Publish", f"{ARN}:topic/{pattern}"))
    assert policy.is_allowed("iot:Publish", topic(name), claim()) is _reference_match(pattern, name)


def test_one_character_wildcard_with_variables() -> None:
    policy = engine(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}/?/*"))
    for client_id in ("prov-1", "prov-2", "prov-1"):  # the second prov-1 reuses its compiled pattern
        assert policy.is_allowed("iot:Publish", topic(f"{client_id}/x/y"), claim(client_id))
        assert not policy.is_allowed("iot:Publish", topic(f"{client_id}/xx/y"), claim(client_id))
        assert not policy.is_allowed("iot:Publish", topic("other/x/y"), claim(client_id))


# ------------------------------------------------------------------------------------------ context-free
def test_context_free_only_when_no_variable_and_no_condition(
    claim_policy: PolicyEngine, device_policy: PolicyEngine
) -> None:
    """The gatekeeper shares a context-free engine's decisions between connections (emulator/mqtt/auth.py):
    the claim's policy qualifies, the device policy (variables, a condition) does not."""
    assert claim_policy.context_free
    assert not device_policy.context_free
    assert not engine(
        allow("iot:Publish", "*", Condition={"Bool": {"iot:Connection.Thing.IsAttached": "true"}})
    ).context_free
    assert not engine(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}")).context_free
    # Before 2012-10-17 `${...}` is plain text: nothing is read from the connection.
    assert engine(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}"), version="2008-10-17").context_free


@settings(max_examples=60, deadline=None)
@given(
    client_id=st.text(min_size=1, max_size=20), name=st.sampled_from(CLAIM_REQUESTS + CLAIM_REPLIES + ["x"])
)
def test_a_context_free_engine_decides_alike_for_every_connection(client_id: str, name: str) -> None:
    claim_engine = PolicyEngine([CLAIM_POLICY])
    for action, resource in (("iot:Publish", topic(name)), ("iot:Subscribe", topicfilter(name))):
        assert claim_engine.evaluate(action, resource, claim(client_id)) is claim_engine.evaluate(
            action, resource, claim()
        )
