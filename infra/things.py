"""The thing group every provisioned device joins, and the optional thing type."""

from __future__ import annotations

from aws_cdk import aws_iot as iot
from constructs import Construct

from infra.config import FleetConfig


class ThingGrouping(Construct):
    """Created by the stack so the template can name them; the template only adds things to them."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FleetConfig) -> None:
        super().__init__(scope, construct_id)
        self.thing_group = iot.CfnThingGroup(self, "Group", thing_group_name=config.thing_group_name)
        self.thing_type: iot.CfnThingType | None = None
        if config.thing_type_name:
            self.thing_type = iot.CfnThingType(self, "Type", thing_type_name=config.thing_type_name)
