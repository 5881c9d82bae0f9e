"""Every rule through the Lambda handler against moto: the answer, the log line's reason, the metrics."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .support import (
    CLAIM_ID,
    OTHER_CLAIM_ID,
    cert_id,
    decision_log,
    device_certificate_pem,
    get_certificate_item,
    get_serial_item,
    key_sha256,
    load_event,
    metric_lines,
    put_batch,
    put_serial,
    register_claim,
    run_hook,
)

DENY = {"allowProvisioning": False, "parameterOverrides": {}}


def invoke(event: Any, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    response, out = run_hook(event, capsys)
    logs = decision_log(out)
    assert len(logs) == 1, out  # exactly one structured line per decision
    return response, logs[0]


def test_new_serial_is_reserved(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", batch="B1", attributes={"model": "X1", "hw_rev": "3", "colour": "red"})
    before = int(time.time() * 1000)
    response, log = invoke(load_event("register_thing", certificate_id=cert_id(1)), capsys)
    assert response == {
        "allowProvisioning": True,
        "parameterOverrides": {"model": "X1", "hw_rev": "3", "Batch": "B1"},
    }
    assert (log["decision"], log["reason"], log["serial"]) == ("allow", "ALLOWED_NEW", "SN-000001")
    item = get_serial_item(dynamodb, "SN-000001")
    assert item is not None
    assert item["status"]["S"] == "RESERVED"
    assert item["certificate_id"]["S"] == cert_id(1)
    assert item["thing_name"]["S"] == "device-SN-000001"
    assert item["claim_certificate_id"]["S"] == CLAIM_ID
    assert item["client_id"]["S"] == "prov-SN-000001"
    assert before <= int(item["reserved_at"]["N"]) <= int(time.time() * 1000)
    assert item["imported_at"]["S"] == "2026-01-01T00:00:00+00:00"  # untouched


def test_log_and_metrics_carry_no_certificate(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001")
    event = load_event("register_thing")
    _, out = run_hook(event, capsys)
    assert "BEGIN CERTIFICATE" not in out and event["certificatePem"].splitlines()[1] not in out
    metrics = {m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: m for m in metric_lines(out)}
    assert set(metrics) == {"HookDecisions", "HookAllowed", "ProvisioningAllowedByClaim"}
    decisions = metrics["HookDecisions"]
    assert decisions["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FleetProvisioningTest"
    assert decisions["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "Decision", "Reason"]]
    assert (decisions["service"], decisions["Decision"], decisions["Reason"]) == (
        "provisioning-hook",
        "allow",
        "ALLOWED_NEW",
    )
    assert metrics["ProvisioningAllowedByClaim"]["ClaimCertificateId"] == CLAIM_ID
    assert metrics["HookAllowed"]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_denial_metrics(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run_hook(load_event("register_thing"), capsys)
    metrics = {m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: m for m in metric_lines(out)}
    assert set(metrics) == {"HookDecisions", "HookDenied"}
    assert (metrics["HookDecisions"]["Decision"], metrics["HookDecisions"]["Reason"]) == (
        "deny",
        "UNKNOWN_SERIAL",
    )


@pytest.mark.parametrize(
    ("event_name", "reason"),
    [
        ("malformed_missing_certificate_id", "MALFORMED_EVENT"),
        ("malformed_parameters_not_map", "MALFORMED_EVENT"),
        ("malformed_serial_number_not_string", "MALFORMED_EVENT"),
        ("bad_serial_trailing_newline", "BAD_SERIAL"),
        ("bad_serial_missing", "BAD_SERIAL"),
    ],
)
def test_malformed_events_are_denied(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], event_name: str, reason: str
) -> None:
    put_serial(dynamodb, "SN-000001")
    response, log = invoke(load_event(event_name), capsys)
    assert response == DENY and log["reason"] == reason
    assert get_serial_item(dynamodb, "SN-000001")["status"]["S"] == "AVAILABLE"  # type: ignore[index]


@pytest.mark.parametrize("raw", [None, [], "event", 42, {}, {"parameters": {"SerialNumber": "SN-000001"}}])
def test_non_events_are_denied(dynamodb: Any, capsys: pytest.CaptureFixture[str], raw: Any) -> None:
    response, log = invoke(raw, capsys)
    assert response == DENY and log["reason"] == "MALFORMED_EVENT"


def test_unknown_serial(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "UNKNOWN_SERIAL"
    assert get_serial_item(dynamodb, "SN-000001") is None  # the conditional write never creates an item


def test_revoked_serial(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", status="REVOKED")
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "REVOKED"


def test_claim_not_bound_to_the_batch(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", batch="B1")
    put_batch(dynamodb, "B1", [OTHER_CLAIM_ID])
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "CLAIM_NOT_BOUND"
    put_batch(dynamodb, "B1", [OTHER_CLAIM_ID, CLAIM_ID])
    response, log = invoke(load_event("register_thing"), capsys)
    assert response["allowProvisioning"] is True and log["reason"] == "ALLOWED_NEW"
    assert response["parameterOverrides"] == {"Batch": "B1"}


def test_batch_without_batch_item_accepts_any_claim(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(dynamodb, "SN-000001", batch="B2")
    response, log = invoke(load_event("register_thing", claim_id=OTHER_CLAIM_ID), capsys)
    assert response["allowProvisioning"] is True and log["reason"] == "ALLOWED_NEW"


def test_retry_with_same_certificate(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", attributes={"model": "X1"})
    first, _ = invoke(load_event("register_thing", certificate_id=cert_id(7)), capsys)
    again, log = invoke(load_event("register_thing", certificate_id=cert_id(7)), capsys)
    assert first == again == {"allowProvisioning": True, "parameterOverrides": {"model": "X1"}}
    assert log["reason"] == "ALLOWED_RETRY"
    other, log = invoke(load_event("register_thing", certificate_id=cert_id(8)), capsys)
    assert other == DENY and log["reason"] == "TAKEN"
    assert get_serial_item(dynamodb, "SN-000001")["certificate_id"]["S"] == cert_id(7)  # type: ignore[index]


def test_rx_device_event(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    serial = "FPDemoID_0A1B2C3D_00000000_11111111_22222222"
    put_serial(dynamodb, serial)
    response, log = invoke(load_event("register_thing_rx_cbor"), capsys)
    assert response["allowProvisioning"] is True and log["serial"] == serial, log


def test_missing_configuration_denies(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_serial(dynamodb, "SN-000001")
    monkeypatch.delenv("SERIAL_TABLE_NAME")
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "CONFIG_ERROR"


def test_missing_table_denies(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERIAL_TABLE_NAME", "no-such-table")
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "REGISTRY_ERROR"
    assert "ResourceNotFoundException" in log["detail"]


def test_reservation_records_the_key_and_the_certificate_history(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(dynamodb, "SN-000001")
    invoke(load_event("register_thing", certificate_id=cert_id(1), key="device"), capsys)
    item = get_serial_item(dynamodb, "SN-000001")
    assert item is not None and item["reserved_key_sha256"]["S"] == key_sha256("device")
    assert item["certificate_ids"]["SS"] == [cert_id(1)]
    held = get_certificate_item(dynamodb, cert_id(1))
    assert held is not None
    assert (held["serial"]["S"], held["issued_reason"]["S"], held["claim_certificate_id"]["S"]) == (
        "SN-000001",
        "provisioned",
        CLAIM_ID,
    )
    assert held["key_sha256"]["S"] == key_sha256("device") and "retired_at" not in held


def test_attestation_against_moto(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", public_key_sha256=key_sha256("factory"))
    response, log = invoke(load_event("register_thing", certificate_id=cert_id(1), key="copy"), capsys)
    assert response == DENY and log["reason"] == "KEY_MISMATCH"
    assert get_serial_item(dynamodb, "SN-000001")["status"]["S"] == "AVAILABLE"  # type: ignore[index]
    response, log = invoke(load_event("register_thing", certificate_id=cert_id(2), key="factory"), capsys)
    assert response["allowProvisioning"] is True and log["reason"] == "ALLOWED_NEW"


def test_batch_that_requires_a_device_key(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    put_serial(dynamodb, "SN-000001", batch="B1")
    put_batch(dynamodb, "B1", None, require_device_key=True)
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and (log["reason"], log["detail"]) == (
        "KEY_REQUIRED",
        "batch B1 requires a device key",
    )


def test_stack_that_requires_a_device_key(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUIRE_DEVICE_KEY", "true")
    put_serial(dynamodb, "SN-000001")
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "KEY_REQUIRED"


def test_cn_must_match_unless_configured_off(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_serial(dynamodb, "SN-000010")
    event = load_event("register_thing", serial="SN-000010", common_name="SN-000001")
    response, log = invoke(event, capsys)
    assert response == DENY and log["reason"] == "CN_MISMATCH"
    monkeypatch.setenv("REQUIRE_CN_MATCH", "false")
    response, log = invoke(event, capsys)
    assert response["allowProvisioning"] is True


def test_a_device_parameter_the_registry_owns_is_denied(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(dynamodb, "SN-000001", attributes={"model": "X1"})
    event = load_event("register_thing")
    event["parameters"]["model"] = "bad value!"
    response, log = invoke(event, capsys)
    assert response == DENY and log["reason"] == "UNEXPECTED_PARAMETER" and "model" in log["detail"]
    assert get_serial_item(dynamodb, "SN-000001")["status"]["S"] == "AVAILABLE"  # type: ignore[index]


def test_a_deactivated_claim_provisions_nothing(
    dynamodb: Any, iot: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioning_hook import registry_dynamodb

    put_serial(dynamodb, "SN-000001")
    iot.update_certificate(certificateId=CLAIM_ID, newStatus="INACTIVE")
    registry_dynamodb.reset_clients()  # no ACTIVE status cached from an earlier test
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "CLAIM_INACTIVE"
    response, log = invoke(load_event("register_thing", claim_id="d" * 64), capsys)  # unknown to IoT
    assert response == DENY and log["reason"] == "CLAIM_INACTIVE"


def test_claim_status_is_cached_only_while_active(
    dynamodb: Any, iot: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioning_hook import registry_dynamodb

    put_serial(dynamodb, "SN-000001")
    put_serial(dynamodb, "SN-000002")
    assert invoke(load_event("register_thing"), capsys)[0]["allowProvisioning"] is True
    iot.update_certificate(certificateId=CLAIM_ID, newStatus="INACTIVE")
    # Within the cache's life the claim still counts as ACTIVE (AWS IoT has closed its connections)...
    assert (
        invoke(load_event("register_thing", serial="SN-000002", certificate_id=cert_id(2)), capsys)[1][
            "reason"
        ]
        == "ALLOWED_NEW"
    )
    # ... and once it has passed, it does not.
    monkeypatch.setattr(registry_dynamodb, "CLAIM_STATUS_TTL_S", 0.0)
    registry_dynamodb._active_claims.clear()
    put_serial(dynamodb, "SN-000003")
    assert (
        invoke(load_event("register_thing", serial="SN-000003", certificate_id=cert_id(3)), capsys)[1][
            "reason"
        ]
        == "CLAIM_INACTIVE"
    )
    iot.update_certificate(certificateId=CLAIM_ID, newStatus="ACTIVE")
    assert (
        invoke(load_event("register_thing", serial="SN-000003", certificate_id=cert_id(3)), capsys)[1][
            "reason"
        ]
        == "ALLOWED_NEW"
    )


def test_same_key_after_a_lost_reply_retires_the_old_certificate(
    dynamodb: Any, iot: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """RegisterThing applied (the certificate ACTIVE), its reply lost; the device asks again with a new
    certificate of the same key: allowed, and the first certificate is deactivated."""
    put_serial(dynamodb, "SN-000001", attributes={"model": "X1"})
    first_pem = device_certificate_pem("SN-000001", "device")
    first = iot.register_certificate_without_ca(certificatePem=first_pem, status="ACTIVE")["certificateId"]
    event = load_event("register_thing", certificate_id=first, key="device")
    assert invoke(event, capsys)[1]["reason"] == "ALLOWED_NEW"
    again, log = invoke(load_event("register_thing", certificate_id=cert_id(2), key="device"), capsys)
    assert again == {"allowProvisioning": True, "parameterOverrides": {"model": "X1"}}
    assert log["reason"] == "ALLOWED_SAME_KEY" and "deactivated" in log["detail"], log
    assert iot.describe_certificate(certificateId=first)["certificateDescription"]["status"] == "INACTIVE"
    item = get_serial_item(dynamodb, "SN-000001")
    assert item is not None and item["certificate_id"]["S"] == cert_id(2)
    assert set(item["certificate_ids"]["SS"]) == {first, cert_id(2)}
    retired = get_certificate_item(dynamodb, first)
    assert retired is not None and retired["retired_reason"]["S"] == "superseded_same_key"
    # A clone with another key is still refused, however often the genuine device re-provisions.
    clone, log = invoke(load_event("register_thing", certificate_id=cert_id(3), key="clone"), capsys)
    assert clone == DENY and log["reason"] == "TAKEN"


def test_one_certificate_cannot_lock_a_second_serial(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for serial in ("SN-000001", "SN-000002"):
        put_serial(dynamodb, serial)
    assert invoke(load_event("register_thing", certificate_id=cert_id(1)), capsys)[0]["allowProvisioning"]
    response, log = invoke(
        load_event("register_thing", serial="SN-000002", certificate_id=cert_id(1), common_name="SN-000002"),
        capsys,
    )
    assert response == DENY and log["reason"] == "CERTIFICATE_HOLDS_SERIAL"
    assert get_serial_item(dynamodb, "SN-000002")["status"]["S"] == "AVAILABLE"  # type: ignore[index]


def test_malformed_fingerprint_in_the_registry_denies(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_serial(dynamodb, "SN-000001", public_key_sha256="ABC")
    response, log = invoke(load_event("register_thing"), capsys)
    assert response == DENY and log["reason"] == "REGISTRY_ERROR" and "public_key_sha256" in log["detail"]


def test_claim_registration_helper_files_the_claim_under_its_id(iot: Any) -> None:
    assert register_claim(iot, "e" * 64, status="INACTIVE") == "e" * 64
    assert iot.describe_certificate(certificateId="e" * 64)["certificateDescription"]["status"] == "INACTIVE"
