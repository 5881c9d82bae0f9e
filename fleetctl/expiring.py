"""Devices whose current certificate expires soon: a scan of the serial registry.

The hook records each reservation's certificate expiry on the serial (`certificate_expires_at`, epoch ms;
a rotation records the new certificate's), so the registry answers without asking AWS IoT about every
certificate. One paginated Scan, filtered in DynamoDB to provisioned (RESERVED) serials; a serial reserved
before the hook recorded expiries has none and is counted apart, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.constants import SERIAL_KEY_PREFIX

DAY_MS = 86_400_000
RESERVED = "RESERVED"


@dataclass(frozen=True)
class Expiring:
    serial: str
    thing_name: str | None
    certificate_id: str | None
    expires_at_ms: int
    rotation_pending: bool  # a rotation has started: its new certificate is this one

    def days_left(self, now_ms: int) -> float:
        return (self.expires_at_ms - now_ms) / DAY_MS

    def as_dict(self, now_ms: int) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "thing_name": self.thing_name,
            "certificate_id": self.certificate_id,
            "expires_at": iso(self.expires_at_ms),
            "expires_at_ms": self.expires_at_ms,
            "days_left": round(self.days_left(now_ms), 3),
            "expired": self.expires_at_ms <= now_ms,
            "rotation_pending": self.rotation_pending,
        }


@dataclass
class ExpiringScan:
    devices: list[Expiring] = field(default_factory=list)  # soonest first
    scanned: int = 0  # items DynamoDB read (every kind of item, before its filter)
    without_expiry: int = 0  # provisioned serials whose expiry the registry does not know


def expiring(
    dynamodb: Any,
    table: str,
    *,
    before_ms: int,
    on_page: Callable[[int, int], None] = lambda scanned, found: None,
    page_size: int | None = None,
) -> ExpiringScan:
    """Provisioned serials whose current certificate expires before `before_ms` (expired ones included)."""
    result = ExpiringScan()
    request: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(pk, :serial) AND #s = :reserved AND "
        "(attribute_not_exists(certificate_expires_at) OR certificate_expires_at < :before)",
        "ProjectionExpression": "pk, serial, thing_name, certificate_id, certificate_expires_at, "
        "rotation_pending",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {
            ":serial": {"S": SERIAL_KEY_PREFIX},
            ":reserved": {"S": RESERVED},
            ":before": {"N": str(before_ms)},
        },
    }
    if page_size is not None:
        request["Limit"] = page_size
    while True:
        page = dynamodb.scan(**request)
        result.scanned += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            expires = item.get("certificate_expires_at", {}).get("N")
            if expires is None or int(expires) <= 0:
                result.without_expiry += 1
                continue
            result.devices.append(
                Expiring(
                    serial=item.get("serial", {}).get("S") or item["pk"]["S"].removeprefix(SERIAL_KEY_PREFIX),
                    thing_name=item.get("thing_name", {}).get("S"),
                    certificate_id=item.get("certificate_id", {}).get("S"),
                    expires_at_ms=int(expires),
                    rotation_pending="rotation_pending" in item,
                )
            )
        on_page(result.scanned, len(result.devices))
        if not page.get("LastEvaluatedKey"):
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    result.devices.sort(key=lambda device: (device.expires_at_ms, device.serial))
    return result


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds")
