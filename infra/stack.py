"""The fleet-provisioning stack: it only composes the constructs."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from infra import constants as c
from infra import names
from infra.claim_policy import ClaimPolicy
from infra.claims import ClaimCredentials
from infra.config import FleetConfig
from infra.device_policy import DevicePolicy
from infra.encryption import StackKey
from infra.hook import PreProvisioningHook
from infra.iot_logging import IotLogging
from infra.monitoring import Monitoring
from infra.outputs import add_outputs
from infra.provisioning_template import ProvisioningRole, ProvisioningTemplate
from infra.registry import SerialRegistry
from infra.rotation import Rotation, rotations_index
from infra.things import ThingGrouping


class FleetProvisioningStack(Stack):
    def __init__(self, scope: Construct, *, config: FleetConfig) -> None:
        super().__init__(
            scope,
            config.stack_name,
            stack_name=config.stack_name,
            description="AWS IoT fleet provisioning by claim: template, hook, serial registry, "
            "claim credentials, monitoring",
        )
        key = StackKey(self, names.ID_KEY).key
        registry = SerialRegistry(self, c.ID_REGISTRY)
        hook = PreProvisioningHook(self, c.ID_HOOK, config=config, table=registry.table)
        things = ThingGrouping(self, names.ID_THINGS, config=config)
        device_policy = DevicePolicy(self, c.ID_DEVICE_POLICY, config=config)
        claim_policy = ClaimPolicy(self, c.ID_CLAIM_POLICY, config=config)
        role = ProvisioningRole(self, c.ID_ROLE)
        depends_on = [device_policy.policy, things.thing_group, hook.invoke_permission]
        if things.thing_type is not None:
            depends_on.append(things.thing_type)
        template = ProvisioningTemplate(
            self, c.ID_TEMPLATE, config=config, role=role.role, hook=hook.function, depends_on=depends_on
        )
        rotation = None
        if config.rotation.enabled:
            rotations_index(registry.table)
            rotation = Rotation(
                self,
                c.ID_ROTATION,
                config=config,
                role=role.role,
                hook=hook.function,
                table=registry.table,
                depends_on=[device_policy.policy, *hook.invoke_permissions],
            )
        claims = ClaimCredentials(
            self,
            c.ID_CLAIMS,
            config=config,
            key=key,
            claim_policy_name=claim_policy.policy_name,
            claim_policy=claim_policy.policy,
        )
        if config.iot_logging:
            IotLogging(self, names.ID_IOT_LOGGING)
        Monitoring(
            self,
            c.ID_MONITORING,
            config=config,
            hook=hook.function,
            claims=claims.certificates,
            key=key,
            retirer=rotation.retirer.function if rotation else None,
        )
        add_outputs(
            self,
            template_name=template.template.ref,
            table_name=registry.table.table_name,
            claims=claims.certificates,
            rotation_template_name=rotation.template.ref if rotation else None,
        )
