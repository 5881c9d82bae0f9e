"""The serial registry: one DynamoDB table of serials, factory batches and reservations."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra import constants as c


class SerialRegistry(Construct):
    """On-demand, point-in-time recovery, encrypted with KMS, kept when the stack is deleted."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=c.TABLE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # AWS-managed key: KMS at rest without adding kms:* grants to the hook's exact permissions.
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # The registry is the factory's record of every serial: a stack teardown must not lose it.
            removal_policy=RemovalPolicy.RETAIN,
        )
