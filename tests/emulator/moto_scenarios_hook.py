"""The hook's and the retirer's DynamoDB calls, made by their own code (lambdas/provisioning_hook/
registry_dynamodb.py, lambdas/certificate_retirer/store.py), through every state they meet: a serial that
exists or not, a reservation written, refused because the serial changed or because the certificate holds
another serial, moved to a new key (the retired certificate's item), a rotation started and finished or
found finished already. Run by moto_scenarios.py."""

from __future__ import annotations

import dataclasses
from typing import Any

TABLE = "serials"
AT = 1_800_000_000_000
KEY_1, KEY_2, KEY_3 = "a" * 64, "b" * 64, "c" * 64


def seed(db: Any) -> None:
    for serial in ("S1", "S2", "S3", "S4"):
        item = {
            "pk": {"S": f"serial#{serial}"},
            "serial": {"S": serial},
            "status": {"S": "AVAILABLE"},
            "attributes": {"M": {"model": {"S": "X1"}, "hw_rev": {"S": "3"}}},
        }
        if serial == "S3":
            item["batch"] = {"S": "B1"}
            item["public_key_sha256"] = {"S": KEY_3}
        db.put_item(TableName=TABLE, Item=item)
    db.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": "batch#B1"},
            "claim_certificate_ids": {"SS": ["claim-1", "claim-2"]},
            "require_device_key": {"BOOL": True},
            "note": {"S": "ignored by the projection"},
        },
    )


def _reservation(serial: str, cert: str, reason: str = "provisioned", at: int = AT) -> Any:
    from provisioning_hook.decision import Reservation

    return Reservation(
        serial=serial,
        certificate_id=cert,
        thing_name=f"device-{serial}",
        claim_certificate_id="claim-1",
        client_id=f"prov-{serial}",
        reserved_at=at,
        key_sha256=KEY_1 if cert.endswith("1") else KEY_2,
        reason=reason,
        expires_at=at + 86_400_000,
    )


def _record(record: Any) -> Any:
    return None if record is None else dataclasses.asdict(record)


def _outcome(run: Any) -> Any:
    from provisioning_hook.decision import RegistryError

    try:
        return {"ok": str(run())}
    except RegistryError as exc:
        return {"registry_error": str(exc)}


def _available(serial: str) -> Any:
    from provisioning_hook.decision import SerialRecord

    return SerialRecord(serial=serial, status="AVAILABLE")


def _reserve(serial: str, cert: str, previous: Any = None, reason: str = "provisioned") -> Any:
    def scenario(c: Any) -> Any:
        before = previous(c) if callable(previous) else previous or c.registry.get_serial(serial)
        return _outcome(lambda: c.registry.write_reservation(_reservation(serial, cert, reason), before))

    return scenario


def _rotate(serial: str, cert: str, requester: str, requester_key: str, stale: bool = False) -> Any:
    def scenario(c: Any) -> Any:
        before = c.registry.get_serial(serial)
        if stale:  # read before another rotation moved the serial on
            before = dataclasses.replace(before, certificate_id="c1")
        reservation = _reservation(serial, cert, "rotation", AT + 10)
        return _outcome(
            lambda: c.registry.write_rotation(
                reservation, before, requester=requester, requester_key=requester_key
            )
        )

    return scenario


def _finish(serial: str, keep_new: bool) -> Any:
    def scenario(c: Any) -> Any:
        rotation = c.store.pending(serial)
        if rotation is None:
            return {"pending": None}
        keep = rotation.certificate_id if keep_new else rotation.rotating_from
        done = c.store.finish(rotation, keep=keep, reason="rotated", at_ms=AT + 20)
        return {"pending": dataclasses.asdict(rotation), "finished": done}

    return scenario


def _pending(c: Any) -> Any:
    return [dataclasses.asdict(p) for p in c.store.pending_since(AT + 100)]


SCENARIOS: list[tuple[str, Any]] = [
    ("hook: get_serial, an item", lambda c: _record(c.registry.get_serial("S3"))),
    ("hook: get_serial, no item", lambda c: _record(c.registry.get_serial("S9"))),
    ("hook: get_batch (projection)", lambda c: _record(c.registry.get_batch("B1"))),
    ("hook: get_batch, no item", lambda c: _record(c.registry.get_batch("B9"))),
    ("hook: reserve S1 for c1 (new certificate item)", _reserve("S1", "c1")),
    ("hook: reserve S1 again, stale read: serial changed", _reserve("S1", "c2", _available("S1"))),
    ("hook: reserve S2 for c1: the certificate holds S1", _reserve("S2", "c1")),
    ("hook: reserve a serial with no item", _reserve("S9", "c9", _available("S9"))),
    ("hook: same key moves S1 to c3, retires c1", _reserve("S1", "c3", reason="same_key")),
    ("hook: reserve S2 for c5", _reserve("S2", "c5")),
    ("hook: takeover of S2 by c6, retires c5", _reserve("S2", "c6", reason="takeover")),
    ("hook: get_serial after reservations", lambda c: _record(c.registry.get_serial("S1"))),
    ("hook: rotation of S1 to c4, asked by c3", _rotate("S1", "c4", "c3", KEY_1)),
    ("hook: rotation of S1 to c7, asked by c4 (not current)", _rotate("S1", "c7", "c4", KEY_2)),
    ("hook: rotation read before the serial moved on", _rotate("S1", "c8", "c1", KEY_1, stale=True)),
    ("hook: get_serial during a rotation", lambda c: _record(c.registry.get_serial("S1"))),
    ("retirer: pending rotations (the index)", lambda c: _pending(c)),
    ("retirer: expiring count (scan)", lambda c: c.store.expiring(AT + 10 * 86_400_000)),
    ("retirer: finish S1's rotation, keep the new certificate", _finish("S1", keep_new=True)),
    ("retirer: finish again: no rotation pending", _finish("S1", keep_new=True)),
    ("hook: rotation of S1 to c10, asked by c7", _rotate("S1", "c10", "c7", KEY_2)),
    ("retirer: abandon S1's rotation, keep the old certificate", _finish("S1", keep_new=False)),
    ("retirer: pending rotations after both", lambda c: _pending(c)),
]
