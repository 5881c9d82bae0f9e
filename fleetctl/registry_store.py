"""The serial registry table as fleetctl uses it (item model: docs/registry.md)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from fleetctl.errors import FleetctlError
from fleetctl.serial_csv import SerialRow
from infra.constants import BATCH_KEY_PREFIX, SERIAL_KEY_PREFIX, TABLE_PARTITION_KEY

AVAILABLE, RESERVED, REVOKED = "AVAILABLE", "RESERVED", "REVOKED"
RESERVATION_FIELDS = ("certificate_id", "thing_name", "claim_certificate_id", "client_id", "reserved_at")
BATCH_GET_MAX = 100  # DynamoDB's limits per call
BATCH_WRITE_MAX = 25
MAX_UNPROCESSED_ROUNDS = 10


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def serial_key(serial: str) -> dict[str, Any]:
    return {TABLE_PARTITION_KEY: {"S": SERIAL_KEY_PREFIX + serial}}


def batch_key(batch: str) -> dict[str, Any]:
    return {TABLE_PARTITION_KEY: {"S": BATCH_KEY_PREFIX + batch}}


def plain(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute value as plain JSON."""
    ((kind, inner),) = value.items()
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind == "L":
        return [plain(v) for v in inner]
    if kind == "SS":
        return sorted(inner)
    if kind == "N":
        return int(inner) if inner.lstrip("-").isdigit() else float(inner)
    if kind == "NULL":
        return None
    return inner


@dataclass(frozen=True)
class Existing:
    status: str
    batch: str | None
    attributes: dict[str, str]

    def same_data(self, row: SerialRow) -> bool:
        return self.batch == row.batch and self.attributes == row.attributes


class RegistryStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self.db = dynamodb
        self.table = table

    # -- import --------------------------------------------------------------------------------------

    def existing(self, serials: Sequence[str]) -> dict[str, Existing]:
        """BatchGetItem in chunks of 100, retrying unprocessed keys with backoff."""
        found: dict[str, Existing] = {}
        for start in range(0, len(serials), BATCH_GET_MAX):
            keys = [serial_key(s) for s in dict.fromkeys(serials[start : start + BATCH_GET_MAX])]
            request: dict[str, Any] = {
                self.table: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "serial, #s, #b, attributes",
                    "ExpressionAttributeNames": {"#s": "status", "#b": "batch"},
                }
            }
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                reply = self.db.batch_get_item(RequestItems=request)
                for item in reply.get("Responses", {}).get(self.table, []):
                    found[item["serial"]["S"]] = Existing(
                        status=item.get("status", {}).get("S", ""),
                        batch=item.get("batch", {}).get("S"),
                        attributes={
                            k: v.get("S", "") for k, v in item.get("attributes", {}).get("M", {}).items()
                        },
                    )
                request = reply.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(round_)
            else:
                raise FleetctlError(
                    "DynamoDB kept keys unprocessed (throttled); nothing after this batch was read"
                )
        return found

    def put_new(self, rows: Iterable[SerialRow]) -> None:
        """BatchWriteItem in chunks of 25, retrying unprocessed items with backoff."""
        stamp = now_iso()
        pending = [{"PutRequest": {"Item": _new_item(row, stamp)}} for row in rows]
        for start in range(0, len(pending), BATCH_WRITE_MAX):
            request: dict[str, Any] = {self.table: pending[start : start + BATCH_WRITE_MAX]}
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                request = self.db.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                _backoff(round_)
            else:
                raise FleetctlError(
                    "DynamoDB kept items unprocessed (throttled); re-run the import to finish"
                )

    def update_available(self, row: SerialRow) -> bool:
        """Change batch/attributes of a serial only while it is AVAILABLE; False if it no longer is."""
        names = {"#s": "status", "#b": "batch"}  # both are DynamoDB reserved words
        values: dict[str, Any] = {
            ":available": {"S": AVAILABLE},
            ":attrs": _attributes(row),
            ":now": {"S": now_iso()},
        }
        expression = "SET attributes = :attrs, updated_at = :now"
        if row.batch is None:
            expression += " REMOVE #b"
        else:
            expression += ", #b = :batch"
            values[":batch"] = {"S": row.batch}
        try:
            self.db.update_item(
                TableName=self.table,
                Key=serial_key(row.serial),
                UpdateExpression=expression,
                ConditionExpression="#s = :available",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- single serials --------------------------------------------------------------------------------

    def get(self, serial: str) -> dict[str, Any] | None:
        item = self.db.get_item(TableName=self.table, Key=serial_key(serial), ConsistentRead=True).get("Item")
        return None if item is None else {k: plain(v) for k, v in item.items() if k != TABLE_PARTITION_KEY}

    def revoke(self, serial: str) -> dict[str, Any]:
        stamp = now_iso()
        return self._update_existing(
            serial,
            "SET #s = :revoked, revoked_at = :now, updated_at = :now",
            {":revoked": {"S": REVOKED}, ":now": {"S": stamp}},
        )

    def reset(self, serial: str) -> dict[str, Any]:
        """Back to AVAILABLE, reservation forgotten: the only way an ACTIVE serial may provision again."""
        remove = ", ".join((*RESERVATION_FIELDS, "revoked_at"))
        return self._update_existing(
            serial,
            f"SET #s = :available, updated_at = :now REMOVE {remove}",
            {":available": {"S": AVAILABLE}, ":now": {"S": now_iso()}},
        )

    def _update_existing(self, serial: str, expression: str, values: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = self.db.update_item(
                TableName=self.table,
                Key=serial_key(serial),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise FleetctlError(f"serial {serial!r} is not in the registry") from None
            raise
        return {k: plain(v) for k, v in reply.get("Attributes", {}).items() if k != TABLE_PARTITION_KEY}

    # -- batches and statistics ------------------------------------------------------------------------

    def bind(self, batch: str, claim_certificate_ids: Sequence[str]) -> list[str]:
        reply = self.db.update_item(
            TableName=self.table,
            Key=batch_key(batch),
            UpdateExpression="ADD claim_certificate_ids :ids SET #b = :batch, updated_at = :now",
            ExpressionAttributeNames={"#b": "batch"},
            ExpressionAttributeValues={
                ":ids": {"SS": list(dict.fromkeys(claim_certificate_ids))},
                ":batch": {"S": batch},
                ":now": {"S": now_iso()},
            },
            ReturnValues="ALL_NEW",
        )
        return sorted(reply["Attributes"]["claim_certificate_ids"]["SS"])

    def batch(self, batch: str) -> dict[str, Any] | None:
        item = self.db.get_item(TableName=self.table, Key=batch_key(batch), ConsistentRead=True).get("Item")
        return None if item is None else {k: plain(v) for k, v in item.items() if k != TABLE_PARTITION_KEY}

    def stats(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        by_batch: dict[str, Counter[str]] = defaultdict(Counter)
        bound: dict[str, int] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "pk, #s, #b, claim_certificate_ids",
            "ExpressionAttributeNames": {"#s": "status", "#b": "batch"},
        }
        while True:
            page = self.db.scan(**kwargs)
            for item in page.get("Items", []):
                pk = item["pk"]["S"]
                if pk.startswith(SERIAL_KEY_PREFIX):
                    status = item.get("status", {}).get("S", "?")
                    by_status[status] += 1
                    by_batch[item.get("batch", {}).get("S", "(none)")][status] += 1
                elif pk.startswith(BATCH_KEY_PREFIX):
                    bound[pk[len(BATCH_KEY_PREFIX) :]] = len(
                        item.get("claim_certificate_ids", {}).get("SS", [])
                    )
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        batches = {
            name: {
                "total": sum(counts.values()),
                **{s: counts.get(s, 0) for s in (AVAILABLE, RESERVED, REVOKED)},
                "bound_claims": bound.get(name),
            }
            for name, counts in sorted(by_batch.items())
        }
        return {
            "total": sum(by_status.values()),
            "by_status": {s: by_status.get(s, 0) for s in (AVAILABLE, RESERVED, REVOKED)}
            | {s: n for s, n in by_status.items() if s not in (AVAILABLE, RESERVED, REVOKED)},
            "by_batch": batches,
        }


def _attributes(row: SerialRow) -> dict[str, Any]:
    return {"M": {k: {"S": v} for k, v in row.attributes.items()}}


def _new_item(row: SerialRow, stamp: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        **serial_key(row.serial),
        "serial": {"S": row.serial},
        "status": {"S": AVAILABLE},
        "attributes": _attributes(row),
        "imported_at": {"S": stamp},
        "updated_at": {"S": stamp},
    }
    if row.batch is not None:
        item["batch"] = {"S": row.batch}
    return item


def _backoff(round_: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**round_))
