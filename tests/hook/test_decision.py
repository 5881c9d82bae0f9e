"""The rules as a pure function: no AWS, an in-memory registry."""

from __future__ import annotations

import re

import pytest
from provisioning_hook.decision import RegistryError, decide
from provisioning_hook.models import HookEvent, Reason
from provisioning_hook.registry_memory import InMemoryRegistry
from provisioning_hook.settings import HookSettings

from .support import CLAIM_ID, OTHER_CLAIM_ID, cert_id, load_event

NOW = 1_800_000_000_000
SETTINGS = HookSettings(
    table_name="t",
    serial_pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"),
    thing_name_prefix="device-",
    reservation_timeout_s=900,
    template_attributes=("model", "hw_rev"),
)


def event(serial: str = "SN-000001", cert: int = 1, claim: str = CLAIM_ID) -> HookEvent:
    return HookEvent.model_validate(
        load_event("register_thing", serial=serial, certificate_id=cert_id(cert), claim_id=claim)
    )


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()


def test_available_serial_is_reserved_with_overrides(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", batch="B1", attributes={"model": "X1", "hw_rev": "3", "colour": "red"})
    decision = decide(event(), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.ALLOWED_NEW and decision.allowed
    # Only the attributes the template declares, plus Batch.
    assert decision.overrides == {"model": "X1", "hw_rev": "3", "Batch": "B1"}
    reservation = registry.reservations["SN-000001"]
    assert (
        reservation.certificate_id,
        reservation.thing_name,
        reservation.claim_certificate_id,
        reservation.client_id,
        reservation.reserved_at,
    ) == (cert_id(1), "device-SN-000001", CLAIM_ID, "prov-SN-000001", NOW)


def test_no_batch_no_attributes_gives_no_overrides(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001")
    decision = decide(event(), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.ALLOWED_NEW and decision.overrides == {}


@pytest.mark.parametrize("serial", ["", "ab", "-leading-dash", "SN 1", "SN-1\n", "x" * 65, "SN/1", "ñandú-1"])
def test_bad_serial(registry: InMemoryRegistry, serial: str) -> None:
    registry.add_serial(serial)  # even if somebody managed to import it
    assert decide(event(serial=serial), SETTINGS, registry, now_ms=NOW).reason is Reason.BAD_SERIAL


def test_serial_making_a_too_long_thing_name_is_bad(registry: InMemoryRegistry) -> None:
    settings = HookSettings(**{**SETTINGS.__dict__, "thing_name_prefix": "p" * 100})
    assert decide(event(serial="S" * 40), settings, registry, now_ms=NOW).reason is Reason.BAD_SERIAL


def test_missing_serial(registry: InMemoryRegistry) -> None:
    parsed = event().model_copy(update={"parameters": {}})
    assert decide(parsed, SETTINGS, registry, now_ms=NOW).reason is Reason.BAD_SERIAL


def test_unknown_and_revoked(registry: InMemoryRegistry) -> None:
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.UNKNOWN_SERIAL
    registry.add_serial("SN-000001", status="REVOKED")
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.REVOKED


def test_batch_binding(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", batch="B1")
    registry.batches["B1"] = frozenset({OTHER_CLAIM_ID})
    denied = decide(event(), SETTINGS, registry, now_ms=NOW)
    assert denied.reason is Reason.CLAIM_NOT_BOUND and denied.overrides == {}
    registry.batches["B1"] = frozenset({OTHER_CLAIM_ID, CLAIM_ID})
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.ALLOWED_NEW


def test_unbound_batch_accepts_any_claim(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", batch="B-without-item")
    assert decide(event(claim=OTHER_CLAIM_ID), SETTINGS, registry, now_ms=NOW).reason is Reason.ALLOWED_NEW


def test_retry_by_same_certificate_is_allowed_again(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", attributes={"model": "X1"})
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.ALLOWED_NEW
    again = decide(event(), SETTINGS, registry, now_ms=NOW + 10 * 3_600_000)
    assert again.reason is Reason.ALLOWED_RETRY and again.overrides == {"model": "X1"}


def test_other_certificate_is_refused_while_fresh(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", status="RESERVED", certificate_id=cert_id(1), reserved_at=NOW - 900_000)
    assert decide(event(cert=2), SETTINGS, registry, now_ms=NOW).reason is Reason.TAKEN


def test_stale_reservation_of_inactive_certificate_is_taken_over(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", status="RESERVED", certificate_id=cert_id(1), reserved_at=NOW - 900_001)
    registry.certificates[cert_id(1)] = "PENDING_ACTIVATION"
    decision = decide(event(cert=2), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.ALLOWED_TAKEOVER
    assert registry.reservations["SN-000001"].certificate_id == cert_id(2)


def test_stale_reservation_of_deleted_certificate_is_taken_over(registry: InMemoryRegistry) -> None:
    registry.add_serial(
        "SN-000001", status="RESERVED", certificate_id=cert_id(1), reserved_at=NOW - 3_600_000
    )
    assert decide(event(cert=2), SETTINGS, registry, now_ms=NOW).reason is Reason.ALLOWED_TAKEOVER


def test_stale_reservation_of_active_certificate_is_refused(registry: InMemoryRegistry) -> None:
    registry.add_serial(
        "SN-000001", status="RESERVED", certificate_id=cert_id(1), reserved_at=NOW - 3_600_000
    )
    registry.certificates[cert_id(1)] = "ACTIVE"
    decision = decide(event(cert=2), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.TAKEN and "ACTIVE" in decision.detail


def test_lost_reserve_race_is_taken_unless_the_winner_is_us(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001")

    class Racing(InMemoryRegistry):
        """Another request reserves between our read and our write."""

        def __init__(self, winner: int) -> None:
            super().__init__()
            self.winner = winner

        def reserve(self, reservation):  # type: ignore[no-untyped-def]
            self.add_serial(
                "SN-000001", status="RESERVED", certificate_id=cert_id(self.winner), reserved_at=NOW
            )
            return False

    for winner, expected in ((9, Reason.TAKEN), (1, Reason.ALLOWED_RETRY)):
        racing = Racing(winner)
        racing.add_serial("SN-000001")
        assert decide(event(cert=1), SETTINGS, racing, now_ms=NOW).reason is expected


def test_registry_error_denies(registry: InMemoryRegistry) -> None:
    class Broken(InMemoryRegistry):
        def get_serial(self, serial):  # type: ignore[no-untyped-def]
            raise RegistryError("dynamodb.get_item: out of time")

    decision = decide(event(), SETTINGS, Broken(), now_ms=NOW)
    assert decision.reason is Reason.REGISTRY_ERROR and not decision.allowed and decision.overrides == {}


def test_unknown_status_denies(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", status="PROVISIONED?")
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.REGISTRY_ERROR
