"""The retirer's registry and AWS IoT calls: the only module of the retirer that touches boto3."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from provisioning_hook.registry_dynamodb import (
    CERTIFICATE_KEY_PREFIX,
    ROTATION_FIELDS,
    ROTATION_PENDING,
    SERIAL_KEY_PREFIX,
)
from provisioning_hook.registry_dynamodb import _endpoint_key as endpoint_key

# Not the hook's: nothing waits on the retirer, so it retries with botocore's backoff rather than give up.
_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 5})
_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()


def client(service: str) -> Any:
    """One boto3 client per service and endpoint environment, per process: building one costs ~100 ms of
    CPU, and the retirer runs on every connection of the fleet (most of which need no client at all)."""
    key = (service, *endpoint_key(service))
    with _clients_lock:  # boto3 sessions are not safe to build clients from concurrently
        cached = _clients.get(key)
        if cached is None:
            cached = _clients[key] = boto3.session.Session().client(service, config=_CONFIG)
        return cached


@dataclass(frozen=True)
class PendingRotation:
    serial: str
    thing_name: str
    certificate_id: str  # the rotation's new certificate (the serial's current one)
    rotating_from: str  # the certificate it replaces
    rotating_from_key_sha256: str | None
    started_at: int  # epoch milliseconds


class Store:
    def __init__(self, table: str, rotations_index: str) -> None:
        self.table = table
        self.index = rotations_index

    @property
    def db(self) -> Any:
        return client("dynamodb")

    @property
    def iot(self) -> Any:
        return client("iot")

    # -- the registry ----------------------------------------------------------------------------------

    def pending(self, serial: str) -> PendingRotation | None:
        item = self.db.get_item(
            TableName=self.table, Key={"pk": {"S": SERIAL_KEY_PREFIX + serial}}, ConsistentRead=True
        ).get("Item")
        return _pending(item) if item else None

    def pending_since(self, before_ms: int) -> Iterator[PendingRotation]:
        """Rotations started before `before_ms`, through the sparse index of pending rotations."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.index,
            "KeyConditionExpression": "rotation_pending = :pending AND rotation_started_at <= :before",
            "ExpressionAttributeValues": {
                ":pending": {"S": ROTATION_PENDING},
                ":before": {"N": str(before_ms)},
            },
        }
        while True:
            reply = self.db.query(**request)
            for item in reply.get("Items", []):
                found = _pending(item)
                if found is not None:
                    yield found
            if not reply.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def finish(self, rotation: PendingRotation, *, keep: str, reason: str, at_ms: int) -> bool:
        """End the rotation in one transaction: the serial keeps certificate `keep` (the new one, or the
        old one when the rotation is abandoned) and the other certificate's item is marked retired.
        False when the serial is no longer in that rotation (a duplicate event, a newer rotation)."""
        retired = rotation.rotating_from if keep == rotation.certificate_id else rotation.certificate_id
        serial_update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": SERIAL_KEY_PREFIX + rotation.serial}},
            "ConditionExpression": "certificate_id = :current AND rotating_from = :from",
            "ExpressionAttributeValues": {
                ":current": {"S": rotation.certificate_id},
                ":from": {"S": rotation.rotating_from},
            },
            "UpdateExpression": f"REMOVE {ROTATION_FIELDS}",
        }
        if keep != rotation.certificate_id:  # abandoned: the old certificate is the serial's again
            serial_update["UpdateExpression"] = (
                f"SET certificate_id = :keep, reserved_key_sha256 = :key REMOVE {ROTATION_FIELDS}"
            )
            serial_update["ExpressionAttributeValues"] |= {
                ":keep": {"S": keep},
                ":key": {"S": rotation.rotating_from_key_sha256 or ""},
            }
        items = [
            {"Update": serial_update},
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": CERTIFICATE_KEY_PREFIX + retired}},
                    "UpdateExpression": (
                        "SET certificate_id = :cert, serial = if_not_exists(serial, :serial), "
                        "retired_at = :at, retired_reason = :why"
                    ),
                    "ExpressionAttributeValues": {
                        ":cert": {"S": retired},
                        ":serial": {"S": rotation.serial},
                        ":at": {"N": str(at_ms)},
                        ":why": {"S": reason},
                    },
                }
            },
        ]
        try:
            self.db.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True

    def expiring(self, before_ms: int) -> int:
        """How many reserved serials' current certificates expire before `before_ms` (a full scan)."""
        count = 0
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#s = :reserved AND certificate_expires_at < :before",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":reserved": {"S": "RESERVED"}, ":before": {"N": str(before_ms)}},
            "Select": "COUNT",
        }
        while True:
            reply = self.db.scan(**request)
            count += int(reply.get("Count", 0))
            if not reply.get("LastEvaluatedKey"):
                return count
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    # -- AWS IoT ---------------------------------------------------------------------------------------

    def certificate_status(self, certificate_id: str) -> tuple[str | None, str | None]:
        """(status, ARN), or (None, None) when the certificate is gone."""
        try:
            description = self.iot.describe_certificate(certificateId=certificate_id)[
                "certificateDescription"
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None, None
            raise
        return description.get("status"), description.get("certificateArn")

    def detach_superseded(self, thing_name: str, *, keep: set[str], policy_name: str) -> list[str]:
        """Detach from the thing (and the device policy) every certificate attached to it, but `keep`, that
        is no longer ACTIVE: those the hook deactivated when a rotation superseded them. An ACTIVE one is
        left alone (an operator attached it). Returns their ids."""
        detached = []
        request: dict[str, Any] = {"thingName": thing_name, "maxResults": 100}
        while True:
            try:
                reply = self.iot.list_thing_principals(**request)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return detached
                raise
            for arn in reply.get("principals", []):
                certificate_id = str(arn).rsplit("/", 1)[-1]
                if ":cert/" not in str(arn) or certificate_id in keep:
                    continue
                status, _ = self.certificate_status(certificate_id)
                if status in ("INACTIVE", "REVOKED"):
                    self.retire_certificate(certificate_id, thing_name, policy_name)
                    detached.append(certificate_id)
            if not reply.get("nextToken"):
                return detached
            request["nextToken"] = reply["nextToken"]

    def retire_certificate(self, certificate_id: str, thing_name: str, policy_name: str) -> str | None:
        """Deactivate the certificate and detach it from the thing and the device policy (each step is
        idempotent: a duplicate event finds it done). Returns its status before, None when it is gone."""
        status, arn = self.certificate_status(certificate_id)
        if status is None or arn is None:
            return None
        if status == "ACTIVE":
            self.iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
        for detach in (
            lambda: self.iot.detach_thing_principal(thingName=thing_name, principal=arn),
            lambda: self.iot.detach_policy(policyName=policy_name, target=arn),
        ):
            try:
                detach()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("ResourceNotFoundException",):
                    raise
        return status


def _pending(item: dict[str, Any]) -> PendingRotation | None:
    rotating_from = item.get("rotating_from", {}).get("S")
    if not rotating_from or "certificate_id" not in item:
        return None
    key = item.get("rotating_from_key_sha256", {}).get("S")
    return PendingRotation(
        serial=item.get("serial", {}).get("S") or item["pk"]["S"].removeprefix(SERIAL_KEY_PREFIX),
        thing_name=item.get("thing_name", {}).get("S", ""),
        certificate_id=item["certificate_id"]["S"],
        rotating_from=rotating_from,
        rotating_from_key_sha256=key,
        started_at=int(item.get("rotation_started_at", {}).get("N", "0")),
    )
