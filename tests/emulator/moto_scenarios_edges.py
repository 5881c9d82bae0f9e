"""Raw DynamoDB requests beside the hook's own (moto_scenarios_hook.py), for the paths the patches change:
transactions that fail at each position and roll back, expressions that each validator refuses, the
shape checks remembered per expression, an update on an item that does not exist yet (with a path at its
key or not), conditions parsed once per request, every attribute type in a GetItem reply, ReturnValues,
the item size limit, errors. Run by moto_scenarios.py.

One file over 400 lines: a list of scenarios, each a few lines, run by test_moto_dynamodb.py.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.moto_scenarios import TABLE, call

EVERY_TYPE = {
    "pk": {"S": "item#types"},
    "s": {"S": "text"},
    "s_unicode": {"S": "héllo ✓ 漢字"},
    "s_empty": {"S": ""},
    "n": {"N": "-12.50"},
    "b": {"B": b"\x00\x01binary"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"y"]},
    "m": {"M": {"inner": {"S": "v"}, "deep": {"M": {"n": {"N": "1"}}}, "empty": {"M": {}}}},
    "l": {"L": [{"S": "a"}, {"N": "1"}, {"BOOL": False}, {"NULL": True}, {"L": []}]},
    "null": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
}
PLAIN = {k: v for k, v in EVERY_TYPE.items() if k not in ("b", "bs")} | {"pk": {"S": "item#plain"}}


def seed(db: Any) -> None:
    db.put_item(TableName=TABLE, Item=EVERY_TYPE)
    db.put_item(TableName=TABLE, Item=PLAIN)
    for n in range(1, 5):  # "pk" + "size#n": 8 bytes; moto refuses an item over 405,000
        db.put_item(TableName=TABLE, Item={"pk": {"S": f"size#{n}"}})
    for serial in ("E1", "E2", "E3"):
        db.put_item(
            TableName=TABLE,
            Item={"pk": {"S": f"serial#{serial}"}, "status": {"S": "AVAILABLE"}, "n": {"N": "5"}},
        )


def _serial_update(serial: str, cert: str, condition: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": f"serial#{serial}"}},
            "UpdateExpression": "SET #status = :reserved, certificate_id = :cert, reserved_at = :at "
            "ADD certificate_ids :certs",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":reserved": {"S": "RESERVED"},
                ":cert": {"S": cert},
                ":at": {"N": "1000"},
                ":certs": {"SS": [cert]},
                **values,
            },
        }
    }


def _cert_update(cert: str, serial: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": f"cert#{cert}"}},
            "UpdateExpression": "SET certificate_id = :cert, serial = :serial, issued_at = :at",
            "ConditionExpression": "attribute_not_exists(pk) OR serial = :serial",
            "ExpressionAttributeValues": {":cert": {"S": cert}, ":serial": {"S": serial}, ":at": {"N": "1"}},
        }
    }


AVAILABLE = ("attribute_exists(pk) AND #status = :available", {":available": {"S": "AVAILABLE"}})


def transact(*items: dict[str, Any]) -> Any:
    return lambda c: call(c.db, "transact_write_items", TransactItems=list(items))


def update(key: str, expression: str, **request: Any) -> Any:
    return lambda c: call(
        c.db, "update_item", TableName=TABLE, Key={"pk": {"S": key}}, UpdateExpression=expression, **request
    )


def get(key: str, **request: Any) -> Any:
    return lambda c: call(c.db, "get_item", TableName=TABLE, Key={"pk": {"S": key}}, **request)


def _shape_checks() -> list[tuple[str, Any]]:
    """The shape checks (one clause of each kind, no overlapping paths, no key attribute) are remembered for
    an expression that passed them: a failing one must fail every time, a passing one with other names
    must still be checked."""
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("setting the key attribute", "SET pk = :v", {"ExpressionAttributeValues": {":v": {"S": "x"}}}),
        ("overlapping paths", "SET a = :v, a.b = :v", {"ExpressionAttributeValues": {":v": {"S": "x"}}}),
        ("two SET clauses", "SET a = :v SET b = :v", {"ExpressionAttributeValues": {":v": {"S": "x"}}}),
        (
            "names, valid",
            "SET #n = :v",
            {"ExpressionAttributeNames": {"#n": "note"}, "ExpressionAttributeValues": {":v": {"S": "x"}}},
        ),
        (
            "the same text, the name now the key",
            "SET #n = :v",
            {"ExpressionAttributeNames": {"#n": "pk"}, "ExpressionAttributeValues": {":v": {"S": "x"}}},
        ),
        (
            "the same text, a value of another type",
            "SET #n = :v",
            {"ExpressionAttributeNames": {"#n": "note"}, "ExpressionAttributeValues": {":v": {"N": "7"}}},
        ),
    ]
    return [
        (f"update_item with {what}, {n}", update("serial#E3", expression, **request))
        for what, expression, request in cases
        for n in (1, 2)
    ]


VALUES = {
    ":v": {"S": "x"},
    ":one": {"N": "1"},
    ":l": {"L": [{"S": "x"}]},
    ":ss": {"SS": ["z"]},
    ":p": {"S": "AVA"},
    ":t": {"S": "N"},
}


def values(*names: str) -> dict[str, Any]:
    """Exactly the values an expression uses (moto refuses unused ones before it looks further)."""
    return {"ExpressionAttributeValues": {name: VALUES[name] for name in names}}


INNER = {"ExpressionAttributeNames": {"#i": "inner"}}  # `inner` is a reserved word


def _new_items() -> list[tuple[str, Any]]:
    """UpdateItem on a key with no item: moto validates the expression before creating the item, then
    again against it (once here, when no path starts at the key, which moto refuses anyway)."""
    return [
        ("new item: SET and ADD", update("new#1", "SET a = :v ADD c :one", **values(":v", ":one"))),
        (
            "new item: if_not_exists on the key",
            update("new#2", "SET a = if_not_exists(pk, :v)", **values(":v"), ReturnValues="ALL_NEW"),
        ),
        (
            "new item: if_not_exists on the key, by name",
            update(
                "new#3",
                "SET a = if_not_exists(#k, :v)",
                ExpressionAttributeNames={"#k": "pk"},
                **values(":v"),
                ReturnValues="ALL_NEW",
            ),
        ),
        ("new item: a path under the key", update("new#4", "SET a = pk.x", ReturnValues="ALL_NEW")),
        (
            "new item: if_not_exists on another attribute",
            update("new#5", "SET a = if_not_exists(a, :v), b = :v", **values(":v"), ReturnValues="ALL_NEW"),
        ),
        (
            "new item: arithmetic on a missing attribute",
            update("new#6", "SET a = a + :one", **values(":one")),
        ),
        (
            "new item: list_append on a missing attribute",
            update("new#7", "SET l = list_append(l, :l)", **values(":l")),
        ),
        ("new item: undefined value", update("new#8", "SET a = :nope")),
        (
            "new item: a condition on it",
            update(
                "new#9",
                "SET a = :v",
                ConditionExpression="attribute_exists(pk)",
                **values(":v"),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        ),
        ("new item: REMOVE only", update("new#10", "REMOVE a, b", ReturnValues="ALL_NEW")),
        (
            "new item: nested path",
            update("new#11", "SET m.a = :v", **values(":v"), ReturnValues="ALL_NEW"),
        ),
    ]


def _expressions() -> list[tuple[str, Any]]:
    return [
        (
            "update: nested map and list paths",
            update(
                "item#plain",
                "SET m.#i = :v, l[0] = :v, m.deep.n = m.deep.n + :one",
                **INNER,
                **values(":v", ":one"),
                ReturnValues="UPDATED_NEW",
            ),
        ),
        (
            "update: arithmetic and list_append",
            update(
                "serial#E1",
                "SET n = n - :one, l = list_append(if_not_exists(l, :l), :l)",
                **values(":one", ":l"),
                ReturnValues="ALL_NEW",
            ),
        ),
        (
            "update: ADD and DELETE on one set",
            update("item#plain", "ADD ss :ss DELETE ss :ss", **values(":ss"), ReturnValues="UPDATED_OLD"),
        ),
        (
            "update: ADD to a set and a number",
            update("item#plain", "ADD ss :ss, n :one", **values(":ss", ":one"), ReturnValues="ALL_OLD"),
        ),
        (
            "update: DELETE from a set",
            update("item#plain", "DELETE ss :ss", **values(":ss"), ReturnValues="UPDATED_NEW"),
        ),
        (
            "update: REMOVE list elements and a map key",
            update("item#plain", "REMOVE l[1], l[0], m.#i", **INNER, ReturnValues="ALL_NEW"),
        ),
        ("update: reserved word as a name", update("serial#E1", "SET status = :v", **values(":v"))),
        ("update: undefined name", update("serial#E1", "SET #nope = :v", **values(":v"))),
        (
            "update: unused name",
            update("serial#E1", "SET a = :v", ExpressionAttributeNames={"#unused": "x"}, **values(":v")),
        ),
        ("update: unused value", update("serial#E1", "SET a = :v", **values(":v", ":one"))),
        ("update: a path into a string", update("item#plain", "SET s.x = :v", **values(":v"))),
        ("update: a missing list index", update("item#plain", "SET l[7] = :v", **values(":v"))),
        ("update: + on a string", update("item#plain", "SET n = s + :one", **values(":one"))),
        (
            "update: list_append on a number",
            update("item#plain", "SET n = list_append(n, :l)", **values(":l")),
        ),
        (
            "update: ADD an empty set",
            update("item#plain", "ADD ss :e", ExpressionAttributeValues={":e": {"SS": []}}),
        ),
        ("update: a syntax error, twice (1)", update("serial#E1", "SET a = = :v", **values(":v"))),
        ("update: a syntax error, twice (2)", update("serial#E1", "SET a = = :v", **values(":v"))),
        (
            "update: condition with an undefined value",
            update("serial#E1", "SET a = :v", ConditionExpression="n = :nope", **values(":v")),
        ),
        (
            "update: condition syntax error",
            update("serial#E1", "SET a = :v", ConditionExpression="n = = :v", **values(":v")),
        ),
        (
            "update: condition on a reserved word",
            update("serial#E1", "SET a = :v", ConditionExpression="status = :v", **values(":v")),
        ),
        (
            "update: condition functions",
            update(
                "serial#E1",
                "SET a = :v",
                ConditionExpression="begins_with(#s, :p) AND size(#s) > :one AND attribute_type(n, :t) "
                "AND NOT contains(#s, :v)",
                ExpressionAttributeNames={"#s": "status"},
                **values(":v", ":p", ":one", ":t"),
                ReturnValues="UPDATED_NEW",
            ),
        ),
        (
            "update: condition fails, ALL_OLD back",
            update(
                "serial#E1",
                "SET a = :v",
                ConditionExpression="n = :one",
                **values(":v", ":one"),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        ),
        # 8 + len("big") + the value: exactly at moto's limit, and one byte over (ASCII, and 2-byte UTF-8)
        (
            "update: item of exactly 405000 bytes",
            update("size#1", "SET big = :big", ExpressionAttributeValues={":big": {"S": "x" * 404_989}}),
        ),
        (
            "update: item of 405001 bytes",
            update("size#2", "SET big = :big", ExpressionAttributeValues={":big": {"S": "x" * 404_990}}),
        ),
        (
            "update: item of 404999 bytes, in UTF-8",
            update("size#3", "SET big = :big", ExpressionAttributeValues={":big": {"S": "é" * 202_494}}),
        ),
        (
            "update: item of 405001 bytes, in UTF-8",
            update("size#4", "SET big = :big", ExpressionAttributeValues={":big": {"S": "é" * 202_495}}),
        ),
        (
            "update: item too large (ASCII)",
            update("serial#E2", "SET big = :big", ExpressionAttributeValues={":big": {"S": "x" * 405_000}}),
        ),
        (
            "update: item just under the limit",
            update("serial#E2", "SET big = :big", ExpressionAttributeValues={":big": {"S": "x" * 404_900}}),
        ),
        (
            "update: item too large (UTF-8)",
            update("serial#E3", "SET big = :big", ExpressionAttributeValues={":big": {"S": "é" * 202_500}}),
        ),
        (
            "update: a lone surrogate",
            update("serial#E3", "SET odd = :odd", ExpressionAttributeValues={":odd": {"S": "\ud800"}}),
        ),
        (
            "put: conditional, fails",
            lambda c: call(
                c.db,
                "put_item",
                TableName=TABLE,
                Item={"pk": {"S": "serial#E1"}},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        ),
        (
            "put: conditional, new",
            lambda c: call(
                c.db,
                "put_item",
                TableName=TABLE,
                Item={"pk": {"S": "put#1"}, "a": {"S": "b"}},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValues="ALL_OLD",
            ),
        ),
        (
            "delete: conditional, fails",
            lambda c: call(
                c.db,
                "delete_item",
                TableName=TABLE,
                Key={"pk": {"S": "put#1"}},
                ConditionExpression="a = :x",
                ExpressionAttributeValues={":x": {"S": "c"}},
            ),
        ),
        (
            "delete: conditional",
            lambda c: call(
                c.db,
                "delete_item",
                TableName=TABLE,
                Key={"pk": {"S": "put#1"}},
                ConditionExpression="a = :x",
                ExpressionAttributeValues={":x": {"S": "b"}},
                ReturnValues="ALL_OLD",
            ),
        ),
    ]


def _transactions() -> list[tuple[str, Any]]:
    reserved_by = (
        "attribute_exists(pk) AND #status = :reserved AND certificate_id = :old_cert "
        "AND reserved_at = :old_at",
        {":old_cert": {"S": "t1"}, ":old_at": {"N": "1000"}},
    )
    return [
        ("transact: reserve E1", transact(_serial_update("E1", "t1", *AVAILABLE), _cert_update("t1", "E1"))),
        ("transact: E1 taken", transact(_serial_update("E1", "t2", *AVAILABLE), _cert_update("t2", "E1"))),
        (
            "transact: second serial, same certificate",
            transact(_serial_update("E2", "t1", *AVAILABLE), _cert_update("t1", "E2")),
        ),
        (
            "transact: stale expectation fails at the first item only",
            transact(_serial_update("E1", "t4", *reserved_by), _cert_update("t4", "E1")),
        ),
        (
            "transact: two operations on one item",
            transact(_serial_update("E2", "t5", *AVAILABLE), _serial_update("E2", "t6", *AVAILABLE)),
        ),
        (
            "transact: unknown table",
            transact({"Update": {**_cert_update("t7", "E2")["Update"], "TableName": "nope"}}),
        ),
        (
            "transact: invalid update expression",
            transact({"Update": {**_cert_update("t8", "E2")["Update"], "UpdateExpression": "SET = :x"}}),
        ),
        (
            "transact: put, then a failing condition rolls it back",
            transact(
                {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "cert#t10"}, "serial": {"S": "E2"}}}},
                _serial_update("E1", "t10", *AVAILABLE),
            ),
        ),
        (
            "transact: the same condition text, other values",
            transact(
                _serial_update("E2", "t11", *AVAILABLE),
                _serial_update(
                    "E3",
                    "t12",
                    "attribute_exists(pk) AND #status = :available",
                    {":available": {"S": "RESERVED"}},
                ),
            ),
        ),
        (
            "transact: ALL_OLD on a failed condition",
            transact(
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "serial#E1"}},
                        "ConditionExpression": "#s = :x",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":x": {"S": "AVAILABLE"}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            ),
        ),
        (
            "transact: delete and condition check",
            transact(
                {
                    "Delete": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "cert#t1"}},
                        "ConditionExpression": "serial = :s",
                        "ExpressionAttributeValues": {":s": {"S": "E1"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "serial#E1"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ),
        ),
        (
            "transact: reserve E2",
            transact(_serial_update("E2", "t13", *AVAILABLE), _cert_update("t13", "E2")),
        ),
    ]


def _replies() -> list[tuple[str, Any]]:
    return [
        ("get: every attribute type (binary)", get("item#types")),
        ("get: plain attribute types", get("item#plain", ConsistentRead=True)),
        ("get: no item", get("item#none")),
        (
            "get: projection",
            get(
                "item#plain",
                ProjectionExpression="s, m.inner, l[0], #n",
                ExpressionAttributeNames={"#n": "null"},
            ),
        ),
        ("get: consumed capacity", get("item#plain", ReturnConsumedCapacity="TOTAL")),
        ("get: bad projection name", get("item#plain", ProjectionExpression="#nope")),
        (
            "get: key of the wrong type",
            lambda c: call(c.db, "get_item", TableName=TABLE, Key={"pk": {"N": "1"}}),
        ),
        ("get: not the key", lambda c: call(c.db, "get_item", TableName=TABLE, Key={"other": {"S": "x"}})),
        ("get: unknown table", lambda c: call(c.db, "get_item", TableName="nope", Key={"pk": {"S": "x"}})),
        (
            "query: the rotations index",
            lambda c: call(
                c.db,
                "query",
                TableName=TABLE,
                IndexName="rotations",
                KeyConditionExpression="rotation_pending = :p AND rotation_started_at <= :t",
                ExpressionAttributeValues={":p": {"S": "1"}, ":t": {"N": "9999999999999"}},
            ),
        ),
        (
            "scan: filter and count",
            lambda c: call(
                c.db,
                "scan",
                TableName=TABLE,
                FilterExpression="#s = :r AND n < :n",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":r": {"S": "RESERVED"}, ":n": {"N": "10"}},
                Select="COUNT",
            ),
        ),
    ]


SCENARIOS: list[tuple[str, Any]] = [
    *_replies(),
    *_transactions(),
    *_shape_checks(),
    *_new_items(),
    *_expressions(),
    *_replies(),
]
