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
from fleetctl.fingerprint import FINGERPRINT_COLUMN
from fleetctl.serial_csv import SerialRow
from infra.constants import BATCH_KEY_PREFIX, CERTIFICATE_KEY_PREFIX, SERIAL_KEY_PREFIX, TABLE_PARTITION_KEY

AVAILABLE, RESERVED, REVOKED = "AVAILABLE", "RESERVED", "REVOKED"
RESERVATION_FIELDS = (
    "certificate_id",
    "thing_name",
    "claim_certificate_id",
    "client_id",
    "reserved_at",
    "reserved_key_sha256",
    "certificate_expires_at",
    # A rotation under way (docs/rotation.md): after a reset, the certificate it replaced must never count as
    # the serial's again, nor the retirer's sweep find a rotation of a serial that has no certificate.
    "rotating_from",
    "rotating_from_key_sha256",
    "rotation_pending",
    "rotation_started_at",
)
BATCH_GET_MAX = 100  # DynamoDB's limits per call
BATCH_WRITE_MAX = 25
MAX_UNPROCESSED_ROUNDS = 10
NO_BATCH = "(none)"


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
    public_key_sha256: str | None = None

    def same_data(self, row: SerialRow) -> bool:
        """Nothing the row states differs from the item (what a row does not state cannot differ)."""
        return (
            (not row.sets_batch or self.batch == row.batch)
            and (not row.sets_attributes or self.attributes == row.attributes)
            and (row.public_key_sha256 is None or self.public_key_sha256 == row.public_key_sha256)
        )


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
                    "ProjectionExpression": f"serial, #s, #b, attributes, {FINGERPRINT_COLUMN}",
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
                        public_key_sha256=item.get(FINGERPRINT_COLUMN, {}).get("S"),
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
        """Change what the row states of a serial only while it is AVAILABLE; False if it no longer is.

        A RESERVED serial's key is the one its device provisioned with: changing it there would lock the
        device out, so only `registry reset` opens it to a new key.
        """
        names = {"#s": "status"}  # status and batch are DynamoDB reserved words
        values: dict[str, Any] = {":available": {"S": AVAILABLE}, ":now": {"S": now_iso()}}
        sets, removes = ["updated_at = :now"], []
        if row.sets_attributes:
            sets.append("attributes = :attrs")
            values[":attrs"] = _attributes(row)
        if row.sets_batch:
            names["#b"] = "batch"
            if row.batch is None:
                removes.append("#b")
            else:
                sets.append("#b = :batch")
                values[":batch"] = {"S": row.batch}
        if row.public_key_sha256 is not None:
            sets.append(f"{FINGERPRINT_COLUMN} = :key")
            values[":key"] = {"S": row.public_key_sha256}
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
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

    def certificate_history(self, certificate_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The certificate items (`cert#<id>`) the hook wrote for these ids, in the order given; an id
        without one (reserved before the history existed) comes back with its id alone."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(certificate_ids), BATCH_GET_MAX):
            keys = [
                {TABLE_PARTITION_KEY: {"S": CERTIFICATE_KEY_PREFIX + c}}
                for c in certificate_ids[start:][:BATCH_GET_MAX]
            ]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                reply = self.db.batch_get_item(RequestItems=request)
                for item in reply.get("Responses", {}).get(self.table, []):
                    entry = {k: plain(v) for k, v in item.items() if k != TABLE_PARTITION_KEY}
                    found[entry.get("certificate_id", "")] = entry
                request = reply.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(round_)
        return [found.get(c, {"certificate_id": c}) for c in certificate_ids]

    def mark_retired(self, certificate_ids: Sequence[str], reason: str) -> None:
        """Record in each certificate's item why its life ended (kept if an earlier reason is there)."""
        now_ms = str(int(time.time() * 1000))
        for certificate_id in certificate_ids:
            try:
                self.db.update_item(
                    TableName=self.table,
                    Key={TABLE_PARTITION_KEY: {"S": CERTIFICATE_KEY_PREFIX + certificate_id}},
                    UpdateExpression="SET certificate_id = :cert, retired_at = :at, retired_reason = :why, "
                    "updated_at = :now",
                    ConditionExpression="attribute_not_exists(retired_at)",
                    ExpressionAttributeValues={
                        ":cert": {"S": certificate_id},
                        ":at": {"N": now_ms},
                        ":why": {"S": reason},
                        ":now": {"S": now_iso()},
                    },
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

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

    def require_key(self, batch: str, required: bool) -> None:
        """Whether every serial of the batch must have a device-key fingerprint to provision."""
        self.db.update_item(
            TableName=self.table,
            Key=batch_key(batch),
            UpdateExpression="SET require_device_key = :required, #b = :batch, updated_at = :now",
            ExpressionAttributeNames={"#b": "batch"},
            ExpressionAttributeValues={
                ":required": {"BOOL": required},
                ":batch": {"S": batch},
                ":now": {"S": now_iso()},
            },
        )

    def batch(self, batch: str) -> dict[str, Any] | None:
        item = self.db.get_item(TableName=self.table, Key=batch_key(batch), ConsistentRead=True).get("Item")
        return None if item is None else {k: plain(v) for k, v in item.items() if k != TABLE_PARTITION_KEY}

    def stats(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        by_batch: dict[str, Counter[str]] = defaultdict(Counter)
        keyed: Counter[str] = Counter()  # serials with a device-key fingerprint, by batch
        batch_items: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": (
                f"pk, #s, #b, claim_certificate_ids, require_device_key, {FINGERPRINT_COLUMN}"
            ),
            "ExpressionAttributeNames": {"#s": "status", "#b": "batch"},
        }
        while True:
            page = self.db.scan(**kwargs)
            for item in page.get("Items", []):
                pk = item["pk"]["S"]
                if pk.startswith(SERIAL_KEY_PREFIX):
                    status = item.get("status", {}).get("S", "?")
                    batch = item.get("batch", {}).get("S", NO_BATCH)
                    by_status[status] += 1
                    by_batch[batch][status] += 1
                    if FINGERPRINT_COLUMN in item:
                        keyed[batch] += 1
                elif pk.startswith(BATCH_KEY_PREFIX):
                    batch_items[pk[len(BATCH_KEY_PREFIX) :]] = item
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        batches = {
            name: {
                "total": sum(counts.values()),
                **{s: counts.get(s, 0) for s in (AVAILABLE, RESERVED, REVOKED)},
                "bound_claims": bound_claims(batch_items.get(name)),
                "with_public_key_sha256": keyed.get(name, 0),
                "require_device_key": batch_items.get(name, {})
                .get("require_device_key", {})
                .get("BOOL", False),
            }
            for name, counts in sorted(by_batch.items())
        }
        total = sum(by_status.values())
        return {
            "total": total,
            "by_status": {s: by_status.get(s, 0) for s in (AVAILABLE, RESERVED, REVOKED)}
            | {s: n for s, n in by_status.items() if s not in (AVAILABLE, RESERVED, REVOKED)},
            "public_key_sha256": {"with": sum(keyed.values()), "without": total - sum(keyed.values())},
            "by_batch": batches,
        }


def bound_claims(batch_item: dict[str, Any] | None) -> int | None:
    """How many claims a batch is bound to; None when any claim may provision it.

    A batch item without `claim_certificate_ids` (one that `batch require-key` made) binds no claims:
    DynamoDB cannot hold an empty set, so "bound to none" cannot be written, and reading it as such would
    deny the whole batch.
    """
    if batch_item is None or "claim_certificate_ids" not in batch_item:
        return None
    return len(batch_item["claim_certificate_ids"].get("SS", []))


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
    if row.public_key_sha256 is not None:
        item[FINGERPRINT_COLUMN] = {"S": row.public_key_sha256}
    return item


def _backoff(round_: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**round_))
