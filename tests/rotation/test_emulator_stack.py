"""What the emulator makes of the rotation stack: the topic rule, the two schedules and the rotations index
read from the assembly, the rotation template in endpoint.json, and the hook and the retirer each with its
own environment in the one hook process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.assembly.reader import ClaimIdentity, load_stack
from tests.device_sim.conftest import Emulator
from tests.rotation.support import provisioned, rotate

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rotation-e2e")]


def test_the_assembly_reader_reads_the_rule_the_schedules_and_the_index(rotation_assembly: Path) -> None:
    model = load_stack(rotation_assembly, lambda spec: ClaimIdentity(f"{spec.name}-id"))
    retirer = next(f for f in model.functions if f.handler == "certificate_retirer.handler.lambda_handler")
    (rule,) = model.topic_rules
    assert rule.sql == "SELECT * FROM '$aws/events/presence/connected/+'" and not rule.disabled
    assert rule.actions == [{"Lambda": {"FunctionArn": retirer.arn}}]
    schedules = {s.expression: s for s in model.schedules}
    assert set(schedules) == {"rate(5 minutes)", "rate(1 day)"}
    assert [(t.arn, json.loads(t.input or "")) for t in schedules["rate(5 minutes)"].targets] == [
        (retirer.arn, {"action": "sweep"})
    ]
    (table,) = model.tables
    assert [index["IndexName"] for index in table.global_secondary_indexes] == ["rotations"]
    assert not any(kind in ("AWS::IoT::TopicRule", "AWS::Events::Rule") for _, kind in model.not_emulated)


def test_the_emulator_serves_the_rotation_stack(rotation_emulator: Emulator, tmp_path: Path) -> None:
    data = rotation_emulator.data
    assert (data["template_name"], data["rotation_template_name"]) == (
        "FleetProvisioningTemplate",
        "FleetProvisioningTemplateRotation",
    )
    described = rotation_emulator.client("dynamodb").describe_table(TableName=data["serial_table"])["Table"]
    assert [i["IndexName"] for i in described["GlobalSecondaryIndexes"]] == ["rotations"]
    result = rotate(rotation_emulator, provisioned(rotation_emulator, tmp_path))
    assert result.exit_code == 0, result.output
    log = rotation_emulator.log_path.read_text()
    assert "SELECT * FROM '$aws/events/presence/connected/+' -> 1 lambda(s)" in log
    assert "rate(5 minutes), run every 1 s" in log and "rate(1 day), run every 1 s" in log
    left_out = [line for line in log.splitlines() if "not emulated" in line]
    assert not [line for line in left_out if "AWS::Lambda::Function" in line and "RetirerFunction" in line]
    assert not [line for line in left_out if "TopicRule" in line or "AWS::Events::Rule" in line]
    assert " WARNING " not in log and " ERROR " not in log
    services = {}
    for line in log.splitlines():
        if line.startswith("{") and '"message"' in line:
            entry = json.loads(line)
            services.setdefault(entry["message"], set()).add(entry.get("service"))
    # One process, two functions, each with its own POWERTOOLS_SERVICE_NAME.
    assert services["provisioning decision"] == {"provisioning-hook"}
    assert services["certificate retirer"] == {"certificate-retirer"}
