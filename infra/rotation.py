"""Certificate rotation in the field (docs/rotation.md): the rotation template, the retirer, what triggers it.

The rotation template has the same hook as the provisioning template: one Lambda keyed by the template that
calls it (`ROTATION_TEMPLATE_NAME`), so the serial registry has one reader and writer whose rules are
tested together. The certificate retirer retires a rotated device's old certificate when AWS IoT reports
the thing connected with its new one (a topic rule on the lifecycle events) or when the rotation's grace is
over (a schedule), and once a day counts the certificates that expire soon.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from infra import constants as c
from infra import names
from infra.config import FleetConfig
from infra.dependencies import depend_on_role_policy_only
from infra.hook import POWERTOOLS_LAYER_ACCOUNT, POWERTOOLS_LAYER_NAME
from infra.lambda_code import lambda_code
from infra.retention import retention
from infra.template_body import render_rotation_template_body

CONNECTED_SQL = "SELECT * FROM '$aws/events/presence/connected/+'"


def rotations_index(table: dynamodb.Table) -> None:
    """The sparse index of serials with a pending rotation, oldest first (the retirer's sweep)."""
    table.add_global_secondary_index(
        index_name=c.ROTATIONS_INDEX,
        partition_key=dynamodb.Attribute(name="rotation_pending", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="rotation_started_at", type=dynamodb.AttributeType.NUMBER),
        projection_type=dynamodb.ProjectionType.INCLUDE,
        non_key_attributes=[
            "serial",
            "thing_name",
            "certificate_id",
            "rotating_from",
            "rotating_from_key_sha256",
        ],
    )


class Rotation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FleetConfig,
        role: iam.IRole,
        hook: lambda_.IFunction,
        table: dynamodb.Table,
        depends_on: list[IConstruct],
    ) -> None:
        super().__init__(scope, construct_id)
        self.template = iot.CfnProvisioningTemplate(
            self,
            "Template",
            template_name=config.rotation_template_name,
            description="Certificate rotation: a provisioned thing's new certificate, checked by the hook",
            enabled=True,
            template_type="FLEET_PROVISIONING",
            provisioning_role_arn=role.role_arn,
            template_body=render_rotation_template_body(config),
            pre_provisioning_hook=iot.CfnProvisioningTemplate.ProvisioningHookProperty(
                target_arn=hook.function_arn, payload_version=names.HOOK_PAYLOAD_VERSION
            ),
        )
        for dependency in depends_on:
            self.template.node.add_dependency(dependency)
        self.retirer = CertificateRetirer(self, "Retirer", config=config, table=table)


class CertificateRetirer(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: FleetConfig, table: dynamodb.Table
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        layer_arn = stack.format_arn(
            service="lambda",
            account=POWERTOOLS_LAYER_ACCOUNT,
            resource="layer",
            resource_name=f"{POWERTOOLS_LAYER_NAME}:{config.powertools_layer_version}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=retention(config.log_retention_days))
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=c.RETIRER_HANDLER,
            code=lambda_code("certificate_retirer", "provisioning_hook"),
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", layer_arn)],
            timeout=Duration.minutes(5),  # the daily count scans the registry
            memory_size=256,
            log_group=self.log_group,
            environment={
                c.ENV_SERIAL_TABLE: table.table_name,
                c.ENV_THING_NAME_PREFIX: config.thing_name_prefix,
                c.ENV_DEVICE_POLICY: names.device_policy_name(config),
                c.ENV_ROTATION_GRACE: str(config.rotation.grace_s),
                c.ENV_EXPIRING_DAYS: str(config.rotation.expiring_within_days),
                c.ENV_ROTATIONS_INDEX: c.ROTATIONS_INDEX,
                c.ENV_POWERTOOLS_SERVICE: c.RETIRER_SERVICE_NAME,
                c.ENV_POWERTOOLS_NAMESPACE: config.metrics_namespace,
                c.ENV_LOG_LEVEL: "INFO",
            },
        )
        # Read a serial and its rotation index, end a rotation (one transaction of UpdateItems), count.
        table.grant(
            self.function, "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:Scan"
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iot:DescribeCertificate", "iot:UpdateCertificate"],
                resources=[stack.format_arn(service="iot", resource="cert", resource_name="*")],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                # List: the certificates a rotation superseded (the hook deactivated them) are detached too.
                actions=["iot:DetachThingPrincipal", "iot:ListThingPrincipals"],
                resources=[stack.format_arn(service="iot", resource="thing", resource_name="*")],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iot:DetachPolicy"],
                resources=[
                    stack.format_arn(
                        service="iot", resource="policy", resource_name=names.device_policy_name(config)
                    ),
                    stack.format_arn(service="iot", resource="cert", resource_name="*"),
                ],
            )
        )
        depend_on_role_policy_only(self.function)

        # AWS IoT's lifecycle events: a thing that connects (with its new certificate) proves its rotation.
        self.rule = iot.CfnTopicRule(
            self,
            "ConnectedRule",
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=CONNECTED_SQL,
                aws_iot_sql_version="2016-03-23",
                rule_disabled=False,
                description="Retire a rotated device's old certificate once it connects with its new one",
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        lambda_=iot.CfnTopicRule.LambdaActionProperty(function_arn=self.function.function_arn)
                    )
                ],
            ),
        )
        self.function.add_permission(
            "IotRuleInvoke",
            principal=iam.ServicePrincipal(names.IOT_PRINCIPAL),
            action="lambda:InvokeFunction",
            source_arn=self.rule.attr_arn,
            source_account=stack.account,
        )
        self.sweep = events.Rule(
            self,
            "Sweep",
            description="Retire old certificates of rotations past their grace; undo those that never worked",
            schedule=events.Schedule.rate(Duration.minutes(config.rotation.sweep_minutes)),
            targets=[
                targets.LambdaFunction(
                    self.function, event=events.RuleTargetInput.from_object({"action": "sweep"})
                )
            ],
        )
        self.expiring = events.Rule(
            self,
            "Expiring",
            description="Count the devices whose certificate expires soon (CertificatesExpiringSoon)",
            schedule=events.Schedule.rate(Duration.days(1)),
            targets=[
                targets.LambdaFunction(
                    self.function, event=events.RuleTargetInput.from_object({"action": "expiring"})
                )
            ],
        )
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                reason="AWS's basic execution policy only lets the function write its own logs.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:"
                "cert/*]",
                reason="The retirer deactivates and detaches the certificates devices rotated away from; "
                "their ids are made at run time.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:"
                "thing/*]",
                reason="It lists and detaches the old certificates of the thing that rotated, named at run "
                "time.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{Stack.of(table).get_logical_id(table.node.default_child)}.Arn>"
                "/index/*]",
                reason="CDK's grant covers the table's indexes; the retirer queries only the rotations one.",
            ),
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="python3.12 is the runtime AWS's published Powertools layer is built for.",
            ),
        )
