from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from infra import constants as c
from infra.registry import SerialRegistry
from tests.infra.conftest import synth_construct

# Its module-scoped synth runs once: every test of this module on one xdist worker.
pytestmark = pytest.mark.xdist_group("infra-registry")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    out: Path = tmp_path_factory.mktemp("registry")
    tpl, _ = synth_construct(out, lambda stack: SerialRegistry(stack, c.ID_REGISTRY))
    return tpl


def test_table_is_on_demand_with_pitr_and_kms_and_key_pk_only(template: Template) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": c.TABLE_PARTITION_KEY, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": c.TABLE_PARTITION_KEY, "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "ProvisionedThroughput": Match.absent(),
        },
    )


def test_table_is_retained_when_the_stack_goes(template: Template) -> None:
    template.has_resource(
        "AWS::DynamoDB::Table", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    )
