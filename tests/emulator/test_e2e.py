"""End to end: the real awsiotsdk client (MQTT 3.1.1, mTLS) against `python -m emulator up` built from the
synthesized stack, with the stack's own hook Lambda and serials seeded through boto3 at aws_endpoint_url.

One file over 400 lines: one emulator process serves all these tests (its start is the cost).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import cbor2
import pytest
from awscrt import mqtt
from awsiot import V2ServiceException, iotidentity

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import (
    TIMEOUT_S,
    Endpoint,
    RawClient,
    connect,
    disconnect,
    encode,
    identity_client,
    make_csr,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("emulator-e2e")]

CSR_TOPIC = "$aws/certificates/create-from-csr"


def aws(endpoint: Endpoint, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint.aws_endpoint_url,
        region_name=endpoint.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def new_serial(prefix: str = "SN") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def seed(endpoint: Endpoint, serial: str, **attributes: str) -> None:
    """A serial item as `fleetctl registry import` writes it (docs/registry.md's item model)."""
    item: dict[str, Any] = {
        "pk": {"S": f"serial#{serial}"},
        "serial": {"S": serial},
        "status": {"S": "AVAILABLE"},
        "imported_at": {"S": "2026-01-01T00:00:00Z"},
    }
    if attributes:
        item["attributes"] = {"M": {k: {"S": v} for k, v in attributes.items()}}
    aws(endpoint, "dynamodb").put_item(TableName=endpoint.serial_table, Item=item)


def template_topic(endpoint: Endpoint, fmt: str) -> str:
    return f"$aws/provisioning-templates/{endpoint.template_name}/provision/{fmt}"


def certificate_status(endpoint: Endpoint, certificate_id: str) -> str | None:
    try:
        return aws(endpoint, "iot").describe_certificate(certificateId=certificate_id)[
            "certificateDescription"
        ]["status"]
    except aws(endpoint, "iot").exceptions.ResourceNotFoundException:
        return None


def thing_exists(endpoint: Endpoint, thing_name: str) -> bool:
    names = [t["thingName"] for t in aws(endpoint, "iot").list_things()["things"]]
    return thing_name in names


def provision_json(endpoint: Endpoint, serial: str, client_id: str | None = None) -> tuple[Any, Any, bytes]:
    """(CreateCertificateFromCsr response, RegisterThing response, device key PEM), one claim connection."""
    connection = connect(endpoint, client_id or f"prov-{serial}")
    try:
        client = identity_client(connection)
        key_pem, csr = make_csr(serial)
        created = client.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr)
        ).result(TIMEOUT_S)
        registered = client.register_thing(
            iotidentity.RegisterThingRequest(
                template_name=endpoint.template_name,
                certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": serial},
            )
        ).result(TIMEOUT_S)
        return created, registered, key_pem
    finally:
        disconnect(connection)


def rejection(exc_info: pytest.ExceptionInfo[BaseException]) -> Any:
    assert isinstance(exc_info.value, V2ServiceException), exc_info.value
    return exc_info.value.modeled_error


# ----------------------------------------------------------------------------------- happy paths


def test_json_flow_provisions_and_the_device_reconnects_as_its_thing(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    serial = new_serial()
    seed(endpoint, serial, model="m7", hw_rev="b")
    created, registered, key_pem = provision_json(endpoint, serial)
    assert registered.thing_name == f"device-{serial}"
    assert registered.device_configuration == {"topic_root": "devices", "telemetry_interval_s": "60"}
    assert certificate_status(endpoint, created.certificate_id) == "ACTIVE"
    thing = aws(endpoint, "iot").describe_thing(thingName=registered.thing_name)
    assert thing["attributes"]["model"] == "m7" and thing["attributes"]["hw_rev"] == "b"
    item = aws(endpoint, "dynamodb").get_item(
        TableName=endpoint.serial_table, Key={"pk": {"S": f"serial#{serial}"}}
    )["Item"]
    assert item["status"]["S"] == "RESERVED" and item["certificate_id"]["S"] == created.certificate_id

    device = connect(
        endpoint, registered.thing_name, cert_pem=created.certificate_pem.encode(), key_pem=key_pem
    )
    try:
        raw = RawClient(device)
        raw.subscribe(f"devices/{registered.thing_name}/#")
        raw.publish(f"devices/{registered.thing_name}/telemetry", b'{"t": 1}').result(TIMEOUT_S)
        assert raw.wait_for(1) == [(f"devices/{registered.thing_name}/telemetry", b'{"t": 1}')]
    finally:
        disconnect(device)


def test_cbor_flow_over_the_same_awscrt_connection(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    serial = new_serial("CB")
    seed(endpoint, serial)
    connection = connect(endpoint, f"prov-{serial}")
    try:
        raw = RawClient(connection)
        _, csr = make_csr(serial)
        outcome, created = raw.request(f"{CSR_TOPIC}/cbor", cbor2.dumps({"certificateSigningRequest": csr}))
        assert outcome == "accepted" and set(created) == {
            "certificateOwnershipToken",
            "certificateId",
            "certificatePem",
        }
        outcome, registered = raw.request(
            template_topic(endpoint, "cbor"),
            cbor2.dumps(
                {
                    "certificateOwnershipToken": created["certificateOwnershipToken"],
                    "parameters": {"SerialNumber": serial},
                }
            ),
        )
        assert outcome == "accepted"
        assert registered == {
            "thingName": f"device-{serial}",
            "deviceConfiguration": {"topic_root": "devices", "telemetry_interval_s": "60"},
        }
    finally:
        disconnect(connection)


def test_several_requests_on_one_connection_are_all_answered(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    serial = new_serial()
    seed(endpoint, serial)
    connection = connect(endpoint, f"prov-{serial}")
    try:
        client = identity_client(connection)
        tokens = []
        for _ in range(3):
            created = client.create_certificate_from_csr(
                iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr(serial)[1])
            ).result(TIMEOUT_S)
            tokens.append(created.certificate_ownership_token)
        registered = client.register_thing(
            iotidentity.RegisterThingRequest(
                template_name=endpoint.template_name,
                certificate_ownership_token=tokens[-1],
                parameters={"SerialNumber": serial},
            )
        ).result(TIMEOUT_S)
        assert registered.thing_name == f"device-{serial}"
    finally:
        disconnect(connection)


def test_a_reply_goes_only_to_the_connection_that_asked(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    asker, bystander = connect(endpoint, f"prov-{new_serial()}"), connect(endpoint, f"prov-{new_serial()}")
    try:
        watching = RawClient(bystander)
        for suffix in ("accepted", "rejected"):
            watching.subscribe(f"{CSR_TOPIC}/json/{suffix}")
        outcome, _ = RawClient(asker).request(
            f"{CSR_TOPIC}/json", json.dumps({"certificateSigningRequest": make_csr("x")[1]}).encode()
        )
        assert outcome == "accepted"
        time.sleep(0.5)
        assert watching.messages == []
    finally:
        disconnect(asker)
        disconnect(bystander)


# ----------------------------------------------------------------------------------- refusals


def test_unknown_serial_is_denied_by_the_hook(emulator: EmulatorProcess) -> None:
    with pytest.raises(V2ServiceException) as info:
        provision_json(emulator.endpoint, new_serial("UNKNOWN"))
    error = rejection(info)
    assert (error.status_code, error.error_code) == (403, "AccessDenied")


def test_token_reuse_is_rejected(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    serial = new_serial()
    seed(endpoint, serial)
    connection = connect(endpoint, f"prov-{serial}")
    try:
        client = identity_client(connection)
        created = client.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr(serial)[1])
        ).result(TIMEOUT_S)
        request = iotidentity.RegisterThingRequest(
            template_name=endpoint.template_name,
            certificate_ownership_token=created.certificate_ownership_token,
            parameters={"SerialNumber": serial},
        )
        client.register_thing(request).result(TIMEOUT_S)
        with pytest.raises(V2ServiceException) as info:
            client.register_thing(request).result(TIMEOUT_S)
        error = rejection(info)
        assert (error.status_code, error.error_code) == (400, "InvalidCertificateOwnershipToken")
    finally:
        disconnect(connection)


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_bad_input_is_a_400_and_the_connection_keeps_working(emulator: EmulatorProcess, fmt: str) -> None:
    endpoint = emulator.endpoint
    connection = connect(endpoint, f"prov-{new_serial()}")
    try:
        raw = RawClient(connection)
        bad_inputs = [
            (f"{CSR_TOPIC}/{fmt}", b"\xff{not " + fmt.encode(), "not valid"),
            (
                f"{CSR_TOPIC}/{fmt}",
                encode({"csr": "x"}, fmt),
                "Missing required field: certificateSigningRequest",
            ),
            (f"{CSR_TOPIC}/{fmt}", encode({"certificateSigningRequest": "garbage"}, fmt), "PKCS#10"),
            (f"{CSR_TOPIC}/{fmt}", encode({"certificateSigningRequest": "x" * 140_000}, fmt), "exceeds"),
            (
                template_topic(endpoint, fmt),
                encode({"parameters": {"SerialNumber": "a"}}, fmt),
                "cannot be empty",
            ),
            (
                template_topic(endpoint, fmt),
                encode({"certificateOwnershipToken": "t", "parameters": [1]}, fmt),
                "parameters must be",
            ),
        ]
        for topic, payload, message in bad_inputs:
            outcome, body = raw.request(topic, payload)
            assert outcome == "rejected", (topic, body)
            assert body["statusCode"] == 400 and message in body["errorMessage"], body
        outcome, _ = raw.request(
            f"{CSR_TOPIC}/{fmt}", encode({"certificateSigningRequest": make_csr("x")[1]}, fmt)
        )
        assert outcome == "accepted"
    finally:
        disconnect(connection)


def expect_disconnect(endpoint: Endpoint, action: Any) -> None:
    """AWS IoT closes the connection of a client that publishes where its policy does not allow."""
    interrupted = threading.Event()
    connection = connect(endpoint, f"prov-{new_serial()}", interrupted=interrupted)
    try:
        action(RawClient(connection))
        assert interrupted.wait(TIMEOUT_S), "the broker kept the connection open"
    finally:
        disconnect(connection)


def test_wrong_template_name_is_an_unauthorised_publish(emulator: EmulatorProcess) -> None:
    expect_disconnect(
        emulator.endpoint,
        lambda raw: raw.publish("$aws/provisioning-templates/SomeOtherTemplate/provision/json", b"{}"),
    )


def test_claim_publishing_elsewhere_is_disconnected(emulator: EmulatorProcess) -> None:
    expect_disconnect(emulator.endpoint, lambda raw: raw.publish("devices/device-x/telemetry", b"{}"))


def test_create_keys_and_certificate_needs_the_claim_policy(emulator: EmulatorProcess) -> None:
    # The stack's default claim policy allows only the CSR flow (allow_create_keys_and_certificate false).
    expect_disconnect(emulator.endpoint, lambda raw: raw.publish("$aws/certificates/create/json", b"{}"))


def test_claim_subscribing_to_everything_gets_a_suback_failure(emulator: EmulatorProcess) -> None:
    interrupted = threading.Event()
    connection = connect(emulator.endpoint, f"prov-{new_serial()}", interrupted=interrupted)
    try:
        raw = RawClient(connection)
        with pytest.raises(mqtt.SubscribeError):
            raw.subscribe("#")
        assert raw.subscribe(f"{CSR_TOPIC}/json/accepted") == mqtt.QoS.AT_LEAST_ONCE  # still connected
        assert not interrupted.is_set()
    finally:
        disconnect(connection)


def test_claim_connect_outside_the_client_id_pattern_is_refused(emulator: EmulatorProcess) -> None:
    with pytest.raises(Exception):  # noqa: B017 - awscrt reports the hang-up as its own error type
        connect(emulator.endpoint, "not-a-claim-client")


def test_inactive_claim_cannot_connect(emulator: EmulatorProcess) -> None:
    inactive = emulator.raw["claims"]["line-b"]
    assert inactive["active"] is False
    assert certificate_status(emulator.endpoint, inactive["certificate_id"]) == "INACTIVE"
    with pytest.raises(Exception):  # noqa: B017
        connect(emulator.endpoint, "prov-x", inactive["cert_file"], inactive["key_file"])


def test_provisioned_device_cannot_connect_under_another_client_id(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    serial = new_serial()
    seed(endpoint, serial)
    created, registered, key_pem = provision_json(endpoint, serial)
    for client_id in (f"device-{new_serial()}", f"prov-{serial}"):
        with pytest.raises(Exception):  # noqa: B017
            connect(endpoint, client_id, cert_pem=created.certificate_pem.encode(), key_pem=key_pem)
    device = connect(
        endpoint, registered.thing_name, cert_pem=created.certificate_pem.encode(), key_pem=key_pem
    )
    disconnect(device)


def test_endpoint_file_and_registry_api(emulator: EmulatorProcess) -> None:
    raw = emulator.raw
    assert raw["claim_client_id_pattern"] == "prov-*" and raw["thing_name_prefix"] == "device-"
    assert raw["claim_cert_file"] == raw["claims"]["line-a"]["cert_file"]
    iot = aws(emulator.endpoint, "iot")
    policies = {p["policyName"] for p in iot.list_policies()["policies"]}
    assert {"FleetProvisioning-DevicePolicy", "FleetProvisioning-ClaimPolicy"} <= policies
    claim_arn = (
        f"arn:aws:iot:{raw['region']}:{raw['account_id']}:cert/{raw['claims']['line-a']['certificate_id']}"
    )
    attached = iot.list_attached_policies(target=claim_arn)["policies"]
    assert [p["policyName"] for p in attached] == ["FleetProvisioning-ClaimPolicy"]
    log = emulator.log()
    assert "not emulated:" in log and "AWS::CloudWatch::Alarm" in log


# ----------------------------------------------------------------------------------- faults


def csr_then_register(endpoint: Endpoint, serial: str, pause_s: float = 0.0) -> tuple[str, Any]:
    """(certificate id, RegisterThing outcome: the response or the V2ServiceException)."""
    connection = connect(endpoint, f"prov-{serial}")
    try:
        client = identity_client(connection)
        created = client.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr(serial)[1])
        ).result(TIMEOUT_S)
        time.sleep(pause_s)
        try:
            return created.certificate_id, client.register_thing(
                iotidentity.RegisterThingRequest(
                    template_name=endpoint.template_name,
                    certificate_ownership_token=created.certificate_ownership_token,
                    parameters={"SerialNumber": serial},
                )
            ).result(TIMEOUT_S)
        except V2ServiceException as exc:
            return created.certificate_id, exc
    finally:
        disconnect(connection)


@pytest.mark.parametrize("fault", ["RAISE", "SLEEP", "DENY"])
def test_a_failing_hook_is_a_rejection_that_leaves_nothing_behind(
    fault_emulator: EmulatorProcess, fault: str
) -> None:
    endpoint = fault_emulator.endpoint
    serial = new_serial(fault)
    started = time.monotonic()
    certificate_id, outcome = csr_then_register(endpoint, serial)
    assert isinstance(outcome, V2ServiceException)
    assert (outcome.modeled_error.status_code, outcome.modeled_error.error_code) == (403, "AccessDenied")
    if fault == "SLEEP":
        assert 4.5 < time.monotonic() - started < 7.5  # AWS's 5 s limit, not the hook's 6 s
    assert not thing_exists(endpoint, f"device-{serial}")
    assert certificate_status(endpoint, certificate_id) in ("PENDING_ACTIVATION", None)


def test_the_fault_hook_allows_other_serials(fault_emulator: EmulatorProcess) -> None:
    serial = new_serial("OK")
    certificate_id, outcome = csr_then_register(fault_emulator.endpoint, serial)
    assert outcome.thing_name == f"device-{serial}"
    assert certificate_status(fault_emulator.endpoint, certificate_id) == "ACTIVE"


def test_an_expired_token_is_rejected_and_its_certificate_deleted(fault_emulator: EmulatorProcess) -> None:
    endpoint = fault_emulator.endpoint
    certificate_id, outcome = csr_then_register(endpoint, new_serial("OK"), pause_s=2.5)
    assert isinstance(outcome, V2ServiceException)
    assert outcome.modeled_error.error_code == "InvalidCertificateOwnershipToken"
    deadline = time.monotonic() + 5
    while certificate_status(endpoint, certificate_id) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert certificate_status(endpoint, certificate_id) is None


def children_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def provision_one_and_read_its_reservation(endpoint: Endpoint, prefix: str) -> None:
    """A known serial provisions and its item reads back RESERVED for its thing through the one AWS
    endpoint; an unknown serial is denied."""
    serial = new_serial(prefix)
    seed(endpoint, serial)
    _, registered, _ = provision_json(endpoint, serial)
    assert registered.thing_name == f"device-{serial}"
    item = aws(endpoint, "dynamodb").get_item(
        TableName=endpoint.serial_table, Key={"pk": {"S": f"serial#{serial}"}}
    )["Item"]
    assert item["status"]["S"] == "RESERVED"
    assert item["thing_name"]["S"] == registered.thing_name
    with pytest.raises(V2ServiceException):
        provision_json(endpoint, new_serial("UNKNOWN"))


def test_hook_lambda_in_the_hook_process_and_clean_shutdown(cloud_assembly: Any, tmp_path: Any) -> None:
    """`--hook-isolation process` (the Python API's default) runs the same Lambda in the hook process,
    with the serial table there: the reservation the hook wrote is read back through the emulator's
    one AWS endpoint. SIGTERM ends the emulator and its hook process, and removes endpoint.json."""
    process = EmulatorProcess(cloud_assembly, tmp_path / "state", "--hook-isolation", "process")
    try:
        provision_one_and_read_its_reservation(process.endpoint, "PROC")
        children = children_of(process.process.pid)
        assert children, "no hook process under the emulator"
    finally:
        assert process.stop() == 0
    assert not (tmp_path / "state" / "endpoint.json").exists()
    assert "stopped" in process.log()
    assert "hook process" in process.log()
    for child in children:  # the hook process ended with the emulator
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        status = Path(f"/proc/{child}/status")
        assert not status.exists() or "zombie" in status.read_text(), (
            f"hook process {child} outlived the emulator"
        )


def test_hook_lambda_on_the_emulators_threads(cloud_assembly: Any, tmp_path: Any) -> None:
    """`--hook-isolation thread`: the same Lambda on the emulator's own threads, the serial table in
    the emulator's moto, no child process."""
    process = EmulatorProcess(cloud_assembly, tmp_path / "state", "--hook-isolation", "thread")
    try:
        assert not children_of(process.process.pid)
        provision_one_and_read_its_reservation(process.endpoint, "THRD")
    finally:
        assert process.stop() == 0
    assert "(in-process)" in process.log()


def test_a_register_thing_waiting_for_its_hook_holds_up_no_other_device(
    cloud_assembly: Any, tmp_path: Any
) -> None:
    """RegisterThing waits for its hook on a pool of its own. With room for one at a time
    (`--service-workers 1`) and that one in a hook that sleeps past AWS's 5 s, another device still
    connects and gets its certificate while the first is waiting; the first then gets its one reply."""
    process = EmulatorProcess(
        cloud_assembly,
        tmp_path / "state",
        "--hook",
        "tests.emulator.fault_hooks:hook",
        "--service-workers",
        "1",
    )
    endpoint = process.endpoint
    waiting = connect(endpoint, "prov-SLEEPpool")
    try:
        client = identity_client(waiting)
        created = client.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr("SLEEPpool")[1])
        ).result(TIMEOUT_S)
        stuck = client.register_thing(
            iotidentity.RegisterThingRequest(
                template_name=endpoint.template_name,
                certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": "SLEEPpool"},
            )
        )
        deadline = time.monotonic() + 5
        while "SLEEPpool" not in process.log() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the emulator has the request (its log names the client)
        other = connect(endpoint, "prov-OTHERpool")  # CONNECT admission: its own pool
        try:
            other_client = identity_client(other)  # kept: a collected client shuts its requests down
            other_client.create_certificate_from_csr(
                iotidentity.CreateCertificateFromCsrRequest(
                    certificate_signing_request=make_csr("OTHERpool")[1]
                )
            ).result(TIMEOUT_S)
            assert not stuck.done(), "the other device was served only after the hook's wait ended"
        finally:
            disconnect(other)
        with pytest.raises(V2ServiceException) as refused:
            stuck.result(TIMEOUT_S)
        assert refused.value.modeled_error.error_code == "AccessDenied"
    finally:
        disconnect(waiting)
        process.stop()
