"""The emulator's patches to moto (emulator/registry/moto_dynamodb.py) give exactly moto's results and
errors: the same requests, sent to patched and to unpatched moto (each in a fresh process), get the same
answers, byte for byte, and leave the same table, under moto's mock and in the hook process's setting
(with botocore_local's unsigned calls). The requests are the hook's and the retirer's own (every
expression form they send, made by their code) and the paths each patch changes. Then what each patch
saves: a transaction copies the items it names, not the table; a validator walk builds its map once; a
new item's expression is validated once; a plain GetItem reply skips the serializer. And the patches
stay out on another moto version, or when turned off."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_scenarios(transport: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, patched), each from its own process, run side by side."""
    # moto answers a projected set in the order of a Python set: one hash seed for both processes.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("EMULATOR_FAST_PATHS", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.emulator.moto_scenarios", transport, mode],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("plain", "patched")
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        outputs.append(json.loads(out))
    return outputs[0], outputs[1]


@pytest.mark.parametrize("transport", ["mock", "hook"])
def test_patched_moto_answers_as_moto_does(transport: str) -> None:
    plain, patched = run_scenarios(transport)
    assert plain["installed"] == {"moto": False, "botocore": False}
    assert patched["installed"] == {"moto": True, "botocore": transport == "hook"}
    names = [s["scenario"] for s in patched["scenarios"]]
    assert names == [s["scenario"] for s in plain["scenarios"]]
    for ours, theirs in zip(patched["scenarios"], plain["scenarios"], strict=True):
        assert ours == theirs, ours["scenario"]

    # The scenarios reach what they are about (so the comparison cannot pass vacuously).
    by_name = {s["scenario"]: s for s in patched["scenarios"]}

    def result(name: str) -> Any:
        return by_name[name]["result"]

    def table(name: str) -> dict[str, Any]:
        return {item["pk"]["S"]: item for item in by_name[name]["table"]}

    assert result("hook: get_serial, an item")["public_key_sha256"] == "c" * 64
    assert result("hook: get_serial, no item") is None
    assert result("hook: get_batch (projection)")["require_device_key"] is True
    assert result("hook: reserve S1 for c1 (new certificate item)") == {"ok": "WRITTEN"}
    assert result("hook: reserve S1 again, stale read: serial changed") == {"ok": "SERIAL_CHANGED"}
    assert result("hook: reserve S2 for c1: the certificate holds S1") == {"ok": "CERTIFICATE_HOLDS_SERIAL"}
    assert result("hook: reserve a serial with no item") == {"ok": "SERIAL_CHANGED"}
    moved = "hook: same key moves S1 to c3, retires c1"
    assert result(moved) == {"ok": "WRITTEN"}
    assert table(moved)["cert#c1"]["retired_reason"] == {"S": "superseded_same_key"}
    assert result("hook: rotation of S1 to c4, asked by c3") == {"ok": "WRITTEN"}
    assert result("hook: rotation read before the serial moved on") == {"ok": "SERIAL_CHANGED"}
    assert len(result("retirer: pending rotations (the index)")) == 1
    assert result("retirer: finish S1's rotation, keep the new certificate")["finished"] is True
    assert result("retirer: finish again: no rotation pending") == {"pending": None}
    taken = result("transact: E1 taken")
    assert taken["error"] == "TransactionCanceledException"
    assert [r["Code"] for r in taken["reasons"]] == ["ConditionalCheckFailed", "None"]
    rolled_back = "transact: put, then a failing condition rolls it back"
    assert result(rolled_back)["error"] == "TransactionCanceledException"
    assert "cert#t10" not in table(rolled_back)
    assert result("transact: two operations on one item")["error"] == "ValidationException"
    # moto refuses a path at the key anywhere in an update expression, also on a new item.
    assert result("new item: if_not_exists on the key")["error"] == "ValidationException"
    assert result("new item: if_not_exists on the key, by name")["error"] == "ValidationException"
    assert "ok" in result("new item: SET and ADD")
    assert table("new item: SET and ADD")["new#1"] == {"pk": {"S": "new#1"}, "a": {"S": "x"}, "c": {"N": "1"}}
    assert result("new item: if_not_exists on another attribute")["ok"]["Attributes"]["a"] == {"S": "x"}
    assert result("new item: undefined value")["error"] == "ValidationException"
    assert "ok" in result("update: item of exactly 405000 bytes")
    assert result("update: item of 405001 bytes")["error"] == "ValidationException"
    assert "ok" in result("update: item of 404999 bytes, in UTF-8")
    assert result("update: item of 405001 bytes, in UTF-8")["error"] == "ValidationException"
    assert result("update: item too large (ASCII)")["error"] == "ValidationException"
    assert result("update: item too large (UTF-8)")["error"] == "ValidationException"
    assert "ok" in result("update: item just under the limit")
    assert result("update: a syntax error, twice (2)")["error"] == "ValidationException"
    assert result("update_item with setting the key attribute, 2")["error"] == "ValidationException"
    assert "ok" in result("update_item with names, valid, 2")
    assert result("update_item with the same text, the name now the key, 2")["error"] == "ValidationException"
    # Plain update expressions (moto_scenarios_plain.py): the fast path was handed the hook's own
    # reservations and the cases below, and answered as moto does (compared above); a missing value or a
    # type moto refuses at a typed key never reaches it (moto's validators answer).
    fast = patched["plain_updates"]
    assert plain["plain_updates"] == {}
    for name in (
        "hook: reserve S1 for c1 (new certificate item)",
        "hook: rotation of S1 to c4, asked by c3",
        "plain: the same shape again, a set with duplicates and a member it has",
        "plain: the same shape on a new item",
        "plain: ADD a number to a string",
        "plain: SET then REMOVE, too large",
        "plain: REMOVE then SET, fits",
        "plain: transaction, rolled back",
    ):
        assert fast.get(name, 0) >= 1, name
    again = result("plain: the same shape again, a set with duplicates and a member it has")["ok"][
        "Attributes"
    ]
    assert again["ids"] == {"SS": ["o", "p", "q"]} and again["n"] == {"N": "8"}
    assert result("plain: ADD a decimal number")["ok"]["Attributes"]["n"] == {"N": "0.50"}
    assert "incorrect data type" in result("plain: ADD a number to a string")["message"]
    assert "not defined" in result("plain: a value missing")["message"]
    assert "Type mismatch" in result("plain: index keys, a string for the number")["message"]
    assert "exceeded the maximum allowed size" in result("plain: SET then REMOVE, too large")["message"]
    assert "ok" in result("plain: REMOVE then SET, fits")
    assert "prev" not in table("plain: REMOVE then SET, fits")["plain#big2"]
    assert result("plain: transaction, rolled back")["error"] == "TransactionCanceledException"
    assert "ok" in result("plain: transaction, both written")
    assert result("get: every attribute type (binary)")["ok"]["Item"]["b"] == {"B": "b'\\x00\\x01binary'"}
    assert result("get: plain attribute types")["ok"]["Item"]["s_unicode"] == {"S": "héllo ✓ 漢字"}


def test_moto_is_the_pinned_version() -> None:
    from emulator.registry import moto_dynamodb

    assert version("moto") == moto_dynamodb.MOTO_VERSION, (
        "the patches rely on moto's internals: re-check them"
    )
    pinned = re.search(r'"moto\[[^\]]*\]==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert pinned is not None and pinned.group(1) == moto_dynamodb.MOTO_VERSION


def _in_fresh_process(code: str, **env: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


PATCHED_PARTS = """
import json
from moto.dynamodb import models
from moto.dynamodb.parsing import ast_nodes
from moto.dynamodb.responses import DynamoHandler
print(json.dumps([installed, {
    "transactions": models.DynamoDBBackend.transact_write_items.__module__,
    "walk": ast_nodes.DepthFirstTraverser.traverse_node_recursively.__module__,
    "replies": DynamoHandler.serialized.__module__,
}]))
"""


def test_another_moto_version_is_not_patched() -> None:
    installed, parts = _in_fresh_process(
        "from emulator.registry import moto_dynamodb\n"
        "moto_dynamodb.version = lambda name: '9.9.9'\n"
        "installed = moto_dynamodb.install(enabled=True)\n" + PATCHED_PARTS
    )
    assert installed is False
    assert set(parts.values()) <= {
        "moto.dynamodb.models",
        "moto.dynamodb.parsing.ast_nodes",
        "moto.core.responses",
    }


def test_fast_paths_off_keeps_only_the_transactions_item_saving() -> None:
    installed, parts = _in_fresh_process(
        "from emulator.registry import moto_dynamodb\ninstalled = moto_dynamodb.install()\n" + PATCHED_PARTS,
        EMULATOR_FAST_PATHS="0",
    )
    assert installed is False
    assert parts == {
        "transactions": "emulator.registry.moto_dynamodb",
        "walk": "moto.dynamodb.parsing.ast_nodes",
        "replies": "moto.core.responses",
    }
    installed, parts = _in_fresh_process(
        "from emulator.registry import moto_dynamodb\ninstalled = moto_dynamodb.install()\n" + PATCHED_PARTS
    )
    assert installed is True
    assert set(parts.values()) == {"emulator.registry.moto_dynamodb"}


@pytest.fixture
def db() -> Any:
    import boto3
    from moto import mock_aws

    from emulator.registry import moto_dynamodb

    moto_dynamodb.install(enabled=True)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        yield client


def test_a_transaction_copies_the_items_it_names_not_the_table(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    from moto.dynamodb.models.table import Table

    copied_tables: list[Any] = []
    real_deepcopy = copy.deepcopy

    def watching(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            copied_tables.append(value)
        return real_deepcopy(value, memo)

    monkeypatch.setattr(copy, "deepcopy", watching)
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
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.parsing import validators

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
    # Not plain (if_not_exists): moto's validators walk it every time (a plain one skips them, below).
    expression = "SET a = :a, b = :b, c = if_not_exists(c, :c), d = :d ADD e :e"
    values = {":a": {"S": "1"}, ":b": {"S": "2"}, ":c": {"S": "3"}, ":d": {"S": "4"}, ":e": {"SS": ["x"]}}
    checks_after: list[int] = []
    for n in range(3):
        db.put_item(TableName="t", Item={"pk": {"S": f"k{n}"}})
        db.update_item(
            TableName="t",
            Key={"pk": {"S": f"k{n}"}},
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )
        checks_after.append(len(shape_checks))
    item = db.get_item(TableName="t", Key={"pk": {"S": "k2"}})["Item"]
    assert item["d"] == {"S": "4"} and item["e"] == {"SS": ["x"]}
    # moto rebuilt each map for every node it visited (dozens per walk): now once per walk.
    assert sorted(maps) == ["ExecuteOperations"] * 3 + ["TypeMismatchValidator"] * 3
    # The shape checks ran while the first request was validated, and never again for the same shape.
    assert checks_after[0] > 0 and checks_after[2] == checks_after[0]


def test_a_new_items_expression_is_validated_once(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.parsing import validators

    validations: list[int] = []
    real = validators.UpdateExpressionValidator.get_ast_processors

    def counted(self):  # type: ignore[no-untyped-def]
        validations.append(1)
        return real(self)

    monkeypatch.setattr(validators.UpdateExpressionValidator, "get_ast_processors", counted)

    def validations_of(key: str, expression: str, **request: Any) -> int:
        validations.clear()
        db.update_item(TableName="t", Key={"pk": {"S": key}}, UpdateExpression=expression, **request)
        return len(validations)

    values = {":v": {"S": "x"}}
    assert validations_of("n1", "SET a = :v, b = if_not_exists(b, :v)", ExpressionAttributeValues=values) == 1
    assert db.get_item(TableName="t", Key={"pk": {"S": "n1"}})["Item"] == {
        "pk": {"S": "n1"},
        "a": {"S": "x"},
        "b": {"S": "x"},
    }
    assert validations_of("n1", "SET a = :v", ExpressionAttributeValues=values) == 1  # exists: once, as moto
    # A path at the key: moto refuses it in the first validation, before it creates the item.
    with pytest.raises(db.exceptions.ClientError, match="part of the key"):
        validations_of("n2", "SET a = if_not_exists(pk, :v)", ExpressionAttributeValues=values)
    assert validations == [1]
    assert "Item" not in db.get_item(TableName="t", Key={"pk": {"S": "n2"}})


def test_a_plain_update_skips_the_validators_once_its_shape_passed(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.parsing import executors, validators

    validations: list[int] = []
    walks: list[int] = []
    real_processors = validators.UpdateExpressionValidator.get_ast_processors
    real_execute = executors.SetExecutor.execute

    def counted(self):  # type: ignore[no-untyped-def]
        validations.append(1)
        return real_processors(self)

    def executed(self, item):  # type: ignore[no-untyped-def]
        walks.append(1)
        return real_execute(self, item)

    monkeypatch.setattr(validators.UpdateExpressionValidator, "get_ast_processors", counted)
    monkeypatch.setattr(executors.SetExecutor, "execute", executed)

    def update(key: str, **values: Any) -> tuple[int, int]:
        validations.clear()
        walks.clear()
        db.update_item(
            TableName="t",
            Key={"pk": {"S": key}},
            UpdateExpression="SET #s = :s, n = :n ADD ids :id REMOVE gone",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":s": {"S": values["s"]},
                ":n": {"N": values["n"]},
                ":id": {"SS": [key]},
            },
        )
        return len(validations), len(walks)

    db.put_item(TableName="t", Item={"pk": {"S": "p1"}, "gone": {"S": "x"}, "ids": {"SS": ["old"]}})
    assert update("p1", s="A", n="1") == (1, 2)  # the first of its shape: moto's validators and executors
    assert update("p1", s="B", n="2") == (0, 0)  # passed once: applied as moto's executors apply it
    assert update("p2", s="C", n="3") == (0, 0)  # a new item: also without a validation
    items = {key: db.get_item(TableName="t", Key={"pk": {"S": key}})["Item"] for key in ("p1", "p2")}
    assert items["p1"] == {
        "pk": {"S": "p1"},
        "status": {"S": "B"},
        "n": {"N": "2"},
        "ids": {"SS": ["old", "p1"]},
    }
    assert items["p2"] == {"pk": {"S": "p2"}, "status": {"S": "C"}, "n": {"N": "3"}, "ids": {"SS": ["p2"]}}
    # What moto's executor refuses (ADD of a set to a string) goes back to moto's own code, which answers
    # and leaves the item as moto leaves it: the SETs before the failing ADD applied, the REMOVE after it
    # not (DynamoDB would apply none; test_patched_moto_answers_as_moto_does compares with plain moto).
    db.put_item(TableName="t", Item={"pk": {"S": "p3"}, "ids": {"S": "not a set"}, "gone": {"S": "y"}})
    with pytest.raises(
        db.exceptions.ClientError, match="An operand in the update expression has an incorrect"
    ):
        update("p3", s="D", n="4")
    assert validations == [1]
    assert db.get_item(TableName="t", Key={"pk": {"S": "p3"}})["Item"] == {
        "pk": {"S": "p3"},
        "ids": {"S": "not a set"},
        "gone": {"S": "y"},
        "status": {"S": "D"},
        "n": {"N": "4"},
    }


def test_a_plain_get_item_reply_skips_the_serializer(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.serialize import JSONSerializer

    serialized: list[str] = []
    real = JSONSerializer.serialize

    def counted(self, result):  # type: ignore[no-untyped-def]
        serialized.append(self.operation_name)
        return real(self, result)

    monkeypatch.setattr(JSONSerializer, "serialize", counted)
    db.put_item(TableName="t", Item={"pk": {"S": "plain"}, "m": {"M": {"l": {"L": [{"NULL": True}]}}}})
    db.put_item(TableName="t", Item={"pk": {"S": "binary"}, "b": {"B": b"\x00"}})
    serialized.clear()
    assert db.get_item(TableName="t", Key={"pk": {"S": "plain"}})["Item"]["m"] == {
        "M": {"l": {"L": [{"NULL": True}]}}
    }
    assert "Item" not in db.get_item(TableName="t", Key={"pk": {"S": "none"}})
    assert serialized == []
    assert db.get_item(TableName="t", Key={"pk": {"S": "binary"}})["Item"]["b"] == {"B": b"\x00"}
    assert serialized == ["GetItem"]  # binary: moto's serializer base64-encodes it


def test_moto_server_finds_backends_from_the_module_list_it_listed_once() -> None:
    """The server's backend lookup gets the same names as moto's own listing, without listing the package
    directory again on every request (the rotation flow's IoT calls paid it under the registry lock)."""
    same, listed_again = _in_fresh_process(
        "import json, os\n"
        "from moto import backends\n"
        "before = list(backends.list_of_moto_modules())\n"
        "from emulator.registry import moto_dynamodb\n"
        "assert moto_dynamodb.install(enabled=True)\n"
        "calls = []\n"
        "real = os.listdir\n"
        "import moto\n"
        "home = os.path.dirname(moto.__file__)\n"
        "os.listdir = lambda p='.': (calls.append(p) if p == home else None) or real(p)\n"
        "from moto.moto_server.werkzeug_app import DomainDispatcherApplication\n"
        "app = DomainDispatcherApplication(lambda service: None)\n"
        "found = [app.get_backend_for_host(h) for h in ('iot', 'dynamodb', 'moto_api', 'nope')]\n"
        "print(json.dumps([list(backends.list_of_moto_modules()) == before and found[:3] == "
        "['iot', 'dynamodb', 'moto_api'], len(calls)]))\n"
    )
    assert same is True and listed_again == 0
