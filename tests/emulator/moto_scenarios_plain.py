"""Plain update expressions (`SET name = :value`, `ADD name :value`, `REMOVE name`), which the emulator
applies without moto's validators once their shape passed them (`_install_plain_updates` in
emulator/registry/moto_dynamodb.py): each expression runs first as moto runs it, then again where the
fast path takes it, and again with everything moto refuses after its shape passed: a missing value, a
type or an empty string at a typed key attribute, an ADD to an attribute of another type, an empty set,
an item over moto's size limit in either action order, a name that now points at the key. Run by
moto_scenarios.py, compared with plain moto by test_moto_dynamodb.py.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.moto_scenarios import TABLE, call

MIXED = "SET #s = :s, a = :a ADD ids :ids, n :one REMOVE gone"
BIG = "x" * 210_000  # two of them do not fit in moto's 405,000-byte item


def seed(db: Any) -> None:
    items = {
        "plain#1": {"a": {"S": "x"}, "ids": {"SS": ["o"]}, "gone": {"S": "g"}, "n": {"N": "5"}},
        "plain#3": {"n": {"S": "five"}, "gone": {"S": "g"}},
        "plain#4": {"ids": {"NS": ["1"]}},
        "plain#5": {"ids": {"SS": ["o"]}, "n": {"N": "1.25"}},
        "plain#big": {"prev": {"S": BIG}},
        "plain#big2": {"prev": {"S": BIG}},
    }
    for key, attributes in items.items():
        db.put_item(TableName=TABLE, Item={"pk": {"S": key}, **attributes})


def update(key: str, expression: str, values: dict[str, Any], **request: Any) -> Any:
    return lambda c: call(
        c.db,
        "update_item",
        TableName=TABLE,
        Key={"pk": {"S": key}},
        UpdateExpression=expression,
        ExpressionAttributeValues=values,
        **request,
    )


def mixed(key: str, names: dict[str, str] | None = None, **values: Any) -> Any:
    """MIXED on `key`; a value given as None is left out."""
    given = {":s": {"S": "ON"}, ":a": {"S": "y"}, ":ids": {"SS": ["p"]}, ":one": {"N": "1"}} | values
    return update(
        key,
        MIXED,
        {k: v for k, v in given.items() if v is not None},
        ExpressionAttributeNames=names or {"#s": "status"},
        ReturnValues="ALL_NEW",
    )


def _mixed() -> list[tuple[str, Any]]:
    return [
        ("plain: SET, ADD, REMOVE, the first of its shape", mixed("plain#1")),
        (
            "plain: the same shape again, a set with duplicates and a member it has",
            mixed("plain#1", **{":s": {"S": "OFF"}, ":ids": {"SS": ["q", "q", "o"]}, ":one": {"N": "2"}}),
        ),
        ("plain: the same shape on a new item", mixed("plain#2")),
        ("plain: ADD a number to a string", mixed("plain#3")),
        ("plain: ADD a string set to a number set", mixed("plain#4")),
        ("plain: ADD a decimal number", mixed("plain#5", **{":one": {"N": "-0.75"}})),
        ("plain: ADD an empty set", mixed("plain#5", **{":ids": {"SS": []}})),
        ("plain: ADD a string", mixed("plain#5", **{":one": {"S": "1"}})),
        ("plain: a value missing", mixed("plain#5", **{":a": None})),
        ("plain: the name now the key", mixed("plain#5", names={"#s": "pk"})),
        ("plain: the name undefined", mixed("plain#5", names={"#t": "status"})),
        ("plain: ADD a number set", mixed("plain#6", **{":ids": {"NS": ["1", "2"]}})),
        ("plain: the same shape after the failures", mixed("plain#5")),
    ]


def _typed_keys() -> list[tuple[str, Any]]:
    """rotation_pending (S) and rotation_started_at (N) are the rotations index's keys."""
    expression = "SET rotation_pending = :p, rotation_started_at = :t, note = :m"
    good = {":p": {"S": "1"}, ":t": {"N": "10"}, ":m": {"M": {"k": {"L": [{"S": "v"}, {"N": "1"}]}}}}
    by_name = "SET #p = :p, rotation_started_at = :t, note = :m"
    names = {"ExpressionAttributeNames": {"#p": "rotation_pending"}}
    return [
        ("plain: index keys, the first of its shape", update("plain#7", expression, good)),
        ("plain: index keys again", update("plain#8", expression, good, ReturnValues="UPDATED_OLD")),
        (
            "plain: index keys, a string for the number",
            update("plain#8", expression, {**good, ":t": {"S": "x"}}),
        ),
        ("plain: index keys, an empty string", update("plain#8", expression, {**good, ":p": {"S": ""}})),
        ("plain: index keys, by name", update("plain#9", by_name, good, **names)),
        (
            "plain: index keys, by name, again",
            update("plain#9", by_name, {**good, ":t": {"N": "11"}}, **names),
        ),
        # moto's type checks read the first path token, which for a name is the placeholder: not refused.
        (
            "plain: index keys, by name, a number",
            update("plain#9", by_name, {**good, ":p": {"N": "2"}}, **names),
        ),
        ("plain: index keys, by name, empty", update("plain#9", by_name, {**good, ":p": {"S": ""}}, **names)),
        (
            "plain: nested SET after a plain map",
            update("plain#8", "SET note.k[0] = :v", {":v": {"S": "w"}}, ReturnValues="ALL_NEW"),
        ),
        (
            "plain: the map after the nested SET",
            update("plain#8", expression, {**good, ":t": {"N": "12"}}, ReturnValues="UPDATED_OLD"),
        ),
    ]


def _sizes() -> list[tuple[str, Any]]:
    """moto sizes the item at each SET, in its execution order: the REMOVE before or after it decides."""
    set_first = "SET big = :big REMOVE prev"
    remove_first = "REMOVE prev SET big = :big"
    return [
        ("plain: SET then REMOVE, small", update("plain#10", set_first, {":big": {"S": "s"}})),
        ("plain: SET then REMOVE, too large", update("plain#big", set_first, {":big": {"S": BIG}})),
        ("plain: REMOVE then SET, small", update("plain#11", remove_first, {":big": {"S": "s"}})),
        ("plain: REMOVE then SET, fits", update("plain#big2", remove_first, {":big": {"S": BIG}})),
        ("plain: ADD to a large item", update("plain#big", "ADD tags :t", {":t": {"SS": ["a", "b"]}})),
        ("plain: ADD to a large item, again", update("plain#big", "ADD tags :t", {":t": {"SS": ["c"]}})),
    ]


def _transactions() -> list[tuple[str, Any]]:
    """A plain update in a transaction, its condition failing on the second item: both rolled back."""
    first = {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": "plain#12"}},
            "UpdateExpression": "SET a = :a ADD ids :ids",
            "ExpressionAttributeValues": {":a": {"S": "t"}, ":ids": {"SS": ["t"]}},
        }
    }

    def second(condition_value: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": TABLE,
                "Key": {"pk": {"S": "plain#1"}},
                "UpdateExpression": "SET a = :a ADD ids :ids",
                "ConditionExpression": "#s = :want",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {
                    ":a": {"S": "u"},
                    ":ids": {"SS": ["u"]},
                    ":want": {"S": condition_value},
                },
            }
        }

    return [
        ("plain: transaction, written", lambda c: call(c.db, "transact_write_items", TransactItems=[first])),
        (
            "plain: transaction, rolled back",
            lambda c: call(c.db, "transact_write_items", TransactItems=[first, second("NOT IT")]),
        ),
        (
            "plain: transaction, both written",
            lambda c: call(c.db, "transact_write_items", TransactItems=[first, second("OFF")]),
        ),
    ]


SCENARIOS: list[tuple[str, Any]] = [*_mixed(), *_typed_keys(), *_sizes(), *_transactions()]
