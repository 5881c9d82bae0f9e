"""The pre-provisioning hook Lambda: exactly the permissions it uses, invocable only by this template."""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra import names
from infra.config import FleetConfig
from infra.dependencies import depend_on_role_policy_only
from infra.lambda_code import lambda_code
from infra.retention import retention
from infra.template_body import hook_parameters

POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
# The hook imports pydantic (v2) besides Powertools. AWS builds its public layer with the `[all]` extras
# (powertools-lambda-python layer_v3/layer_constructors/helpers.py: include_extras defaults to True), which
# bring pydantic v2, so the function needs no bundling and no Docker.


class PreProvisioningHook(Construct):
    """Code from `lambdas/`, Powertools from AWS's published layer (no Docker to deploy)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: FleetConfig, table: dynamodb.ITable
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
        from_device, _ = hook_parameters(config)  # the rest come from the registry (template_body.py)
        self.log_group = logs.LogGroup(self, "Logs", retention=retention(config.log_retention_days))
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=c.HOOK_HANDLER,
            code=lambda_code("provisioning_hook"),
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", layer_arn)],
            # AWS waits 5 s for the hook; the function's own clients give up before this.
            timeout=Duration.seconds(c.HOOK_TIMEOUT_S),
            memory_size=512,
            log_group=self.log_group,
            environment={
                c.ENV_SERIAL_TABLE: table.table_name,
                c.ENV_SERIAL_PATTERN: config.serial_pattern,
                c.ENV_THING_NAME_PREFIX: config.thing_name_prefix,
                c.ENV_RESERVATION_TIMEOUT: str(config.reservation_timeout_s),
                c.ENV_TEMPLATE_ATTRIBUTES: ",".join(config.thing_attributes),
                c.ENV_DEVICE_PARAMETERS: ",".join(from_device),
                c.ENV_REQUIRE_DEVICE_KEY: "true" if config.require_device_key else "false",
                c.ENV_REQUIRE_CN_MATCH: "true" if config.require_cn_match else "false",
                c.ENV_ROTATION_TEMPLATE: config.rotation_template_name if config.rotation.enabled else "",
                c.ENV_POWERTOOLS_SERVICE: c.HOOK_SERVICE_NAME,
                c.ENV_POWERTOOLS_NAMESPACE: config.metrics_namespace,
                c.ENV_LOG_LEVEL: "INFO",
            },
        )
        # Exactly what the hook calls: read a serial, reserve it in one TransactWriteItems of UpdateItems
        # (IAM authorises each item's action), read certificates' status (claim, stale reservation), and
        # deactivate a certificate its own device superseded after a lost reply.
        # The table itself, not its indexes (the rotation index is the retirer's): no grant() here,
        # which adds `/index/*` once the table has one.
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[table.table_arn]
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iot:DescribeCertificate", "iot:UpdateCertificate"],
                resources=[stack.format_arn(service="iot", resource="cert", resource_name="*")],
            )
        )
        if config.rotation.enabled:
            # A rotation is the thing's own only if the requesting certificate is attached to it.
            self.function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["iot:ListThingPrincipals"],
                    resources=[stack.format_arn(service="iot", resource="thing", resource_name="*")],
                )
            )
        depend_on_role_policy_only(self.function)
        # Scoped by SourceArn and SourceAccount against the confused deputy (AWS's advice for hooks): one
        # permission per template that may call it.
        templates = {"IotInvoke": config.template_name}
        if config.rotation.enabled:
            templates["IotInvokeRotation"] = config.rotation_template_name
        for permission_id, template_name in templates.items():
            self.function.add_permission(
                permission_id,
                principal=iam.ServicePrincipal(names.IOT_PRINCIPAL),
                action="lambda:InvokeFunction",
                source_arn=stack.format_arn(
                    service="iot", resource="provisioningtemplate", resource_name=template_name
                ),
                source_account=stack.account,
            )
        self.invoke_permission = self.function.node.find_child("IotInvoke")
        self.invoke_permissions = [self.function.node.find_child(i) for i in templates]
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                reason="AWS's basic execution policy only lets the function write its own logs.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:cert/*]",
                reason="The hook reads the status of certificates devices create at run time, and "
                "deactivates one its own device superseded (same key, after a lost reply); their ids "
                "cannot be known at deploy time, and DescribeCertificate reveals no secret.",
            ),
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="python3.12 is the runtime AWS's published Powertools layer is built for.",
            ),
        )
        if config.rotation.enabled:
            Validations.of(self.function).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:"
                    "thing/*]",
                    reason="A rotation names its thing at run time; the hook only lists the certificates "
                    "attached to it (ListThingPrincipals) to check the requester is one of them.",
                )
            )
