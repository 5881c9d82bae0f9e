"""The emulator's patches to moto's DynamoDB (emulator/registry/moto_dynamodb.py) give exactly moto's
results and errors, for every expression form the hook and fleetctl send and for expressions each check
refuses; a transaction no longer copies whole tables, and a validator walk no longer rebuilds its map."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def scenarios(mode: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.emulator.moto_scenarios", mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_moto_is_the_pinned_version() -> None:
    assert version("moto") == "5.2.5", "the patches rely on moto 5.2.5's internals: re-check them"


def test_patched_moto_answers_as_moto_does() -> None:
    plain, patched = scenarios("plain"), scenarios("patched")
    assert [s["scenario"] for s in patched] == [s["scenario"] for s in plain]
    for ours, theirs in zip(patched, plain, strict=True):
        assert ours == theirs, ours["scenario"]
    by_name = {s["scenario"]: s for s in patched}
    # The scenarios reach what they are about (so the comparison cannot pass vacuously).
    assert "ok" in by_name["reserve"]["result"]
    taken = by_name["reserve again: serial taken"]["result"]
    assert taken["error"] == "TransactionCanceledException"
    assert [r["Code"] for r in taken["reasons"]] == ["ConditionalCheckFailed", "None"]
    held = by_name["second serial, same certificate"]["result"]
    assert [r["Code"] for r in held["reasons"]] == ["None", "ConditionalCheckFailed"]
    rolled_back = by_name["put then a failing condition rolls the put back"]
    assert rolled_back["result"]["error"] == "TransactionCanceledException"
    assert not any(item["pk"]["S"] == "cert#c10" for item in rolled_back["table"])
    assert by_name["two operations on one item"]["result"]["error"] == "ValidationException"
    assert (
        by_name["update_item with an invalid expression, twice"]["result"]["error"] == "ValidationException"
    )


def test_a_transaction_copies_the_items_it_names_not_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    import boto3
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    from emulator.registry import moto_dynamodb

    moto_dynamodb.install()
    copied_tables: list[Any] = []
    real_deepcopy = copy.deepcopy

    def watching(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            copied_tables.append(value)
        return real_deepcopy(value, memo)

    monkeypatch.setattr(copy, "deepcopy", watching)
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        for n in range(200):
            db.put_item(TableName="t", Item={"pk": {"S": f"k{n}"}, "v": {"N": str(n)}})
        update = {
            "TableName": "t",
            "Key": {"pk": {"S": "k1"}},
            "UpdateExpression": "SET v = :v",
            "ConditionExpression": "v = :old",
            "ExpressionAttributeValues": {":v": {"N": "-1"}, ":old": {"N": "1"}},
        }
        db.transact_write_items(TransactItems=[{"Update": update}])
        with pytest.raises(db.exceptions.TransactionCanceledException):
            db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            **update,
                            "Key": {"pk": {"S": "k2"}},
                            "ExpressionAttributeValues": {":v": {"N": "-2"}, ":old": {"N": "2"}},
                        }
                    },
                    {"Update": update},  # k1 is -1 now: fails, and k2 must be rolled back
                ]
            )
        assert db.get_item(TableName="t", Key={"pk": {"S": "k2"}})["Item"]["v"] == {"N": "2"}
        assert db.get_item(TableName="t", Key={"pk": {"S": "k1"}})["Item"]["v"] == {"N": "-1"}
    assert copied_tables == []


def test_a_validator_walk_builds_its_map_once_and_shape_checks_run_once_per_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto import mock_aws
    from moto.dynamodb.parsing import validators

    from emulator.registry import moto_dynamodb

    moto_dynamodb.install()
    maps: list[str] = []
    shape_checks: list[str] = []
    for cls in (validators.ExecuteOperations, validators.TypeMismatchValidator):
        real = cls._processing_map

        def counted(self, real=real, name=cls.__name__):  # type: ignore[no-untyped-def]
            maps.append(name)
            return real(self)

        monkeypatch.setattr(cls, "_processing_map", counted)
    real_counts = validators.ActionCountValidator.verify_action_counts

    def counting(self, node):  # type: ignore[no-untyped-def]
        shape_checks.append("count")
        return real_counts(self, node)

    monkeypatch.setattr(validators.ActionCountValidator, "verify_action_counts", counting)
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        expression = "SET a = :a, b = :b, c = :c, d = :d ADD e :e"
        values = {":a": {"S": "1"}, ":b": {"S": "2"}, ":c": {"S": "3"}, ":d": {"S": "4"}, ":e": {"SS": ["x"]}}
        checks_after: list[int] = []
        for n in range(3):
            db.update_item(
                TableName="t",
                Key={"pk": {"S": f"k{n}"}},
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
            )
            checks_after.append(len(shape_checks))
        item = db.get_item(TableName="t", Key={"pk": {"S": "k2"}})["Item"]
    assert item["d"] == {"S": "4"} and item["e"] == {"SS": ["x"]}
    # moto rebuilt each map for every node it visited (dozens per walk): now once per walk. (moto validates a
    # new item's expression twice, before creating the item and when applying it: once here, as no path of
    # this expression starts at the key.)
    assert sorted(maps) == ["ExecuteOperations"] * 3 + ["TypeMismatchValidator"] * 3
    # The shape checks ran while the first request was validated, and never again for the same shape.
    assert checks_after[0] > 0 and checks_after[2] == checks_after[0]
