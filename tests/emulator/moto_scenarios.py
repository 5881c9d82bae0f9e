"""DynamoDB requests through boto3 against in-process moto, printed as JSON: `python -m
tests.emulator.moto_scenarios patched|plain`. test_moto_dynamodb.py runs it once with the emulator's
patches (emulator/registry/moto_dynamodb.py) and once without, each in a fresh process, and compares.

Every expression form the hook and fleetctl send is here: the reservation transaction (SET, ADD to a
string set, if_not_exists, attribute_exists/attribute_not_exists, AND/OR conditions), an item that does
not exist yet, conditional failures at each position of a transaction, and the errors moto raises.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

TABLE = "serials"


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


def _retire(cert: str, serial: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": f"cert#{cert}"}},
            "UpdateExpression": "SET certificate_id = :cert, serial = if_not_exists(serial, :serial), "
            "retired_at = :at, retired_reason = :why",
            "ExpressionAttributeValues": {
                ":cert": {"S": cert},
                ":serial": {"S": serial},
                ":at": {"N": "2"},
                ":why": {"S": "superseded_same_key"},
            },
        }
    }


AVAILABLE = ("attribute_exists(pk) AND #status = :available", {":available": {"S": "AVAILABLE"}})


def scenarios() -> list[tuple[str, str, dict[str, Any]]]:
    reserved_by = (
        "attribute_exists(pk) AND #status = :reserved AND certificate_id = :old_cert "
        "AND reserved_at = :old_at",
        {":old_cert": {"S": "c1"}, ":old_at": {"N": "1000"}},
    )
    return [
        (
            "reserve",
            "transact_write_items",
            {"TransactItems": [_serial_update("S1", "c1", *AVAILABLE), _cert_update("c1", "S1")]},
        ),
        (
            "reserve again: serial taken",
            "transact_write_items",
            {"TransactItems": [_serial_update("S1", "c2", *AVAILABLE), _cert_update("c2", "S1")]},
        ),
        (
            "second serial, same certificate",
            "transact_write_items",
            {"TransactItems": [_serial_update("S2", "c1", *AVAILABLE), _cert_update("c1", "S2")]},
        ),
        (
            "unknown serial (item does not exist)",
            "transact_write_items",
            {"TransactItems": [_serial_update("S9", "c9", *AVAILABLE), _cert_update("c9", "S9")]},
        ),
        (
            "same key moves the reservation, retires c1",
            "transact_write_items",
            {
                "TransactItems": [
                    _serial_update("S1", "c3", *reserved_by),
                    _cert_update("c3", "S1"),
                    _retire("c1", "S1"),
                ]
            },
        ),
        (
            "a stale expectation fails at the first item only",
            "transact_write_items",
            {
                "TransactItems": [
                    _serial_update("S1", "c4", *reserved_by),
                    _cert_update("c4", "S1"),
                    _retire("c1", "S1"),
                ]
            },
        ),
        (
            "two operations on one item",
            "transact_write_items",
            {
                "TransactItems": [
                    _serial_update("S2", "c5", *AVAILABLE),
                    _serial_update("S2", "c6", *AVAILABLE),
                ]
            },
        ),
        (
            "unknown table",
            "transact_write_items",
            {"TransactItems": [{"Update": {**_cert_update("c7", "S2")["Update"], "TableName": "nope"}}]},
        ),
        (
            "invalid update expression",
            "transact_write_items",
            {
                "TransactItems": [
                    {"Update": {**_cert_update("c8", "S2")["Update"], "UpdateExpression": "SET = :x"}}
                ]
            },
        ),
        (
            "put then a failing condition rolls the put back",
            "transact_write_items",
            {
                "TransactItems": [
                    {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "cert#c10"}, "serial": {"S": "S2"}}}},
                    _serial_update("S1", "c10", *AVAILABLE),
                ]
            },
        ),
        (
            "reserve S2",
            "transact_write_items",
            {"TransactItems": [_serial_update("S2", "c11", *AVAILABLE), _cert_update("c11", "S2")]},
        ),
        (
            "update_item with a condition (fleetctl)",
            "update_item",
            {
                "TableName": TABLE,
                "Key": {"pk": {"S": "serial#S3"}},
                "UpdateExpression": "SET #b = :b",
                "ConditionExpression": "#s = :available",
                "ExpressionAttributeNames": {"#b": "batch", "#s": "status"},
                "ExpressionAttributeValues": {":b": {"S": "B2"}, ":available": {"S": "AVAILABLE"}},
                "ReturnValues": "ALL_NEW",
            },
        ),
        (
            "update_item failing its condition",
            "update_item",
            {
                "TableName": TABLE,
                "Key": {"pk": {"S": "serial#S1"}},
                "UpdateExpression": "SET #b = :b",
                "ConditionExpression": "#s = :available",
                "ExpressionAttributeNames": {"#b": "batch", "#s": "status"},
                "ExpressionAttributeValues": {":b": {"S": "B2"}, ":available": {"S": "AVAILABLE"}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        ),
        (
            "update_item with an invalid expression, twice",
            "update_item",
            {
                "TableName": TABLE,
                "Key": {"pk": {"S": "serial#S3"}},
                "UpdateExpression": "SET a = = :b",
                "ExpressionAttributeValues": {":b": {"S": "x"}},
            },
        ),
        (
            "update_item with an invalid expression, twice",
            "update_item",
            {
                "TableName": TABLE,
                "Key": {"pk": {"S": "serial#S3"}},
                "UpdateExpression": "SET a = = :b",
                "ExpressionAttributeValues": {":b": {"S": "x"}},
            },
        ),
        # The shape checks (one clause of each kind, no overlapping paths, no key attribute) are
        # remembered for an expression that passed them: a failing one must fail every time, and a
        # passing one with other names must still be checked.
        *[
            (
                f"{what}, {n}",
                "update_item",
                {"TableName": TABLE, "Key": {"pk": {"S": "serial#S3"}}, **request},
            )
            for what, request in (
                (
                    "update_item setting the key attribute",
                    {"UpdateExpression": "SET pk = :v", "ExpressionAttributeValues": {":v": {"S": "x"}}},
                ),
                (
                    "update_item with overlapping paths",
                    {
                        "UpdateExpression": "SET a = :v, a.b = :v",
                        "ExpressionAttributeValues": {":v": {"S": "x"}},
                    },
                ),
                (
                    "update_item with two SET clauses",
                    {
                        "UpdateExpression": "SET a = :v SET b = :v",
                        "ExpressionAttributeValues": {":v": {"S": "x"}},
                    },
                ),
                (
                    "update_item with names, valid",
                    {
                        "UpdateExpression": "SET #n = :v",
                        "ExpressionAttributeNames": {"#n": "note"},
                        "ExpressionAttributeValues": {":v": {"S": "x"}},
                    },
                ),
                (
                    "the same text, the name now the key",
                    {
                        "UpdateExpression": "SET #n = :v",
                        "ExpressionAttributeNames": {"#n": "pk"},
                        "ExpressionAttributeValues": {":v": {"S": "x"}},
                    },
                ),
                (
                    "the same text, a value of another type",
                    {
                        "UpdateExpression": "SET #n = :v",
                        "ExpressionAttributeNames": {"#n": "note"},
                        "ExpressionAttributeValues": {":v": {"N": "7"}},
                    },
                ),
            )
            for n in (1, 2)
        ],
        (
            "update_item creates a missing item",
            "update_item",
            {
                "TableName": TABLE,
                "Key": {"pk": {"S": "serial#S7"}},
                "UpdateExpression": "SET #s = :s REMOVE certificate_id",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":s": {"S": "AVAILABLE"}},
                "ReturnValues": "ALL_NEW",
            },
        ),
    ]


def run(patched: bool) -> list[Any]:
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    if patched:
        from emulator.registry import moto_dynamodb

        moto_dynamodb.install()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    out: list[Any] = []
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        for serial in ("S1", "S2", "S3"):
            db.put_item(TableName=TABLE, Item={"pk": {"S": f"serial#{serial}"}, "status": {"S": "AVAILABLE"}})
        for name, operation, request in scenarios():
            try:
                reply = getattr(db, operation)(**request)
                reply.pop("ResponseMetadata", None)
                result: Any = {"ok": reply}
            except ClientError as exc:
                result = {
                    "error": exc.response["Error"].get("Code"),
                    "message": exc.response["Error"].get("Message"),
                    "reasons": exc.response.get("CancellationReasons"),
                    "item": exc.response.get("Item"),
                }
            items = sorted(db.scan(TableName=TABLE, ConsistentRead=True)["Items"], key=lambda i: i["pk"]["S"])
            out.append({"scenario": name, "result": result, "table": items})
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] == "patched"), sort_keys=True, default=str))
