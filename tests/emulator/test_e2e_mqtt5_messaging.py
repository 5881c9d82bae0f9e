"""End to end, the broker beyond provisioning, with the real SDK clients of both versions: topic aliases and
user properties round trips, an MQTT 3.1.1 publisher to an MQTT 5 subscriber and back, persistent sessions
in both versions (resumed, messages kept while away, expiry), and ALPN x-amzn-mqtt-ca on the second port.

The clients use a provisioned device's certificate with one more policy attached through the emulator's
AWS API (client ids `e2e-*`, topics `e2e/*`): the device policy alone lets one connection, named after the
thing, use only its own topics.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from awscrt import mqtt, mqtt5
from awsiot import mqtt_connection_builder

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import TIMEOUT_S, Endpoint
from tests.emulator.device5 import Raw5, connect5, stop
from tests.emulator.test_e2e import aws, new_serial, seed
from tests.emulator.test_e2e_mqtt5 import connect_line, provision5

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("emulator-mqtt5")]

EXPIRY_S = 3  # the mqtt5_emulator's --session-expiry-s


class Credential:
    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.cert_pem, self.key_pem = cert_pem, key_pem


@pytest.fixture(scope="module")
def observer(mqtt5_emulator: EmulatorProcess) -> Credential:
    endpoint = mqtt5_emulator.endpoint
    serial = new_serial("OBS")
    seed(endpoint, serial)
    created, _, key_pem = provision5(endpoint, serial)
    raw = mqtt5_emulator.raw
    arn = f"arn:aws:iot:{raw['region']}:{raw['account_id']}"
    iot = aws(endpoint, "iot")
    iot.create_policy(
        policyName=f"E2EObserver-{serial}",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/e2e-*"},
                    {
                        "Effect": "Allow",
                        "Action": ["iot:Publish", "iot:Receive"],
                        "Resource": f"{arn}:topic/e2e/*",
                    },
                    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/e2e/*"},
                ],
            }
        ),
    )
    iot.attach_policy(policyName=f"E2EObserver-{serial}", target=f"{arn}:cert/{created.certificate_id}")
    return Credential(created.certificate_pem.encode(), key_pem)


def client_id(name: str) -> str:
    return f"e2e-{name}-{uuid.uuid4().hex[:8]}"


def connect311(
    endpoint: Endpoint, who: Credential, cid: str, *, clean: bool = True, port: int | None = None
) -> tuple[mqtt.Connection, bool, list[tuple[str, bytes]], threading.Condition]:
    """An MQTT 3.1.1 connection (mqtt_connection_builder): (connection, session present, messages, cond);
    messages arriving for a resumed session's subscriptions land in `messages` too."""
    messages: list[tuple[str, bytes]] = []
    arrived = threading.Condition()

    def on_message(topic: str, payload: bytes, **_: Any) -> None:
        with arrived:
            messages.append((topic, bytes(payload)))
            arrived.notify_all()

    connection = mqtt_connection_builder.mtls_from_bytes(
        cert_bytes=who.cert_pem,
        pri_key_bytes=who.key_pem,
        endpoint=endpoint.host,
        port=port or endpoint.port,
        ca_filepath=endpoint.ca_file,
        client_id=cid,
        clean_session=clean,
        keep_alive_secs=30,
        reconnect_min_timeout_secs=30,
        reconnect_max_timeout_secs=60,
    )
    connection.on_message(on_message)
    present = connection.connect().result(TIMEOUT_S)["session_present"]
    return connection, bool(present), messages, arrived


def wait_for(
    messages: list[Any], arrived: threading.Condition, count: int, timeout: float = TIMEOUT_S
) -> list[Any]:
    with arrived:
        arrived.wait_for(lambda: len(messages) >= count, timeout)
        return list(messages)


def publish_qos1(endpoint: Endpoint, who: Credential, topic: str, payload: bytes) -> None:
    client, events = connect5(endpoint, client_id("pub"), cert_pem=who.cert_pem, key_pem=who.key_pem)
    try:
        Raw5(client, events).publish(topic, payload).result(TIMEOUT_S)
    finally:
        stop(client, events)


def test_topic_alias_and_user_property_round_trip(
    mqtt5_emulator: EmulatorProcess, observer: Credential
) -> None:
    endpoint = mqtt5_emulator.endpoint
    aliasing = mqtt5.TopicAliasingOptions(
        outbound_behavior=mqtt5.OutboundTopicAliasBehaviorType.LRU,
        outbound_cache_max_size=8,
        inbound_behavior=mqtt5.InboundTopicAliasBehaviorType.ENABLED,
        inbound_cache_max_size=8,
    )
    cid = client_id("alias")
    client, events = connect5(
        endpoint, cid, cert_pem=observer.cert_pem, key_pem=observer.key_pem, aliasing=aliasing
    )
    try:
        settings = events.connected.result(TIMEOUT_S).negotiated_settings
        assert (settings.topic_alias_maximum_to_server, settings.topic_alias_maximum_to_client) == (8, 8)
        raw = Raw5(client, events)
        topic = f"e2e/{cid}/telemetry"
        assert raw.subscribe(f"e2e/{cid}/#") == [1]
        for i in range(3):  # the SDK sends the topic with its alias once, then the alias alone
            raw.publish(
                topic,
                f"reading {i}".encode(),
                user_properties=[mqtt5.UserProperty("unit", "C"), mqtt5.UserProperty("seq", str(i))],
                response_topic=f"e2e/{cid}/reply",
                correlation_data_bytes=bytes([i]),
                content_type="text/plain",
            ).result(TIMEOUT_S)
        received = events.wait_messages(3)
        assert [(m.topic, m.payload) for m in received] == [
            (topic, f"reading {i}".encode()) for i in range(3)
        ]
        for i, message in enumerate(received):
            assert [(p.name, p.value) for p in message.user_properties] == [("unit", "C"), ("seq", str(i))]
            assert (message.response_topic, message.correlation_data_bytes, message.content_type) == (
                f"e2e/{cid}/reply",
                bytes([i]),
                "text/plain",
            )
            assert message.topic_alias == 1  # the broker aliased its topic towards the client as well
        assert not events.disconnects
    finally:
        stop(client, events)


def test_mqtt311_publisher_to_mqtt5_subscriber_and_back(
    mqtt5_emulator: EmulatorProcess, observer: Credential
) -> None:
    endpoint = mqtt5_emulator.endpoint
    v3, _, v3_messages, arrived = connect311(endpoint, observer, client_id("v3"))
    v5, events = connect5(endpoint, client_id("v5"), cert_pem=observer.cert_pem, key_pem=observer.key_pem)
    try:
        future, _ = v3.subscribe("e2e/to3/#", mqtt.QoS.AT_LEAST_ONCE)
        assert future.result(TIMEOUT_S)["qos"] == mqtt.QoS.AT_LEAST_ONCE
        raw = Raw5(v5, events)
        assert raw.subscribe("e2e/to5/#") == [1]
        v3.publish("e2e/to5/hello", b"from 3.1.1", mqtt.QoS.AT_LEAST_ONCE)[0].result(TIMEOUT_S)
        (from3,) = events.wait_messages(1)
        assert (from3.topic, from3.payload, from3.qos, from3.user_properties) == (
            "e2e/to5/hello",
            b"from 3.1.1",
            mqtt5.QoS.AT_LEAST_ONCE,
            None,
        )
        raw.publish("e2e/to3/hello", b"from 5", user_properties=[mqtt5.UserProperty("k", "v")]).result(
            TIMEOUT_S
        )
        assert wait_for(v3_messages, arrived, 1) == [("e2e/to3/hello", b"from 5")]
    finally:
        v3.disconnect().result(TIMEOUT_S)
        stop(v5, events)


def test_persistent_session_over_mqtt5(mqtt5_emulator: EmulatorProcess, observer: Credential) -> None:
    endpoint = mqtt5_emulator.endpoint
    cid = client_id("p5")
    options: dict[str, Any] = dict(cert_pem=observer.cert_pem, key_pem=observer.key_pem, rejoin=True)
    client, events = connect5(endpoint, cid, session_expiry_s=3600, **options)
    connack = events.connected.result(TIMEOUT_S).connack_packet
    assert not connack.session_present
    assert connack.session_expiry_interval_sec == EXPIRY_S  # asked for an hour, told the account's limit
    assert Raw5(client, events).subscribe(f"e2e/{cid}/#") == [1]
    stop(client, events)
    publish_qos1(endpoint, observer, f"e2e/{cid}/cmd", b"sent while away")
    client, events = connect5(endpoint, cid, session_expiry_s=3600, **options)
    try:
        assert events.connected.result(TIMEOUT_S).negotiated_settings.rejoined_session
        assert [(m.topic, m.payload) for m in events.wait_messages(1)] == [
            (f"e2e/{cid}/cmd", b"sent while away")
        ]
        publish_qos1(endpoint, observer, f"e2e/{cid}/live", b"still subscribed")
        assert events.wait_messages(2)[1].payload == b"still subscribed"
    finally:
        stop(client, events)
    publish_qos1(endpoint, observer, f"e2e/{cid}/cmd", b"expires with the session")
    time.sleep(EXPIRY_S + 0.5)
    client, events = connect5(endpoint, cid, session_expiry_s=3600, **options)
    try:
        assert not events.connected.result(TIMEOUT_S).negotiated_settings.rejoined_session
        time.sleep(0.5)
        assert events.messages == []
    finally:
        stop(client, events)


def test_persistent_session_over_mqtt311(mqtt5_emulator: EmulatorProcess, observer: Credential) -> None:
    endpoint = mqtt5_emulator.endpoint
    cid = client_id("p3")
    connection, present, _, _ = connect311(endpoint, observer, cid, clean=False)
    assert not present
    connection.subscribe(f"e2e/{cid}/#", mqtt.QoS.AT_LEAST_ONCE)[0].result(TIMEOUT_S)
    connection.disconnect().result(TIMEOUT_S)
    publish_qos1(endpoint, observer, f"e2e/{cid}/cmd", b"sent while away")
    connection, present, messages, arrived = connect311(endpoint, observer, cid, clean=False)
    try:
        assert present  # cleanSession=0: resumed, no need to subscribe again
        assert wait_for(messages, arrived, 1) == [(f"e2e/{cid}/cmd", b"sent while away")]
    finally:
        connection.disconnect().result(TIMEOUT_S)
    publish_qos1(endpoint, observer, f"e2e/{cid}/cmd", b"expires with the session")
    time.sleep(EXPIRY_S + 0.5)
    connection, present, messages, _ = connect311(endpoint, observer, cid, clean=False)
    try:
        assert not present
        time.sleep(0.5)
        assert messages == []
    finally:
        connection.disconnect().result(TIMEOUT_S)


def test_alpn_on_the_second_port(mqtt5_emulator: EmulatorProcess, observer: Credential) -> None:
    endpoint = mqtt5_emulator.endpoint
    second = mqtt5_emulator.raw["alpn_port"]
    with_alpn, without_alpn = client_id("alpn5"), client_id("noalpn3")
    client, events = connect5(
        endpoint, with_alpn, cert_pem=observer.cert_pem, key_pem=observer.key_pem, port=second, alpn=True
    )
    stop(client, events)
    # The 3.1.1 builder offers ALPN only on port 443; elsewhere it offers none, which works too.
    connection, _, _, _ = connect311(endpoint, observer, without_alpn, port=second)
    connection.disconnect().result(TIMEOUT_S)
    lines = {cid: connect_line(mqtt5_emulator, cid) for cid in (with_alpn, without_alpn)}
    assert "mqtt=5" in lines[with_alpn] and "alpn=x-amzn-mqtt-ca" in lines[with_alpn]
    assert "mqtt=3.1.1" in lines[without_alpn]
    assert ("alpn=x-amzn-mqtt-ca" in lines[without_alpn]) == (second == 443)
