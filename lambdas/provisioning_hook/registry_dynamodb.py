"""The registry on DynamoDB and IoT: the only module of the hook that touches boto3.

Time is bounded twice. Each HTTP attempt is bounded by the client's connect and read timeouts, and
botocore itself never retries (its backoff can sleep up to a second). Retries happen here instead,
and an attempt only starts if a whole attempt still fits in the decision's budget, so a hung
DynamoDB or IoT gives a denial well inside AWS's 5 s limit for the hook.

One file over 400 lines: it is the hook's only boto3 module, so that every AWS call, its time budget
and its retries are read in one place.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .decision import (
    CERT_ACTIVE,
    STATUS_AVAILABLE,
    STATUS_RESERVED,
    BatchRecord,
    RegistryError,
    Reservation,
    SerialRecord,
    WriteOutcome,
)

SERIAL_KEY_PREFIX = "serial#"  # infra/constants.py SERIAL_KEY_PREFIX
BATCH_KEY_PREFIX = "batch#"  # infra/constants.py BATCH_KEY_PREFIX
CERTIFICATE_KEY_PREFIX = "cert#"  # infra/constants.py CERTIFICATE_KEY_PREFIX

CONNECT_TIMEOUT_S = 0.5
READ_TIMEOUT_S = 0.8
MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 0.05
DECISION_BUDGET_S = 3.0  # all registry calls of one decision; the function timeout is 4 s, AWS's 5 s

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
    }
)

_CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"mode": "standard", "total_max_attempts": 1},
    tcp_keepalive=True,
)
_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()
# Claim certificates seen ACTIVE, until when (time.monotonic): see DynamoDBRegistry.claim_is_active.
CLAIM_STATUS_TTL_S = 5.0
_MAX_CACHED_CLAIMS = 1024
_active_claims: dict[tuple[tuple[str, ...], str], float] = {}
RETIRED_BY = {
    "same_key": "superseded_same_key",
    "takeover": "taken_over_stale",
    "provisioned": "superseded",
    "rotation": "superseded_rotation",
}
ROTATION_PENDING = "1"  # the `rotation_pending` attribute: the rotations index's partition (sparse)
ROTATION_FIELDS = "rotating_from, rotating_from_key_sha256, rotation_pending, rotation_started_at"
FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")


def client(service: str) -> Any:
    """A boto3 client per service and endpoint environment, built once: creation costs ~100 ms.

    The cache holds clients only, never data. Its key includes the endpoint and region variables so a
    process whose environment changes (tests, the emulator) never talks to a stale endpoint.
    """
    key = (service, *_endpoint_key(service))
    with _clients_lock:  # boto3's default session is not safe to build clients from concurrently
        cached = _clients.get(key)
        if cached is None:
            cached = boto3.session.Session().client(service, config=_CLIENT_CONFIG)
            _clients[key] = cached
        return cached


def reset_clients() -> None:
    """Forget cached clients and claim statuses (tests that start and stop moto)."""
    with _clients_lock:
        _clients.clear()
        _active_claims.clear()


class DynamoDBRegistry:
    """`decision.Registry` over the serial table and AWS IoT, within one time budget."""

    def __init__(
        self, table_name: str, *, budget_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._table = table_name
        self._clock = clock
        # Building a client is local CPU work (loading the service model, ~100 ms on a cold start):
        # do it before the clock starts so the budget is spent on the network only.
        client("dynamodb")
        self._deadline = clock() + (DECISION_BUDGET_S if budget_s is None else budget_s)
        self.attempts: list[tuple[float, float]] = []  # (start, end) of each call attempt, on `clock`

    # -- decision.Registry -------------------------------------------------------------------------

    def get_serial(self, serial: str) -> SerialRecord | None:
        item = self._call(
            "dynamodb",
            "get_item",
            TableName=self._table,
            ConsistentRead=True,
            Key={"pk": {"S": SERIAL_KEY_PREFIX + serial}},
        ).get("Item")
        return None if item is None else _serial_record(serial, item)

    def get_batch(self, batch: str) -> BatchRecord | None:
        item = self._call(
            "dynamodb",
            "get_item",
            TableName=self._table,
            ConsistentRead=True,
            Key={"pk": {"S": BATCH_KEY_PREFIX + batch}},
            ProjectionExpression="claim_certificate_ids, require_device_key",
        ).get("Item")
        if item is None:
            return None
        claims = item.get("claim_certificate_ids", {}).get("SS")
        return BatchRecord(
            batch=batch,
            claim_certificate_ids=None if claims is None else frozenset(claims),
            require_device_key=item.get("require_device_key", {}).get("BOOL") is True,
        )

    def certificate_status(self, certificate_id: str) -> str | None:
        try:
            reply = self._call("iot", "describe_certificate", certificateId=certificate_id)
        except _NotFound:
            return None  # deleted (e.g. its ownership token expired): it never became a device
        status = reply.get("certificateDescription", {}).get("status")
        if not isinstance(status, str):
            raise RegistryError("iot.describe_certificate: no status in the answer")
        return status

    def claim_is_active(self, certificate_id: str) -> bool:
        """A claim's ACTIVE status is kept for CLAIM_STATUS_TTL_S per function instance (one IoT call per
        claim every few seconds, not per device); anything else is asked again every time, so a claim an
        operator deactivates stops provisioning within that time. (AWS IoT also closes its connections.)"""
        key = (_endpoint_key("iot"), certificate_id)
        now = time.monotonic()
        with _clients_lock:
            if _active_claims.get(key, 0.0) > now:
                return True
        active = self.certificate_status(certificate_id) == CERT_ACTIVE
        if active:
            with _clients_lock:
                if len(_active_claims) >= _MAX_CACHED_CLAIMS:
                    _active_claims.clear()
                _active_claims[key] = now + CLAIM_STATUS_TTL_S
        return active

    def write_reservation(self, reservation: Reservation, previous: SerialRecord) -> WriteOutcome:
        at = {"N": str(reservation.reserved_at)}
        now_iso = {"S": _iso(reservation.reserved_at)}
        if previous.status == STATUS_AVAILABLE:
            serial_condition = "attribute_exists(pk) AND #status = :available"
            condition_values: dict[str, Any] = {":available": {"S": STATUS_AVAILABLE}}
            # A new reservation starts with no rotation: a serial reset while one was pending (by a fleetctl
            # that left its fields) must not let the certificate it replaced rotate the new device's thing.
            forget = f" REMOVE {ROTATION_FIELDS}"
        else:
            serial_condition = (
                "attribute_exists(pk) AND #status = :reserved AND certificate_id = :old_cert "
                "AND reserved_at = :old_at"
            )
            condition_values = {
                ":old_cert": {"S": previous.certificate_id or ""},
                ":old_at": {"N": str(previous.reserved_at or 0)},
            }
            forget = ""
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": SERIAL_KEY_PREFIX + reservation.serial}},
                    "UpdateExpression": (
                        "SET #status = :reserved, certificate_id = :cert, thing_name = :thing, "
                        "claim_certificate_id = :claim, client_id = :client, reserved_at = :at, "
                        "reserved_key_sha256 = :key, certificate_expires_at = :expires, updated_at = :now "
                        "ADD certificate_ids :certs" + forget
                    ),
                    # attribute_exists: an UpdateItem on a missing key would otherwise create the item.
                    "ConditionExpression": serial_condition,
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":reserved": {"S": STATUS_RESERVED},
                        ":cert": {"S": reservation.certificate_id},
                        ":thing": {"S": reservation.thing_name},
                        ":claim": {"S": reservation.claim_certificate_id},
                        ":client": {"S": reservation.client_id},
                        ":at": at,
                        ":key": {"S": reservation.key_sha256},
                        ":expires": {"N": str(reservation.expires_at)},
                        ":now": now_iso,
                        ":certs": {"SS": [reservation.certificate_id]},
                        **condition_values,
                    },
                }
            },
            self._certificate_item(reservation),
        ]
        if previous.certificate_id and previous.certificate_id != reservation.certificate_id:
            items.append(
                self._retired_item(previous.certificate_id, reservation, RETIRED_BY[reservation.reason])
            )
        return self._transact(items)

    def write_rotation(
        self, reservation: Reservation, previous: SerialRecord, *, requester: str, requester_key: str
    ) -> WriteOutcome:
        at = {"N": str(reservation.reserved_at)}
        from_current = requester == previous.certificate_id
        started = (
            reservation.reserved_at
            if from_current
            else (previous.rotation_started_at or reservation.reserved_at)
        )
        retired = previous.rotating_from if from_current else previous.certificate_id
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": SERIAL_KEY_PREFIX + reservation.serial}},
                    "UpdateExpression": (
                        "SET certificate_id = :cert, reserved_at = :at, reserved_key_sha256 = :key, "
                        "certificate_expires_at = :expires, rotating_from = :from, "
                        "rotating_from_key_sha256 = :from_key, rotation_pending = :pending, "
                        "rotation_started_at = :started, updated_at = :now ADD certificate_ids :certs"
                    ),
                    "ConditionExpression": "#status = :reserved AND certificate_id = :current",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":reserved": {"S": STATUS_RESERVED},
                        ":current": {"S": previous.certificate_id or ""},
                        ":cert": {"S": reservation.certificate_id},
                        ":at": at,
                        ":key": {"S": reservation.key_sha256},
                        ":expires": {"N": str(reservation.expires_at)},
                        ":from": {"S": requester},
                        ":from_key": {"S": requester_key},
                        ":pending": {"S": ROTATION_PENDING},
                        ":started": {"N": str(started)},
                        ":now": {"S": _iso(reservation.reserved_at)},
                        ":certs": {"SS": [reservation.certificate_id]},
                    },
                }
            },
            self._certificate_item(reservation),
        ]
        if retired and retired not in (requester, reservation.certificate_id):
            why = "rotated" if from_current else RETIRED_BY[reservation.reason]
            items.append(self._retired_item(retired, reservation, why))
        return self._transact(items)

    def thing_certificates(self, thing_name: str) -> frozenset[str]:
        try:
            reply = self._call("iot", "list_thing_principals", thingName=thing_name)
        except _NotFound:
            return frozenset()
        return frozenset(
            str(arn).rsplit("/", 1)[-1] for arn in reply.get("principals", []) if ":cert/" in str(arn)
        )

    def _certificate_item(self, reservation: Reservation) -> dict[str, Any]:
        """One certificate, one serial: the certificate's item names the serial it holds."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": CERTIFICATE_KEY_PREFIX + reservation.certificate_id}},
                "UpdateExpression": (
                    "SET certificate_id = :cert, serial = :serial, issued_at = :at, "
                    "issued_reason = :reason, claim_certificate_id = :claim, key_sha256 = :key, "
                    "expires_at = :expires, updated_at = :now"
                ),
                "ConditionExpression": "attribute_not_exists(pk) OR serial = :serial",
                "ExpressionAttributeValues": {
                    ":cert": {"S": reservation.certificate_id},
                    ":serial": {"S": reservation.serial},
                    ":at": {"N": str(reservation.reserved_at)},
                    ":reason": {"S": reservation.reason},
                    ":claim": {"S": reservation.claim_certificate_id},
                    ":key": {"S": reservation.key_sha256},
                    ":expires": {"N": str(reservation.expires_at)},
                    ":now": {"S": _iso(reservation.reserved_at)},
                },
            }
        }

    def _retired_item(self, certificate_id: str, reservation: Reservation, why: str) -> dict[str, Any]:
        """The certificate history: a certificate whose reservation ended."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": CERTIFICATE_KEY_PREFIX + certificate_id}},
                "UpdateExpression": (
                    "SET certificate_id = :cert, serial = if_not_exists(serial, :serial), "
                    "retired_at = :at, retired_reason = :why, updated_at = :now"
                ),
                "ExpressionAttributeValues": {
                    ":cert": {"S": certificate_id},
                    ":serial": {"S": reservation.serial},
                    ":at": {"N": str(reservation.reserved_at)},
                    ":why": {"S": why},
                    ":now": {"S": _iso(reservation.reserved_at)},
                },
            }
        }

    def _transact(self, items: list[dict[str, Any]]) -> WriteOutcome:
        try:
            self._call("dynamodb", "transact_write_items", TransactItems=items)
        except _Cancelled as cancelled:
            if cancelled.failed(1):
                return WriteOutcome.CERTIFICATE_HOLDS_SERIAL
            return WriteOutcome.SERIAL_CHANGED
        return WriteOutcome.WRITTEN

    def deactivate_certificate(self, certificate_id: str) -> None:
        self._call("iot", "update_certificate", certificateId=certificate_id, newStatus="INACTIVE")

    # -- plumbing ----------------------------------------------------------------------------------

    def _call(self, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        last: str = "no attempt"
        for attempt in range(MAX_ATTEMPTS):
            if self._deadline - self._clock() < _attempt_worst_s():
                raise RegistryError(f"{service}.{operation}: out of time after {attempt} attempt(s) ({last})")
            built = self._clock()
            service_client = client(service)
            # A first use builds the client (local CPU, ~100 ms cold): not network time, so not budget.
            self._deadline += self._clock() - built
            started = self._clock()
            try:
                return getattr(service_client, operation)(**kwargs)  # type: ignore[no-any-return]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "TransactionCanceledException":
                    reasons = exc.response.get("CancellationReasons") or []
                    codes = [str(r.get("Code", "")) for r in reasons if isinstance(r, dict)]
                    if "ConditionalCheckFailed" in codes or "TransactionConflict" in codes:
                        raise _Cancelled(codes) from None
                    last = f"TransactionCanceledException {codes}"
                    raise RegistryError(f"{service}.{operation}: {last}"[:300]) from None
                if code == "ResourceNotFoundException" and service == "iot":
                    raise _NotFound from None
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in _TRANSIENT_CODES and status < 500:
                    raise RegistryError(f"{service}.{operation}: {code}") from None
                last = code or f"HTTP {status}"
            except (BotoConnectionError, HTTPClientError) as exc:  # timeouts, refused, reset
                last = type(exc).__name__
            except BotoCoreError as exc:  # credentials, region, parameter validation: not transient
                raise RegistryError(f"{service}.{operation}: {type(exc).__name__}") from None
            finally:
                self.attempts.append((started, self._clock()))
            time.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise RegistryError(f"{service}.{operation}: gave up after {MAX_ATTEMPTS} attempts ({last})")


def _attempt_worst_s() -> float:
    """The longest one HTTP attempt can take with the clients' configuration."""
    return float(_CLIENT_CONFIG.connect_timeout) + float(_CLIENT_CONFIG.read_timeout)


class _Cancelled(Exception):
    """A transaction cancelled on a condition or a conflicting write: CancellationReasons' codes, one per
    item in order ("None" for an item that was fine)."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(codes)
        self.codes = codes

    def failed(self, index: int) -> bool:
        return index < len(self.codes) and self.codes[index] == "ConditionalCheckFailed"


class _NotFound(Exception):
    pass


def _serial_record(serial: str, item: dict[str, Any]) -> SerialRecord:
    try:
        attributes = {k: v["S"] for k, v in item.get("attributes", {}).get("M", {}).items() if "S" in v}
        reserved_at = item.get("reserved_at", {}).get("N")
        return SerialRecord(
            serial=serial,
            status=item.get("status", {}).get("S", ""),
            batch=item.get("batch", {}).get("S") or None,
            attributes=attributes,
            certificate_id=item.get("certificate_id", {}).get("S"),
            reserved_at=int(reserved_at) if reserved_at is not None else None,
            public_key_sha256=_fingerprint(item, "public_key_sha256"),
            reserved_key_sha256=_fingerprint(item, "reserved_key_sha256"),
            rotating_from=item.get("rotating_from", {}).get("S"),
            rotating_from_key_sha256=_fingerprint(item, "rotating_from_key_sha256"),
            rotation_started_at=_number(item, "rotation_started_at"),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"malformed serial item: {type(exc).__name__}") from None


def _fingerprint(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    if value is None:
        return None
    if not FINGERPRINT_RE.fullmatch(value):
        # A fingerprint that can never match would deny the genuine device; say where the data is bad.
        raise RegistryError(f"malformed {name} (64 lowercase hex digits expected)")
    return value  # type: ignore[no-any-return]


def _number(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return None if value is None else int(value)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _endpoint_key(service: str) -> tuple[str, ...]:
    """The environment that decides where a client of `service` goes (tests and the emulator change it)."""
    return tuple(
        os.environ.get(name, "")
        for name in (
            "AWS_ENDPOINT_URL",
            f"AWS_ENDPOINT_URL_{service.upper()}",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
        )
    )
