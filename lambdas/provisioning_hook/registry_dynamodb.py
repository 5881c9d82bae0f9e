"""The registry on DynamoDB and IoT: the only module of the hook that touches boto3.

Time is bounded twice. Each HTTP attempt is bounded by the client's connect and read timeouts, and
botocore itself never retries (its backoff can sleep up to a second). Retries happen here instead,
and an attempt only starts if a whole attempt still fits in the decision's budget, so a hung
DynamoDB or IoT gives a denial well inside AWS's 5 s limit for the hook.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .decision import STATUS_AVAILABLE, STATUS_RESERVED, RegistryError, Reservation, SerialRecord

SERIAL_KEY_PREFIX = "serial#"  # infra/constants.py SERIAL_KEY_PREFIX
BATCH_KEY_PREFIX = "batch#"  # infra/constants.py BATCH_KEY_PREFIX

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


def client(service: str) -> Any:
    """A boto3 client per service and endpoint environment, built once: creation costs ~100 ms.

    The cache holds clients only, never data. Its key includes the endpoint and region variables so a
    process whose environment changes (tests, the emulator) never talks to a stale endpoint.
    """
    key = (
        service,
        *(
            os.environ.get(name, "")
            for name in (
                "AWS_ENDPOINT_URL",
                f"AWS_ENDPOINT_URL_{service.upper()}",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "AWS_ACCESS_KEY_ID",
            )
        ),
    )
    with _clients_lock:  # boto3's default session is not safe to build clients from concurrently
        cached = _clients.get(key)
        if cached is None:
            cached = boto3.session.Session().client(service, config=_CLIENT_CONFIG)
            _clients[key] = cached
        return cached


def reset_clients() -> None:
    """Forget cached clients (tests that start and stop moto)."""
    with _clients_lock:
        _clients.clear()


class DynamoDBRegistry:
    """`decision.Registry` over the serial table and iot:DescribeCertificate, within one time budget."""

    def __init__(
        self, table_name: str, *, budget_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._table = table_name
        self._clock = clock
        # Building a client is local CPU work (loading the service model, ~100 ms on a cold start):
        # do it before the clock starts so the budget is spent on the network only.
        client("dynamodb")
        self._deadline = clock() + (DECISION_BUDGET_S if budget_s is None else budget_s)

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

    def batch_claims(self, batch: str) -> frozenset[str] | None:
        item = self._call(
            "dynamodb",
            "get_item",
            TableName=self._table,
            ConsistentRead=True,
            Key={"pk": {"S": BATCH_KEY_PREFIX + batch}},
            ProjectionExpression="claim_certificate_ids",
        ).get("Item")
        if item is None:
            return None
        claims = item.get("claim_certificate_ids", {}).get("SS", [])
        return frozenset(claims)

    def reserve(self, reservation: Reservation) -> bool:
        return self._write(reservation, "#status = :available", {":available": {"S": STATUS_AVAILABLE}})

    def take_over(
        self, reservation: Reservation, *, previous_certificate_id: str, previous_reserved_at: int
    ) -> bool:
        return self._write(
            reservation,
            "#status = :reserved AND certificate_id = :old_cert AND reserved_at = :old_at",
            {
                ":reserved": {"S": STATUS_RESERVED},
                ":old_cert": {"S": previous_certificate_id},
                ":old_at": {"N": str(previous_reserved_at)},
            },
        )

    def certificate_is_active(self, certificate_id: str) -> bool:
        try:
            reply = self._call("iot", "describe_certificate", certificateId=certificate_id)
        except _NotFound:
            return False  # deleted (e.g. its ownership token expired): it never became a device
        return bool(reply.get("certificateDescription", {}).get("status") == "ACTIVE")

    # -- plumbing ----------------------------------------------------------------------------------

    def _write(self, reservation: Reservation, condition: str, values: dict[str, Any]) -> bool:
        now_iso = datetime.fromtimestamp(reservation.reserved_at / 1000, UTC).isoformat(
            timespec="milliseconds"
        )
        try:
            self._call(
                "dynamodb",
                "update_item",
                TableName=self._table,
                Key={"pk": {"S": SERIAL_KEY_PREFIX + reservation.serial}},
                UpdateExpression=(
                    "SET #status = :reserved, certificate_id = :cert, thing_name = :thing, "
                    "claim_certificate_id = :claim, client_id = :client, reserved_at = :at, "
                    "updated_at = :now"
                ),
                # attribute_exists: an UpdateItem on a missing key would otherwise create the item.
                ConditionExpression=f"attribute_exists(pk) AND {condition}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":reserved": {"S": STATUS_RESERVED},
                    ":cert": {"S": reservation.certificate_id},
                    ":thing": {"S": reservation.thing_name},
                    ":claim": {"S": reservation.claim_certificate_id},
                    ":client": {"S": reservation.client_id},
                    ":at": {"N": str(reservation.reserved_at)},
                    ":now": {"S": now_iso},
                    **values,
                },
            )
        except _ConditionFailed:
            return False
        return True

    def _call(self, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        last: str = "no attempt"
        for attempt in range(MAX_ATTEMPTS):
            if self._deadline - self._clock() < _attempt_worst_s():
                raise RegistryError(f"{service}.{operation}: out of time after {attempt} attempt(s) ({last})")
            built = self._clock()
            service_client = client(service)
            # A first use builds the client (local CPU, ~100 ms cold): not network time, so not budget.
            self._deadline += self._clock() - built
            try:
                return getattr(service_client, operation)(**kwargs)  # type: ignore[no-any-return]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    raise _ConditionFailed from None
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
            time.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise RegistryError(f"{service}.{operation}: gave up after {MAX_ATTEMPTS} attempts ({last})")


def _attempt_worst_s() -> float:
    """The longest one HTTP attempt can take with the clients' configuration."""
    return float(_CLIENT_CONFIG.connect_timeout) + float(_CLIENT_CONFIG.read_timeout)


class _ConditionFailed(Exception):
    pass


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
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"malformed serial item: {type(exc).__name__}") from None
