"""A serial's certificates in AWS IoT: their history from the registry, and retiring them.

Retiring is what `registry reset` (an RMA, a re-flash) and `registry revoke --deactivate` do to the
certificates a serial's reservations named: deactivate each (AWS IoT then closes its connections) and, for a
reset, detach it from its things and policies, so the old certificate neither works nor holds the thing.
A certificate already gone is skipped; nothing is deleted (AWS IoT's own audit trail keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
IOT_PAGE = 250  # ListPrincipalThings / ListAttachedPolicies page size


@dataclass
class Retired:
    certificate_id: str
    previous_status: str | None  # None: the certificate no longer exists in AWS IoT
    things: list[str] = field(default_factory=list)  # detached from
    policies: list[str] = field(default_factory=list)  # detached from

    def as_dict(self) -> dict[str, Any]:
        return {
            "certificate_id": self.certificate_id,
            "previous_status": self.previous_status,
            "detached_things": self.things,
            "detached_policies": self.policies,
        }


def serial_certificate_ids(item: dict[str, Any]) -> list[str]:
    """Every certificate a serial's reservations named, the current one last (plain registry item)."""
    current = item.get("certificate_id")
    history = [c for c in item.get("certificate_ids", []) if c != current]
    return [*sorted(history), *([current] if current else [])]


def status(iot: Any, certificate_id: str) -> tuple[str | None, str | None]:
    """(status, ARN), or (None, None) when the certificate does not exist."""
    try:
        description = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None, None
        raise
    return description.get("status"), description.get("certificateArn")


def retire(iot: Any, certificate_ids: list[str], *, detach: bool) -> list[Retired]:
    """Deactivate each ACTIVE certificate and, with `detach`, detach it from its things and policies."""
    retired = []
    for certificate_id in certificate_ids:
        current, arn = status(iot, certificate_id)
        record = Retired(certificate_id, current)
        retired.append(record)
        if current is None:
            continue
        if current == ACTIVE:
            iot.update_certificate(certificateId=certificate_id, newStatus=INACTIVE)
        if not detach:
            continue
        for thing in _pages(iot.list_principal_things, "things", principal=arn, maxResults=IOT_PAGE):
            iot.detach_thing_principal(thingName=thing, principal=arn)
            record.things.append(thing)
        for policy in _pages(iot.list_attached_policies, "policies", target=arn, pageSize=IOT_PAGE):
            iot.detach_policy(policyName=policy["policyName"], target=arn)
            record.policies.append(policy["policyName"])
    return retired


def _pages(call: Any, key: str, **kwargs: Any) -> list[Any]:
    """Every item of a paginated IoT list call (nextToken for things, nextMarker for policies)."""
    found: list[Any] = []
    while True:
        reply = call(**kwargs)
        found.extend(reply.get(key, []))
        token = reply.get("nextToken") or reply.get("nextMarker")
        if not token:
            return found
        kwargs["nextToken" if "nextToken" in reply else "marker"] = token
