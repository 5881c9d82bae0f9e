"""The custom-resource provider behind `generated` claim credentials (boto3 only: no Docker to deploy)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, CfnResource, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra import constants as c
from infra.config import FleetConfig
from infra.dependencies import depend_on_role_policy_only
from infra.lambda_code import lambda_code
from infra.retention import retention

BASIC_EXECUTION = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
)


class ClaimCredentialProvider(Construct):
    """Creates a claim key + certificate, keeps both in Secrets Manager, hands CloudFormation only ids."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FleetConfig,
        key: kms.IKey,
        secret_names: list[str],
        claim_policy_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        log_group = logs.LogGroup(self, "Logs", retention=retention(config.log_retention_days))
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler=c.CLAIM_CR_HANDLER,
            code=lambda_code("claim_credential"),
            timeout=Duration.minutes(2),
            log_group=log_group,
        )
        cert_arn = stack.format_arn(service="iot", resource="cert", resource_name="*")
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["iot:CreateKeysAndCertificate"], resources=["*"])
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "iot:UpdateCertificate",
                    "iot:DeleteCertificate",
                    "iot:DescribeCertificate",
                    "iot:ListAttachedPolicies",
                    "iot:DetachPolicy",
                ],
                resources=[
                    cert_arn,
                    stack.format_arn(service="iot", resource="policy", resource_name=claim_policy_name),
                ],
            )
        )
        # Secrets Manager appends 6 random characters to a secret's name in its ARN.
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:UpdateSecret",
                ],
                resources=[
                    stack.format_arn(
                        service="secretsmanager",
                        resource="secret",
                        resource_name=f"{n}-??????",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for n in secret_names
                ],
            )
        )
        key.grant(self.function, "kms:GenerateDataKey", "kms:Decrypt")
        depend_on_role_policy_only(self.function)

        provider_logs = logs.LogGroup(self, "ProviderLogs", retention=retention(config.log_retention_days))
        self.provider = cr.Provider(self, "Provider", on_event_handler=self.function, log_group=provider_logs)
        self.service_token = self.provider.service_token

        framework_function = self.provider.node.find_child("framework-onEvent")
        assert isinstance(framework_function, lambda_.Function)
        depend_on_role_policy_only(framework_function)
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, CfnResource)
        Validations.of(self.provider).acknowledge(
            Acknowledgment(
                id=BASIC_EXECUTION,
                reason="CDK's provider framework function only writes its own logs with it.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{stack.get_logical_id(cfn_function)}.Arn>:*]",
                reason="The framework invokes any version of this stack's own handler function "
                f"({framework_function.node.path} -> {self.function.node.path}), nothing else.",
            ),
        )
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id=BASIC_EXECUTION,
                reason="AWS's basic execution policy only lets the function write its own logs.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="iot:CreateKeysAndCertificate has no resource to scope it to.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:cert/*]",
                reason="The claim certificate's id is made by AWS at deploy time, inside this very function.",
            ),
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="python3.12, the same runtime as the hook; the handler needs only boto3.",
            ),
        )
