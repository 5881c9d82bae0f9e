"""Account-level AWS IoT logging, so failed provisioning attempts leave an ERROR line in AWSIotLogsV2."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from constructs import Construct

from infra import names


class IotLogging(Construct):
    """One per account and region: `iot_logging: false` leaves an existing configuration alone."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(names.IOT_PRINCIPAL),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(names.IOT_LOGGING_POLICY)],
        )
        self.logging = iot.CfnLogging(
            self,
            "Logging",
            account_id=Stack.of(self).account,
            role_arn=self.role.role_arn,
            default_log_level="ERROR",
        )
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{names.IOT_LOGGING_POLICY}]",
                reason="AWS's documented policy for the IoT logging role: it writes AWS IoT's own logs.",
            )
        )
