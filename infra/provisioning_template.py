"""The fleet-provisioning template, its role, and its pre-provisioning hook."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IConstruct

from infra import names
from infra.config import FleetConfig
from infra.template_body import render_template_body


class ProvisioningRole(Construct):
    """Lets AWS IoT register things, activate certificates and attach policies while provisioning."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(names.IOT_PRINCIPAL),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(names.THINGS_REGISTRATION_POLICY)
            ],
        )
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                f"{names.THINGS_REGISTRATION_POLICY}]",
                reason="AWS's documented role policy for fleet provisioning; AWS keeps its action list in "
                "step with RegisterThing, which a hand-written copy would not.",
            )
        )


class ProvisioningTemplate(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FleetConfig,
        role: iam.IRole,
        hook: lambda_.IFunction,
        depends_on: list[IConstruct],
    ) -> None:
        super().__init__(scope, construct_id)
        self.template_name = config.template_name
        self.template = iot.CfnProvisioningTemplate(
            self,
            "Template",
            template_name=config.template_name,
            description="Fleet provisioning by claim: serials approved by the pre-provisioning hook",
            enabled=True,
            template_type="FLEET_PROVISIONING",
            provisioning_role_arn=role.role_arn,
            template_body=render_template_body(config),
            pre_provisioning_hook=iot.CfnProvisioningTemplate.ProvisioningHookProperty(
                target_arn=hook.function_arn, payload_version=names.HOOK_PAYLOAD_VERSION
            ),
        )
        # The body names the device policy and thing group by name: create them (and the hook's invoke
        # permission) first, so no device can hit a half-built template.
        for dependency in depends_on:
            self.template.node.add_dependency(dependency)
