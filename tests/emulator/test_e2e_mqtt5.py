"""End to end over MQTT 5: the real awsiotsdk MQTT 5 client and `IotIdentityClientV2` against
`python -m emulator up`, driven as the SDK's fleet-provisioning samples drive it, JSON and CBOR, the CSR
and the keys flows, and AWS IoT's refusals with their MQTT 5 reason codes. The deprecated samples' ways
(MQTT 3.1.1 and MQTT 5 with the V1 identity client, port 443 with ALPN) are here too."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import cbor2
import pytest
from awscrt import mqtt, mqtt5
from awsiot import V2ServiceException, iotidentity, mqtt_connection_builder

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import TIMEOUT_S, Endpoint, make_csr
from tests.emulator.device5 import (
    Raw5,
    connect5,
    identity_client5,
    refused_connect,
    stop,
)
from tests.emulator.test_e2e import certificate_status, new_serial, seed, template_topic

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("emulator-mqtt5")]

CSR_TOPIC = "$aws/certificates/create-from-csr"
KEYS_TOPIC = "$aws/certificates/create"


def sample_client_id() -> str:
    return "mqtt5-sample-" + uuid.uuid4().hex  # as fleet_provisioning_csr.py / _basic.py


def provision5(endpoint: Endpoint, serial: str, flow: str = "csr") -> tuple[Any, Any, bytes]:
    """(certificate response, RegisterThing response, device key PEM), as the current samples do it:
    MQTT 5 client, keep-alive 1200, IotIdentityClientV2 with two request-response subscriptions."""
    client, events = connect5(endpoint, sample_client_id(), keep_alive=1200)
    try:
        connack = events.connected.result(TIMEOUT_S).connack_packet
        assert (connack.maximum_packet_size, connack.topic_alias_maximum, connack.server_keep_alive_sec) == (
            149_504,
            8,
            1200,
        )
        identity = identity_client5(client)
        if flow == "csr":
            key_pem, csr = make_csr(serial)
            created = identity.create_certificate_from_csr(
                iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr)
            ).result(TIMEOUT_S)
        else:
            created = identity.create_keys_and_certificate(
                iotidentity.CreateKeysAndCertificateRequest()
            ).result(TIMEOUT_S)
            key_pem = created.private_key.encode()
        registered = identity.register_thing(
            iotidentity.RegisterThingRequest(
                template_name=endpoint.template_name,
                certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": serial},
            )
        ).result(TIMEOUT_S)
        return created, registered, key_pem
    finally:
        stop(client, events)


def connect_line(emulator: EmulatorProcess, client_id: str) -> str:
    """The emulator's log line for the connection of `client_id` (the log is another process's file)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = [line for line in emulator.log().splitlines() if f"connect client={client_id} " in line]
        if found or time.monotonic() > deadline:
            assert found, f"no connect line for {client_id}"
            return found[0]
        time.sleep(0.05)


# ----------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("flow", ["csr", "keys"])
def test_the_samples_flow_provisions_and_the_device_reconnects_over_mqtt5(
    mqtt5_emulator: EmulatorProcess, flow: str
) -> None:
    endpoint = mqtt5_emulator.endpoint
    serial = new_serial(flow.upper())
    seed(endpoint, serial)
    created, registered, key_pem = provision5(endpoint, serial, flow)
    assert registered.thing_name == f"device-{serial}"
    assert certificate_status(endpoint, created.certificate_id) == "ACTIVE"
    device, events = connect5(
        endpoint, registered.thing_name, cert_pem=created.certificate_pem.encode(), key_pem=key_pem
    )
    try:
        raw = Raw5(device, events)
        assert raw.subscribe(f"devices/{registered.thing_name}/#") == [1]
        puback = raw.publish(f"devices/{registered.thing_name}/telemetry", b'{"t": 1}').result(TIMEOUT_S)
        assert puback.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
        assert [m.payload for m in events.wait_messages(1)] == [b'{"t": 1}']
    finally:
        stop(device, events)


@pytest.mark.parametrize("flow", ["csr", "keys"])
def test_cbor_flows_over_raw_mqtt5_publishes(mqtt5_emulator: EmulatorProcess, flow: str) -> None:
    endpoint = mqtt5_emulator.endpoint
    serial = new_serial("CB5")
    seed(endpoint, serial)
    client, events = connect5(endpoint, sample_client_id())
    try:
        raw = Raw5(client, events)
        if flow == "csr":
            request = cbor2.dumps({"certificateSigningRequest": make_csr(serial)[1]})
            outcome, created = raw.request(f"{CSR_TOPIC}/cbor", request, cbor2.loads)
            assert outcome == "accepted"
            assert set(created) == {"certificateOwnershipToken", "certificateId", "certificatePem"}
        else:
            outcome, created = raw.request(f"{KEYS_TOPIC}/cbor", b"", cbor2.loads)
            assert outcome == "accepted" and "PRIVATE KEY" in created["privateKey"]
        outcome, registered = raw.request(
            template_topic(endpoint, "cbor"),
            cbor2.dumps(
                {
                    "certificateOwnershipToken": created["certificateOwnershipToken"],
                    "parameters": {"SerialNumber": serial},
                }
            ),
            cbor2.loads,
        )
        assert outcome == "accepted" and registered["thingName"] == f"device-{serial}"
    finally:
        stop(client, events)


def test_a_reply_goes_only_to_the_connection_that_asked(mqtt5_emulator: EmulatorProcess) -> None:
    endpoint = mqtt5_emulator.endpoint
    asker, asker_events = connect5(endpoint, sample_client_id())
    bystander, bystander_events = connect5(endpoint, sample_client_id())
    try:
        assert Raw5(bystander, bystander_events).subscribe(
            f"{CSR_TOPIC}/json/accepted", f"{CSR_TOPIC}/json/rejected"
        ) == [1, 1]
        outcome, _ = Raw5(asker, asker_events).request(
            f"{CSR_TOPIC}/json",
            json.dumps({"certificateSigningRequest": make_csr("x")[1]}).encode(),
            json.loads,
        )
        assert outcome == "accepted"
        assert not bystander_events.wait(lambda: bystander_events.messages, timeout=0.5)
    finally:
        stop(asker, asker_events)
        stop(bystander, bystander_events)


# ----------------------------------------------------------------------------------- refusals


def test_provisioning_rejections_are_the_same_over_mqtt5(mqtt5_emulator: EmulatorProcess) -> None:
    endpoint = mqtt5_emulator.endpoint
    with pytest.raises(V2ServiceException) as denied:
        provision5(endpoint, new_serial("UNKNOWN"))
    error = denied.value.modeled_error
    assert (error.status_code, error.error_code) == (403, "AccessDenied")
    client, events = connect5(endpoint, sample_client_id())
    try:
        raw = Raw5(client, events)
        for fmt, decode in (("json", json.loads), ("cbor", cbor2.loads)):
            outcome, body = raw.request(f"{CSR_TOPIC}/{fmt}", b"\xff{not " + fmt.encode(), decode)
            assert outcome == "rejected" and body["statusCode"] == 400, body
            outcome, body = raw.request(
                template_topic(endpoint, fmt),
                cbor2.dumps({"certificateOwnershipToken": "spent", "parameters": {}})
                if fmt == "cbor"
                else b'{"certificateOwnershipToken": "spent", "parameters": {}}',
                decode,
            )
            assert (outcome, body["errorCode"]) == ("rejected", "InvalidCertificateOwnershipToken")
        outcome, _ = raw.request(
            f"{CSR_TOPIC}/json",
            json.dumps({"certificateSigningRequest": make_csr("x")[1]}).encode(),
            json.loads,
        )
        assert outcome == "accepted"  # the connection kept working
    finally:
        stop(client, events)


def test_unauthorised_subscribe_gets_suback_0x87_and_the_connection_stays(
    mqtt5_emulator: EmulatorProcess,
) -> None:
    client, events = connect5(mqtt5_emulator.endpoint, sample_client_id())
    try:
        raw = Raw5(client, events)
        assert raw.subscribe("#", f"{CSR_TOPIC}/json/accepted") == [
            mqtt5.SubackReasonCode.NOT_AUTHORIZED,
            mqtt5.SubackReasonCode.GRANTED_QOS_1,
        ]
        assert not events.disconnects
    finally:
        stop(client, events)


@pytest.mark.parametrize(
    "topic",
    [
        "$aws/provisioning-templates/SomeOtherTemplate/provision/json",  # the claim policy names one template
        "devices/device-x/telemetry",  # a claim publishing as a device
    ],
)
def test_unauthorised_publish_gets_disconnect_0x87(mqtt5_emulator: EmulatorProcess, topic: str) -> None:
    client, events = connect5(mqtt5_emulator.endpoint, sample_client_id())
    try:
        Raw5(client, events).publish(topic, b"{}")
        assert events.disconnect_reason() == mqtt5.DisconnectReasonCode.NOT_AUTHORIZED
    finally:
        stop(client, events)


def test_duplicate_client_id_disconnects_the_older_with_session_taken_over(
    mqtt5_emulator: EmulatorProcess,
) -> None:
    client_id = sample_client_id()
    older, older_events = connect5(mqtt5_emulator.endpoint, client_id)
    newer, newer_events = connect5(mqtt5_emulator.endpoint, client_id)
    try:
        assert older_events.disconnect_reason() == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
        assert not newer_events.disconnects
    finally:
        stop(older, older_events)
        stop(newer, newer_events)


def test_refused_connects_over_mqtt5(mqtt5_emulator: EmulatorProcess) -> None:
    endpoint = mqtt5_emulator.endpoint
    serial = new_serial()
    seed(endpoint, serial)
    created, registered, key_pem = provision5(endpoint, serial)
    # The device policy allows only its thing name: CONNACK 0x87 Not authorized.
    refused = refused_connect(
        endpoint, f"device-{new_serial()}", cert_pem=created.certificate_pem.encode(), key_pem=key_pem
    )
    assert refused.connack is not None
    assert refused.connack.reason_code == mqtt5.ConnectReasonCode.NOT_AUTHORIZED
    # An INACTIVE claim certificate: AWS IoT hangs up without any CONNACK.
    inactive = mqtt5_emulator.raw["claims"]["line-b"]
    refused = refused_connect(
        endpoint, sample_client_id(), cert_file=inactive["cert_file"], key_file=inactive["key_file"]
    )
    assert refused.connack is None


# ----------------------------------------------------------------------------------- the older samples


def v1_identity_flow(
    identity: iotidentity.IotIdentityClient, endpoint: Endpoint, serial: str, qos: Any
) -> str:
    """What the deprecated samples do with the V1 identity client: subscribe accepted/rejected, publish,
    wait for the reply."""
    replies: dict[str, Any] = {}
    arrived = threading.Event()

    def keep(name: str) -> Any:
        def callback(response: Any) -> None:
            replies[name] = response
            arrived.set()

        return callback

    futures = [
        identity.subscribe_to_create_certificate_from_csr_accepted(
            iotidentity.CreateCertificateFromCsrSubscriptionRequest(), qos, keep("created")
        )[0],
        identity.subscribe_to_create_certificate_from_csr_rejected(
            iotidentity.CreateCertificateFromCsrSubscriptionRequest(), qos, keep("rejected")
        )[0],
        identity.subscribe_to_register_thing_accepted(
            iotidentity.RegisterThingSubscriptionRequest(template_name=endpoint.template_name),
            qos,
            keep("registered"),
        )[0],
        identity.subscribe_to_register_thing_rejected(
            iotidentity.RegisterThingSubscriptionRequest(template_name=endpoint.template_name),
            qos,
            keep("rejected"),
        )[0],
    ]
    for future in futures:
        future.result(TIMEOUT_S)
    identity.publish_create_certificate_from_csr(
        iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr(serial)[1]), qos
    ).result(TIMEOUT_S)
    assert arrived.wait(TIMEOUT_S) and "created" in replies, replies
    arrived.clear()
    identity.publish_register_thing(
        iotidentity.RegisterThingRequest(
            template_name=endpoint.template_name,
            certificate_ownership_token=replies["created"].certificate_ownership_token,
            parameters={"SerialNumber": serial},
        ),
        qos,
    ).result(TIMEOUT_S)
    assert arrived.wait(TIMEOUT_S) and "registered" in replies, replies
    return str(replies["registered"].thing_name)


@pytest.mark.parametrize("version", ["3.1.1", "5"])
@pytest.mark.parametrize("port_kind", ["main", "443"])
def test_the_deprecated_samples_way(mqtt5_emulator: EmulatorProcess, version: str, port_kind: str) -> None:
    """samples/deprecated/fleetprovisioning.py and fleetprovisioning_mqtt5.py: client id "test-<uuid>",
    clean_session False, keep-alive 30, the V1 identity client; with `--port 443` the SDK's builder offers
    ALPN x-amzn-mqtt-ca by itself."""
    endpoint = mqtt5_emulator.endpoint
    port = endpoint.port
    if port_kind == "443":
        if mqtt5_emulator.raw["alpn_port"] != 443:
            pytest.skip("port 443 could not be bound on this machine")
        port = 443
    serial = new_serial("DEP")
    seed(endpoint, serial)
    client_id = "test-" + str(uuid.uuid4())
    if version == "3.1.1":
        connection = mqtt_connection_builder.mtls_from_path(
            endpoint=endpoint.host,
            port=port,
            cert_filepath=endpoint.claim_cert_file,
            pri_key_filepath=endpoint.claim_key_file,
            ca_filepath=endpoint.ca_file,
            client_id=client_id,
            clean_session=False,
            keep_alive_secs=30,
        )
        connection.connect().result(TIMEOUT_S)
        try:
            thing = v1_identity_flow(
                iotidentity.IotIdentityClient(connection), endpoint, serial, mqtt.QoS.AT_LEAST_ONCE
            )
        finally:
            connection.disconnect().result(TIMEOUT_S)
    else:
        client, events = connect5(endpoint, client_id, port=port, keep_alive=30)
        try:
            thing = v1_identity_flow(
                iotidentity.IotIdentityClient(client), endpoint, serial, mqtt5.QoS.AT_LEAST_ONCE
            )
        finally:
            stop(client, events)
    assert thing == f"device-{serial}"
    if port_kind == "443":
        assert "alpn=x-amzn-mqtt-ca" in connect_line(mqtt5_emulator, client_id)


def test_endpoint_json_gains_the_versions_and_the_second_port(mqtt5_emulator: EmulatorProcess) -> None:
    raw = mqtt5_emulator.raw
    assert raw["mqtt_versions"] == ["3.1.1", "5"] and raw["alpn_protocols"] == ["x-amzn-mqtt-ca"]
    assert isinstance(raw["alpn_port"], int) and raw["alpn_port"] != raw["port"]
    assert raw["session_expiry_s"] == 3
    assert raw["claim_client_id_pattern"] == "*" and raw["template_name"]  # the keys that were there stay
