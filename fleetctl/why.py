"""What happened to a serial: the hook's decisions about it, from the emulator's log or from CloudWatch Logs
Insights over the hook's log group, and one sentence that sums up those and the registry.

The hook logs one JSON line per decision (lambdas/provisioning_hook/handler.py, Powertools): `message`
"provisioning decision", `decision`, `reason`, `serial`, `detail`, `client_id`, `certificate_id`,
`claim_certificate_id`, `request_id`, and Powertools' `timestamp`. Those lines are the attempts that reached
the hook; a device refused earlier (its CONNECT, a subscription) shows only in the endpoint's own log, which
for the emulator is the same file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from fleetctl.errors import FleetctlError, UsageError

DECISION_MESSAGE = "provisioning decision"
QUERY_LIMIT = 1000  # attempts one query returns (Logs Insights allows up to 10,000)
QUERY_WAIT_S = 120.0
QUERY_POLL_S = 1.0
EMULATOR_EVENTS = 5  # the last refusals before the hook that the emulator logged for the claim client id
# What a Logs Insights string literal may hold here without escaping: the serial goes into the query.
INSIGHTS_SAFE = re.compile(r"[A-Za-z0-9_.:@#/+=-]{1,128}")

# What an operator does about each reason (docs/registry.md has what each one means to the hook).
NEXT_STEP = {
    "ALLOWED_NEW": "provisioned",
    "ALLOWED_RETRY": "the same certificate again, after a lost reply: provisioned",
    "ALLOWED_SAME_KEY": "the same device (its key) with a new certificate: provisioned, the old one retired",
    "ALLOWED_TAKEOVER": "a stale half-finished reservation was taken over: provisioned",
    "ALLOWED_ROTATION": "the provisioned thing renewed its certificate (the rotation template)",
    "ROTATION_REFUSED": "a rotation not asked by the thing's current, ACTIVE, attached certificate",
    "KEY_NOT_NEW": "a rotation must bring a key the thing has not had",
    "MALFORMED_EVENT": "the hook could not read AWS's event (see detail)",
    "BAD_SERIAL": "the SerialNumber does not match the stack's serial_pattern",
    "UNEXPECTED_PARAMETER": "the device sent a template parameter besides SerialNumber",
    "CLAIM_INACTIVE": "the claim certificate is not ACTIVE",
    "UNKNOWN_SERIAL": "not in the registry: `fleetctl registry import` it",
    "REVOKED": "revoked: `fleetctl registry reset` only if it should provision again",
    "CLAIM_NOT_BOUND": "its batch is bound to other claim certificates (`fleetctl batch show`)",
    "CN_MISMATCH": "the certificate's CN is not the serial (require_cn_match)",
    "KEY_REQUIRED": "a device key is required and the registry has none for it (`registry import-manifest`)",
    "KEY_MISMATCH": "the device's key is not the one the registry holds: another chip, or a clone",
    "CERTIFICATE_HOLDS_SERIAL": "this certificate already reserved another serial",
    "TAKEN": "reserved for another key: a clone, or a re-flashed device (after an RMA: `fleetctl registry "
    "reset`)",
    "REGISTRY_ERROR": "DynamoDB or AWS IoT failed or was slow for the hook: try again, check its errors",
    "CONFIG_ERROR": "the hook's environment is incomplete: redeploy the stack",
}


@dataclass(frozen=True)
class Attempt:
    """One decision of the hook about the serial."""

    time: str | None  # ISO-8601 UTC
    decision: str
    reason: str
    client_id: str | None
    certificate_id: str | None
    claim_certificate_id: str | None
    detail: str | None
    request_id: str | None

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:300]


def _iso(value: Any) -> str | None:
    """Powertools' `2026-11-29 21:14:06,418+0000` or Insights' `2026-11-29 21:14:06.418`, as ISO-8601 UTC."""
    if not isinstance(value, str):
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S,%f%z", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            parsed = datetime.strptime(value, pattern)
        except ValueError:
            continue
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).isoformat(timespec="milliseconds")
    return value[:40]


def decision(record: Any, serial: str, fallback_time: Any = None) -> Attempt | None:
    """The hook's decision log record about SERIAL as an Attempt; None for any other record."""
    if not isinstance(record, dict) or record.get("message") != DECISION_MESSAGE:
        return None
    if record.get("serial") != serial:
        return None
    return Attempt(
        time=_iso(record.get("timestamp")) or _iso(fallback_time),
        decision=str(record.get("decision") or "?"),
        reason=str(record.get("reason") or "?"),
        client_id=_text(record.get("client_id")),
        certificate_id=_text(record.get("certificate_id")),
        claim_certificate_id=_text(record.get("claim_certificate_id")),
        detail=_text(record.get("detail")),
        request_id=_text(record.get("request_id")),
    )


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            yield from log
    except FileNotFoundError:
        raise UsageError(f"no log at {path}: give --log FILE (the emulator's output)") from None
    except OSError as exc:
        raise UsageError(f"cannot read the log {path}: {exc.strerror}") from None


def attempts_in_log(path: Path, serial: str) -> list[Attempt]:
    """The hook's decisions about SERIAL in a log file (the emulator's, or exported hook log lines)."""
    found = []
    for line in _lines(path):
        if serial not in line:  # cheap: most lines are about other serials
            continue
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        attempt = decision(record, serial)
        if attempt is not None:
            found.append(attempt)
    return found


def emulator_events(path: Path, client_id: str) -> list[str]:
    """The emulator's own refusals for the claim client id that the hook never saw (a CONNECT, a subscription,
    a rejected request without a hook reason): the last few lines."""
    marker = f"client={client_id} "
    events = [
        line.strip()
        for line in _lines(path)
        if marker in line and (" refused " in line or (" rejected " in line and "hook_reason=" not in line))
    ]
    return events[-EMULATOR_EVENTS:]


def insights_query(serial: str, limit: int = QUERY_LIMIT) -> str:
    """The Logs Insights query for the hook's decisions about SERIAL, oldest first.

    `@message` whole rather than the discovered fields: the same parser then reads a log file and a query's
    rows, and a field the hook adds later needs no change here.
    """
    if not INSIGHTS_SAFE.fullmatch(serial):
        raise UsageError(
            f"serial {serial[:80]!r} has characters a Logs Insights query cannot take as they are"
        )
    return (
        "fields @timestamp, @message"
        f' | filter message = "{DECISION_MESSAGE}" and serial = "{serial}"'
        f" | sort @timestamp asc | limit {limit}"
    )


def attempts_in_insights(
    logs: Any,
    log_group: str,
    serial: str,
    *,
    since_s: float,
    now: float | None = None,
    wait_s: float = QUERY_WAIT_S,
    poll_s: float = QUERY_POLL_S,
    on_wait: Callable[[str], None] = lambda status: None,
) -> list[Attempt]:
    """Run the query over LOG_GROUP for the last SINCE_S seconds; the decisions about SERIAL."""
    end = int(now if now is not None else time.time())
    query = insights_query(serial)
    try:
        query_id = logs.start_query(
            logGroupName=log_group, startTime=int(end - since_s), endTime=end, queryString=query
        )["queryId"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise FleetctlError(f"no log group {log_group}: give --log-group (the hook's)") from None
        raise
    deadline = time.monotonic() + wait_s
    while True:
        reply = logs.get_query_results(queryId=query_id)
        status = reply.get("status")
        if status == "Complete":
            break
        if status in ("Failed", "Cancelled", "Timeout", "Unknown"):
            raise FleetctlError(f"the Logs Insights query over {log_group} ended {status}")
        if time.monotonic() > deadline:
            logs.stop_query(queryId=query_id)
            raise FleetctlError(
                f"the Logs Insights query over {log_group} took over {wait_s:g} s; stopped it"
            )
        on_wait(str(status))
        time.sleep(poll_s)
    return list(_rows_to_attempts(reply.get("results", []), serial))


def _rows_to_attempts(rows: Iterable[list[dict[str, str]]], serial: str) -> Iterator[Attempt]:
    for row in rows:
        fields = {cell.get("field"): cell.get("value") for cell in row}
        try:
            record = json.loads(fields.get("@message") or "")
        except ValueError:
            continue
        # The query filtered already; checking again keeps a broad query (or moto, which ignores
        # `filter`) from showing another serial's decisions.
        attempt = decision(record, serial, fallback_time=fields.get("@timestamp"))
        if attempt is not None:
            yield attempt


def hook_log_group(iot: Any, lambda_client: Any, template_name: str) -> str:
    """The log group of the hook that TEMPLATE_NAME calls: the function's LoggingConfig (the stack names
    one), else Lambda's default /aws/lambda/<function>."""
    try:
        template = iot.describe_provisioning_template(templateName=template_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise FleetctlError(
                f"no provisioning template {template_name!r}: give --template-name or --log-group"
            ) from None
        raise
    target_arn = (template.get("preProvisioningHook") or {}).get("targetArn")
    if not target_arn:
        raise FleetctlError(f"template {template_name!r} has no pre-provisioning hook: give --log-group")
    function = lambda_client.get_function_configuration(FunctionName=target_arn)
    configured = (function.get("LoggingConfig") or {}).get("LogGroup")
    return str(configured or f"/aws/lambda/{function['FunctionName']}")


def thing(iot: Any, thing_name: str) -> dict[str, Any] | None:
    """The thing as AWS IoT has it now, with its certificates; None when there is no such thing."""
    try:
        described = iot.describe_thing(thingName=thing_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    principals = iot.list_thing_principals(thingName=thing_name).get("principals", [])
    return {
        "thing_name": thing_name,
        "attributes": described.get("attributes") or {},
        "thing_type_name": described.get("thingTypeName"),
        "certificate_ids": sorted(p.rsplit("/", 1)[-1] for p in principals if ":cert/" in p),
    }


def verdict(
    item: dict[str, Any] | None, attempts: list[Attempt] | None, thing_now: dict[str, Any] | None
) -> str:
    """One sentence: what the serial is now, and why the last attempt ended as it did (attempts None: the
    hook's decisions are not known)."""
    if attempts is None:
        if item is None:
            return "not in the registry (no log of the hook's decisions to say whether a device tried)"
        reserved = item.get("status") == "RESERVED" and item.get("thing_name")
        name = f" as {item['thing_name']}" if reserved else ""
        return f"{item.get('status')}{name} (no log of the hook's decisions to say more)"
    denied = [a for a in attempts if not a.allowed]
    last = attempts[-1] if attempts else None
    why_last = f"{last.reason}: {NEXT_STEP.get(last.reason, 'see the hook reason')}" if last else ""
    if item is None:
        if not attempts:
            return "never seen: not in the registry, and no attempt reached the hook"
        return f"not in the registry; {len(attempts)} attempt(s) reached the hook, last {why_last}"
    status = item.get("status")
    if status == "RESERVED":
        name = item.get("thing_name") or "?"
        there = "" if thing_now is not None else f" (but no thing {name} exists in AWS IoT now)"
        later = [a for a in denied if (a.time or "") > (_iso_ms(item.get("reserved_at")) or "")]
        tail = f"; {len(later)} later attempt(s) denied, last {later[-1].reason}" if later else ""
        hint = f": {NEXT_STEP.get(later[-1].reason, '')}" if later else ""
        return f"provisioned as {name} on {_when(item.get('reserved_at'))}{there}{tail}{hint}"
    if status == "REVOKED":
        return "revoked: the hook refuses it" + (f"; last attempt {why_last}" if last else "")
    if not attempts:
        return f"{status}: imported, and no attempt reached the hook yet"
    return f"{status}: not provisioned; {len(denied)} attempt(s) denied, last {why_last}"


def _when(epoch_ms: Any) -> str:
    iso = _iso_ms(epoch_ms)
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else "?"


def _iso_ms(epoch_ms: Any) -> str | None:
    if not isinstance(epoch_ms, int | float):
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")
