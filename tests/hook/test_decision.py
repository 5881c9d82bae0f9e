"""The rules as a pure function: no AWS, an in-memory registry."""

from __future__ import annotations

import re

import pytest
from provisioning_hook.decision import RegistryError, decide
from provisioning_hook.models import HookEvent, Reason
from provisioning_hook.registry_memory import InMemoryRegistry
from provisioning_hook.settings import HookSettings

from .support import CLAIM_ID, OTHER_CLAIM_ID, cert_id, key_sha256, load_event

NOW = 1_800_000_000_000
SETTINGS = HookSettings(
    table_name="t",
    serial_pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"),
    thing_name_prefix="device-",
    reservation_timeout_s=900,
    template_attributes=("model", "hw_rev"),
)


def event(
    serial: str = "SN-000001",
    cert: int = 1,
    claim: str = CLAIM_ID,
    *,
    key: str | None = None,
    common_name: str | None = None,
    parameters: dict[str, str] | None = None,
) -> HookEvent:
    raw = load_event(
        "register_thing",
        serial=serial,
        certificate_id=cert_id(cert),
        claim_id=claim,
        key=key,
        common_name=common_name,
    )
    if parameters is not None:
        raw["parameters"] = {**raw["parameters"], **parameters}
    return HookEvent.model_validate(raw)


@pytest.fixture
def registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    registry.certificates[CLAIM_ID] = "ACTIVE"
    registry.certificates[OTHER_CLAIM_ID] = "ACTIVE"
    return registry


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
    registry.bind_batch("B1", {OTHER_CLAIM_ID})
    denied = decide(event(), SETTINGS, registry, now_ms=NOW)
    assert denied.reason is Reason.CLAIM_NOT_BOUND and denied.overrides == {}
    registry.bind_batch("B1", {OTHER_CLAIM_ID, CLAIM_ID})
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


def test_lost_reserve_race_is_taken_unless_the_winner_is_us() -> None:
    class Racing(InMemoryRegistry):
        """Another request reserves between our read and our write."""

        def __init__(self, winner: int) -> None:
            super().__init__()
            self.winner = winner
            self.certificates[CLAIM_ID] = "ACTIVE"

        def write_reservation(self, reservation, previous):  # type: ignore[no-untyped-def]
            self.add_serial(
                "SN-000001", status="RESERVED", certificate_id=cert_id(self.winner), reserved_at=NOW
            )
            return super().write_reservation(reservation, previous)

    for winner, expected in ((9, Reason.TAKEN), (1, Reason.ALLOWED_RETRY)):
        racing = Racing(winner)
        racing.add_serial("SN-000001")
        assert decide(event(cert=1), SETTINGS, racing, now_ms=NOW).reason is expected


def test_registry_error_denies(registry: InMemoryRegistry) -> None:
    class Broken(InMemoryRegistry):
        def get_serial(self, serial):  # type: ignore[no-untyped-def]
            raise RegistryError("dynamodb.get_item: out of time")

    broken = Broken()
    broken.certificates[CLAIM_ID] = "ACTIVE"
    decision = decide(event(), SETTINGS, broken, now_ms=NOW)
    assert decision.reason is Reason.REGISTRY_ERROR and not decision.allowed and decision.overrides == {}


def test_unknown_status_denies(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", status="PROVISIONED?")
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.REGISTRY_ERROR


# -- the device chooses only its serial ------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        {"model": "bad value!"},  # a template parameter the registry owns
        {"Batch": "B-other"},
        {"hw_rev": "9"},
        {"Colour": "red"},  # not a template parameter at all
        {"AWS::IoT::Certificate::Id": cert_id(7)},  # naming another certificate
    ],
)
def test_a_parameter_the_device_may_not_set_is_denied_before_anything_is_reserved(
    registry: InMemoryRegistry, parameters: dict[str, str]
) -> None:
    registry.add_serial("SN-000001", attributes={"model": "X1"})
    decision = decide(event(parameters=parameters), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.UNEXPECTED_PARAMETER and not decision.allowed
    assert registry.serials["SN-000001"].status == "AVAILABLE" and not registry.held


def test_the_device_may_name_its_own_certificate(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001")
    own = event(parameters={"AWS::IoT::Certificate::Id": cert_id(1)})
    assert decide(own, SETTINGS, registry, now_ms=NOW).reason is Reason.ALLOWED_NEW


def test_registry_values_that_would_fail_the_template_deny_before_reserving(
    registry: InMemoryRegistry,
) -> None:
    registry.add_serial("SN-000001", attributes={"model": "bad value!"})
    decision = decide(event(), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.REGISTRY_ERROR and "model" in decision.detail
    assert registry.serials["SN-000001"].status == "AVAILABLE"
    registry.add_serial("SN-000001", batch="B 1")
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.REGISTRY_ERROR


def test_a_serial_making_an_invalid_thing_name_is_bad(registry: InMemoryRegistry) -> None:
    settings = HookSettings(**{**SETTINGS.__dict__, "serial_pattern": re.compile(r"^SN\.[0-9]+$")})
    registry.add_serial("SN.123")
    assert decide(event(serial="SN.123"), settings, registry, now_ms=NOW).reason is Reason.BAD_SERIAL


# -- the certificate: its CN and its key -------------------------------------------------------------


def test_cn_must_be_the_serial(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000010")
    impostor = event(serial="SN-000010", common_name="SN-000001")
    decision = decide(impostor, SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.CN_MISMATCH and "SN-000001" in decision.detail
    relaxed = HookSettings(**{**SETTINGS.__dict__, "require_cn_match": False})
    assert decide(impostor, relaxed, registry, now_ms=NOW).reason is Reason.ALLOWED_NEW


def test_key_must_match_the_factory_fingerprint(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", public_key_sha256=key_sha256("factory-key"))
    copy = decide(event(key="attacker-key"), SETTINGS, registry, now_ms=NOW)
    assert copy.reason is Reason.KEY_MISMATCH and registry.serials["SN-000001"].status == "AVAILABLE"
    genuine = decide(event(cert=2, key="factory-key"), SETTINGS, registry, now_ms=NOW)
    assert genuine.reason is Reason.ALLOWED_NEW


def test_key_required_by_the_stack_or_the_batch(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001", batch="B1")
    strict = HookSettings(**{**SETTINGS.__dict__, "require_device_key": True})
    assert decide(event(), strict, registry, now_ms=NOW).reason is Reason.KEY_REQUIRED
    registry.bind_batch("B1", require_device_key=True)  # bound to no claim, but strict on keys
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.KEY_REQUIRED
    registry.add_serial("SN-000001", batch="B1", public_key_sha256=key_sha256(cert_id(1)))
    assert decide(event(), strict, registry, now_ms=NOW).reason is Reason.ALLOWED_NEW


def test_malformed_certificate_is_a_malformed_event(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001")
    broken = event().model_copy(update={"certificate_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n"})
    assert decide(broken, SETTINGS, registry, now_ms=NOW).reason is Reason.MALFORMED_EVENT
    missing = event().model_copy(update={"certificate_pem": None})
    assert decide(missing, SETTINGS, registry, now_ms=NOW).reason is Reason.MALFORMED_EVENT


# -- one certificate, one serial -----------------------------------------------------------------------


def test_a_certificate_holding_a_serial_cannot_reserve_another(registry: InMemoryRegistry) -> None:
    for n in range(1, 7):
        registry.add_serial(f"SN-00000{n}")
    assert decide(event(serial="SN-000001", key="k"), SETTINGS, registry, now_ms=NOW).allowed
    for n in range(2, 7):
        second = decide(event(serial=f"SN-00000{n}", key="k"), SETTINGS, registry, now_ms=NOW)
        assert second.reason is Reason.CERTIFICATE_HOLDS_SERIAL
        assert registry.serials[f"SN-00000{n}"].status == "AVAILABLE"


# -- the claim ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED", None])
def test_a_claim_that_is_not_active_provisions_nothing(
    registry: InMemoryRegistry, status: str | None
) -> None:
    registry.add_serial("SN-000001")
    if status is None:
        del registry.certificates[CLAIM_ID]
    else:
        registry.certificates[CLAIM_ID] = status
    assert decide(event(), SETTINGS, registry, now_ms=NOW).reason is Reason.CLAIM_INACTIVE


# -- the same device again: a lost reply ----------------------------------------------------------


def test_same_key_new_certificate_takes_the_reservation_and_retires_the_old(
    registry: InMemoryRegistry,
) -> None:
    registry.add_serial("SN-000001", attributes={"model": "X1"})
    assert decide(event(cert=1, key="device"), SETTINGS, registry, now_ms=NOW).allowed
    registry.certificates[cert_id(1)] = "ACTIVE"  # the template applied it; the reply was lost
    again = decide(event(cert=2, key="device"), SETTINGS, registry, now_ms=NOW + 1000)
    assert again.reason is Reason.ALLOWED_SAME_KEY and again.overrides == {"model": "X1"}
    assert registry.serials["SN-000001"].certificate_id == cert_id(2)
    assert registry.certificates[cert_id(1)] == "INACTIVE"
    assert registry.retired[cert_id(1)] == "same_key"


def test_same_key_while_the_old_certificate_is_pending(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001")
    assert decide(event(cert=1, key="device"), SETTINGS, registry, now_ms=NOW).allowed
    registry.certificates[cert_id(1)] = "PENDING_ACTIVATION"
    again = decide(event(cert=2, key="device"), SETTINGS, registry, now_ms=NOW + 1000)
    assert again.reason is Reason.ALLOWED_SAME_KEY
    assert registry.certificates[cert_id(1)] == "PENDING_ACTIVATION"  # nothing to deactivate


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_same_key_cannot_undo_an_operator(registry: InMemoryRegistry, status: str) -> None:
    registry.add_serial("SN-000001")
    assert decide(event(cert=1, key="device"), SETTINGS, registry, now_ms=NOW).allowed
    registry.certificates[cert_id(1)] = status
    denied = decide(event(cert=2, key="device"), SETTINGS, registry, now_ms=NOW + 1000)
    assert denied.reason is Reason.TAKEN and status in denied.detail


def test_another_key_is_not_the_same_device(registry: InMemoryRegistry) -> None:
    registry.add_serial("SN-000001")
    assert decide(event(cert=1, key="device"), SETTINGS, registry, now_ms=NOW).allowed
    registry.certificates[cert_id(1)] = "ACTIVE"
    assert decide(event(cert=2, key="clone"), SETTINGS, registry, now_ms=NOW + 1000).reason is Reason.TAKEN


# -- stale reservations: never when an operator acted ---------------------------------------------------


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED", "ACTIVE"])
def test_a_stale_reservation_is_not_taken_from_a_certificate_that_became_anything(
    registry: InMemoryRegistry, status: str
) -> None:
    registry.add_serial("SN-000001", status="RESERVED", certificate_id=cert_id(1), reserved_at=NOW - 10**8)
    registry.certificates[cert_id(1)] = status
    decision = decide(event(cert=2), SETTINGS, registry, now_ms=NOW)
    assert decision.reason is Reason.TAKEN and status in decision.detail
