"""The claim policy: a claim certificate can ask for an identity through this template, nothing else."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_iot as iot
from constructs import Construct

from infra import names
from infra.config import FleetConfig

FORMATS = ("json", "cbor")  # the Renesas RX and FreeRTOS devices speak CBOR


def request_topics(template_name: str, *, create_keys: bool = False) -> list[str]:
    """Exact request topics: CreateCertificateFromCsr, RegisterThing on the template, and
    CreateKeysAndCertificate if asked for."""
    apis = ["$aws/certificates/create-from-csr"]
    if create_keys:
        apis.append("$aws/certificates/create")
    apis.append(f"$aws/provisioning-templates/{template_name}/provision")
    return [f"{api}/{fmt}" for api in apis for fmt in FORMATS]


def reply_topics(requests: list[str]) -> list[str]:
    return [f"{topic}/{reply}" for topic in requests for reply in ("accepted", "rejected")]


def claim_request_topics(config: FleetConfig) -> list[str]:
    return request_topics(config.template_name, create_keys=config.allow_create_keys_and_certificate)


def claim_reply_topics(config: FleetConfig) -> list[str]:
    return reply_topics(claim_request_topics(config))


class ClaimPolicy(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: FleetConfig) -> None:
        super().__init__(scope, construct_id)
        replies = claim_reply_topics(config)
        document: dict[str, Any] = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": names.iot_arn(self, "client", config.claim_client_id_pattern),
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Publish",
                    "Resource": [names.iot_arn(self, "topic", t) for t in claim_request_topics(config)],
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
            ],
        }
        self.policy_name = names.claim_policy_name(config)
        self.policy = iot.CfnPolicy(self, "Policy", policy_name=self.policy_name, policy_document=document)
