"""The device (operational) policy: each device acts only as its own thing, under its own topics."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_iot as iot
from constructs import Construct

from infra import names
from infra.claim_policy import reply_topics, request_topics
from infra.config import FleetConfig

# Policy variables resolved by AWS IoT per connection (not CloudFormation substitutions: the ARNs are
# built with Fn::Join, where `${...}` is literal text).
THING_NAME = "${iot:Connection.Thing.ThingName}"
IS_ATTACHED = "iot:Connection.Thing.IsAttached"


def device_topics(config: FleetConfig) -> list[str]:
    """The topic namespaces of one device: its own root, its shadow, its jobs."""
    return [
        f"{config.device_topic_root}/{THING_NAME}/*",
        f"$aws/things/{THING_NAME}/shadow/*",
        f"$aws/things/{THING_NAME}/jobs/*",
    ]


class DevicePolicy(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: FleetConfig) -> None:
        super().__init__(scope, construct_id)
        topics = device_topics(config)
        document: dict[str, Any] = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # Client id must be the thing name, and the certificate must be attached to that thing:
                    # a certificate alone (stolen before provisioning finished) cannot connect.
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": names.iot_arn(self, "client", THING_NAME),
                    "Condition": {"Bool": {IS_ATTACHED: "true"}},
                },
                {
                    "Effect": "Allow",
                    "Action": ["iot:Publish", "iot:Receive"],
                    "Resource": [names.iot_arn(self, "topic", t) for t in topics],
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": [names.iot_arn(self, "topicfilter", t) for t in topics],
                },
            ],
        }
        if config.rotation.enabled:
            # Certificate rotation (docs/rotation.md): a thing may ask for a certificate from a CSR and
            # register it through the rotation template, and nothing else new. The hook checks the rest.
            requests = request_topics(config.rotation_template_name)
            replies = reply_topics(requests)
            document["Statement"] += [
                {
                    "Effect": "Allow",
                    "Action": "iot:Publish",
                    "Resource": [names.iot_arn(self, "topic", t) for t in requests],
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Receive",
                    "Resource": [names.iot_arn(self, "topic", t) for t in replies],
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": [names.iot_arn(self, "topicfilter", t) for t in replies],
                },
            ]
        self.policy_name = names.device_policy_name(config)
        self.policy = iot.CfnPolicy(self, "Policy", policy_name=self.policy_name, policy_document=document)
