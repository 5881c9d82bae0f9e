"""An in-memory `decision.Registry` with the same atomicity as DynamoDB's conditional writes.

For unit tests, the benchmark and fault injection; the deployed hook uses registry_dynamodb.
"""

from __future__ import annotations

import dataclasses
import threading

from .decision import STATUS_AVAILABLE, STATUS_RESERVED, Reservation, SerialRecord


class InMemoryRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.serials: dict[str, SerialRecord] = {}
        self.batches: dict[str, frozenset[str]] = {}
        self.certificates: dict[str, str] = {}  # certificate id -> IoT status
        self.reservations: dict[str, Reservation] = {}

    def add_serial(
        self,
        serial: str,
        *,
        status: str = STATUS_AVAILABLE,
        batch: str | None = None,
        attributes: dict[str, str] | None = None,
        certificate_id: str | None = None,
        reserved_at: int | None = None,
    ) -> None:
        self.serials[serial] = SerialRecord(
            serial, status, batch, dict(attributes or {}), certificate_id, reserved_at
        )

    def get_serial(self, serial: str) -> SerialRecord | None:
        return self.serials.get(serial)

    def batch_claims(self, batch: str) -> frozenset[str] | None:
        return self.batches.get(batch)

    def reserve(self, reservation: Reservation) -> bool:
        with self._lock:
            current = self.serials.get(reservation.serial)
            if current is None or current.status != STATUS_AVAILABLE:
                return False
            self._store(current, reservation)
            return True

    def take_over(
        self, reservation: Reservation, *, previous_certificate_id: str, previous_reserved_at: int
    ) -> bool:
        with self._lock:
            current = self.serials.get(reservation.serial)
            if (
                current is None
                or current.status != STATUS_RESERVED
                or current.certificate_id != previous_certificate_id
                or current.reserved_at != previous_reserved_at
            ):
                return False
            self._store(current, reservation)
            return True

    def certificate_is_active(self, certificate_id: str) -> bool:
        return self.certificates.get(certificate_id) == "ACTIVE"

    def _store(self, current: SerialRecord, reservation: Reservation) -> None:
        self.serials[reservation.serial] = dataclasses.replace(
            current,
            status=STATUS_RESERVED,
            certificate_id=reservation.certificate_id,
            reserved_at=reservation.reserved_at,
        )
        self.reservations[reservation.serial] = reservation
