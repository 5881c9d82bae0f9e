"""An in-memory `decision.Registry` with the same atomicity as DynamoDB's transactional writes.

For unit tests, the benchmark and fault injection; the deployed hook uses registry_dynamodb.
"""

from __future__ import annotations

import dataclasses
import threading

from .decision import (
    STATUS_AVAILABLE,
    STATUS_RESERVED,
    BatchRecord,
    Reservation,
    SerialRecord,
    WriteOutcome,
)


class InMemoryRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.serials: dict[str, SerialRecord] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.certificates: dict[str, str] = {}  # certificate id -> IoT status
        self.reservations: dict[str, Reservation] = {}
        self.held: dict[str, str] = {}  # certificate id -> the serial it holds
        self.retired: dict[str, str] = {}  # certificate id -> why its reservation ended
        self.things: dict[str, set[str]] = {}  # thing name -> attached certificate ids

    def add_serial(
        self,
        serial: str,
        *,
        status: str = STATUS_AVAILABLE,
        batch: str | None = None,
        attributes: dict[str, str] | None = None,
        certificate_id: str | None = None,
        reserved_at: int | None = None,
        public_key_sha256: str | None = None,
        reserved_key_sha256: str | None = None,
    ) -> None:
        self.serials[serial] = SerialRecord(
            serial,
            status,
            batch,
            dict(attributes or {}),
            certificate_id,
            reserved_at,
            public_key_sha256,
            reserved_key_sha256,
        )
        if certificate_id is not None:
            self.held[certificate_id] = serial

    def bind_batch(
        self, batch: str, claims: set[str] | frozenset[str] | None = None, *, require_device_key: bool = False
    ) -> None:
        self.batches[batch] = BatchRecord(
            batch, None if claims is None else frozenset(claims), require_device_key
        )

    def get_serial(self, serial: str) -> SerialRecord | None:
        return self.serials.get(serial)

    def get_batch(self, batch: str) -> BatchRecord | None:
        return self.batches.get(batch)

    def certificate_status(self, certificate_id: str) -> str | None:
        return self.certificates.get(certificate_id)

    def claim_is_active(self, certificate_id: str) -> bool:
        return self.certificates.get(certificate_id) == "ACTIVE"

    def write_reservation(self, reservation: Reservation, previous: SerialRecord) -> WriteOutcome:
        with self._lock:
            current = self.serials.get(reservation.serial)
            if current is None or not _unchanged(current, previous):
                return WriteOutcome.SERIAL_CHANGED
            if self.held.get(reservation.certificate_id, reservation.serial) != reservation.serial:
                return WriteOutcome.CERTIFICATE_HOLDS_SERIAL
            fresh = previous.status == STATUS_AVAILABLE  # a new reservation starts with no rotation
            self.serials[reservation.serial] = dataclasses.replace(
                current,
                status=STATUS_RESERVED,
                certificate_id=reservation.certificate_id,
                reserved_at=reservation.reserved_at,
                reserved_key_sha256=reservation.key_sha256,
                **(
                    {"rotating_from": None, "rotating_from_key_sha256": None, "rotation_started_at": None}
                    if fresh
                    else {}
                ),
            )
            self.reservations[reservation.serial] = reservation
            self.held[reservation.certificate_id] = reservation.serial
            if previous.certificate_id and previous.certificate_id != reservation.certificate_id:
                self.retired[previous.certificate_id] = reservation.reason
            return WriteOutcome.WRITTEN

    def deactivate_certificate(self, certificate_id: str) -> None:
        self.certificates[certificate_id] = "INACTIVE"

    def thing_certificates(self, thing_name: str) -> frozenset[str]:
        return frozenset(self.things.get(thing_name, ()))

    def write_rotation(
        self, reservation: Reservation, previous: SerialRecord, *, requester: str, requester_key: str
    ) -> WriteOutcome:
        with self._lock:
            current = self.serials.get(reservation.serial)
            if current is None or current.status != STATUS_RESERVED:
                return WriteOutcome.SERIAL_CHANGED
            if current.certificate_id != previous.certificate_id:
                return WriteOutcome.SERIAL_CHANGED
            if self.held.get(reservation.certificate_id, reservation.serial) != reservation.serial:
                return WriteOutcome.CERTIFICATE_HOLDS_SERIAL
            from_current = requester == previous.certificate_id
            retired = previous.rotating_from if from_current else previous.certificate_id
            self.serials[reservation.serial] = dataclasses.replace(
                current,
                certificate_id=reservation.certificate_id,
                reserved_at=reservation.reserved_at,
                reserved_key_sha256=reservation.key_sha256,
                rotating_from=requester,
                rotating_from_key_sha256=requester_key,
                rotation_started_at=reservation.reserved_at
                if from_current
                else (previous.rotation_started_at or reservation.reserved_at),
            )
            self.reservations[reservation.serial] = reservation
            self.held[reservation.certificate_id] = reservation.serial
            if retired and retired not in (requester, reservation.certificate_id):
                self.retired[retired] = "rotated" if from_current else reservation.reason
            return WriteOutcome.WRITTEN


def _unchanged(current: SerialRecord, previous: SerialRecord) -> bool:
    if previous.status == STATUS_AVAILABLE:
        return current.status == STATUS_AVAILABLE
    return (
        current.status == STATUS_RESERVED
        and current.certificate_id == previous.certificate_id
        and current.reserved_at == previous.reserved_at
    )
