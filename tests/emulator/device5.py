"""A simulated device for the MQTT 5 end-to-end tests: the real awsiotsdk MQTT 5 client (`awscrt.mqtt5`),
built as the SDK's samples build it (`mqtt5_client_builder.mtls_from_*`), and `IotIdentityClientV2` over it.

CBOR and anything the service clients do not cover go through `Raw5`: plain MQTT 5 publishes and
subscriptions on the same client, with their reason codes and properties.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from awscrt import io, mqtt5, mqtt_request_response
from awsiot import iotidentity, mqtt5_client_builder

from tests.emulator.device import TIMEOUT_S, Endpoint


@dataclass
class Events:
    """What one client's lifecycle callbacks and publish callback saw."""

    connected: Future[mqtt5.LifecycleConnectSuccessData] = field(default_factory=Future)
    stopped: Future[None] = field(default_factory=Future)
    failures: list[mqtt5.LifecycleConnectFailureData] = field(default_factory=list)
    disconnects: list[mqtt5.LifecycleDisconnectData] = field(default_factory=list)
    messages: list[mqtt5.PublishPacket] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def on_success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        with self.changed:
            if not self.connected.done():
                self.connected.set_result(data)
            self.changed.notify_all()

    def on_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        with self.changed:
            self.failures.append(data)
            self.changed.notify_all()

    def on_disconnect(self, data: mqtt5.LifecycleDisconnectData) -> None:
        with self.changed:
            self.disconnects.append(data)
            self.changed.notify_all()

    def on_stopped(self, data: mqtt5.LifecycleStoppedData) -> None:
        if not self.stopped.done():
            self.stopped.set_result(None)

    def on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        with self.changed:
            self.messages.append(data.publish_packet)
            self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = TIMEOUT_S) -> bool:
        with self.changed:
            return bool(self.changed.wait_for(predicate, timeout))

    def disconnect_reason(self, timeout: float = TIMEOUT_S) -> int | None:
        """The reason code of the first DISCONNECT the broker sent (None: closed without one)."""
        assert self.wait(lambda: self.disconnects, timeout), "still connected"
        packet = self.disconnects[0].disconnect_packet
        return None if packet is None else int(packet.reason_code)

    def wait_messages(self, count: int, timeout: float = TIMEOUT_S) -> list[mqtt5.PublishPacket]:
        self.wait(lambda: len(self.messages) >= count, timeout)
        return list(self.messages)


def build(
    endpoint: Endpoint,
    client_id: str,
    events: Events,
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    port: int | None = None,
    alpn: bool = False,
    keep_alive: int = 30,
    session_expiry_s: int | None = None,
    rejoin: bool = False,
    aliasing: mqtt5.TopicAliasingOptions | None = None,
) -> mqtt5.Client:
    """An MQTT 5 client as the SDK's samples build it (`mqtt5_client_builder`); with `alpn` on a port other
    than 443 (where the builder would set it), the TLS options are built by hand with ALPN x-amzn-mqtt-ca."""
    connect = mqtt5.ConnectPacket(
        client_id=client_id, keep_alive_interval_sec=keep_alive, session_expiry_interval_sec=session_expiry_s
    )
    common: dict[str, Any] = dict(
        endpoint=endpoint.host,
        port=port or endpoint.port,
        ca_filepath=endpoint.ca_file,
        connect_options=connect,
        clean_session=not rejoin,  # ignored by the MQTT 5 builder, as in the samples; session_behavior counts
        session_behavior=(
            mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS if rejoin else mqtt5.ClientSessionBehaviorType.CLEAN
        ),
        topic_aliasing_options=aliasing,
        min_reconnect_delay_ms=30_000,  # a refused or dropped connection is a result here, not a retry
        max_reconnect_delay_ms=60_000,
        on_publish_received=events.on_publish,
        on_lifecycle_connection_success=events.on_success,
        on_lifecycle_connection_failure=events.on_failure,
        on_lifecycle_disconnection=events.on_disconnect,
        on_lifecycle_stopped=events.on_stopped,
    )
    if alpn and common["port"] != 443:
        if cert_pem is not None and key_pem is not None:
            tls = io.TlsContextOptions.create_client_with_mtls(cert_pem, key_pem)
        else:
            tls = io.TlsContextOptions.create_client_with_mtls_from_path(
                cert_file or endpoint.claim_cert_file, key_file or endpoint.claim_key_file
            )
        tls.override_default_trust_store_from_path(None, endpoint.ca_file)
        tls.alpn_list = ["x-amzn-mqtt-ca"]
        options = mqtt5.ClientOptions(
            host_name=endpoint.host,
            port=common["port"],
            tls_ctx=io.ClientTlsContext(tls),
            connect_options=connect,
            session_behavior=common["session_behavior"],
            min_reconnect_delay_ms=30_000,
            max_reconnect_delay_ms=60_000,
            on_publish_callback_fn=events.on_publish,
            on_lifecycle_event_connection_success_fn=events.on_success,
            on_lifecycle_event_connection_failure_fn=events.on_failure,
            on_lifecycle_event_disconnection_fn=events.on_disconnect,
            on_lifecycle_event_stopped_fn=events.on_stopped,
        )
        return mqtt5.Client(options)
    if cert_pem is not None and key_pem is not None:
        return mqtt5_client_builder.mtls_from_bytes(cert_bytes=cert_pem, pri_key_bytes=key_pem, **common)
    return mqtt5_client_builder.mtls_from_path(
        cert_filepath=cert_file or endpoint.claim_cert_file,
        pri_key_filepath=key_file or endpoint.claim_key_file,
        **common,
    )


def connect5(endpoint: Endpoint, client_id: str, **options: Any) -> tuple[mqtt5.Client, Events]:
    """A started client once its CONNACK said yes; raises with the CONNACK (or the hang-up) otherwise."""
    events = Events()
    client = build(endpoint, client_id, events, **options)
    client.start()
    if not events.wait(lambda: events.failures or events.connected.done()) or events.failures:
        failure = events.failures[0] if events.failures else None
        stop(client, events)
        raise ConnectRefused(failure)
    return client, events


class ConnectRefused(Exception):
    def __init__(self, failure: mqtt5.LifecycleConnectFailureData | None) -> None:
        self.connack = failure.connack_packet if failure is not None else None
        self.error = failure.exception if failure is not None else None
        super().__init__(f"connect failed: connack={self.connack} error={self.error}")


def refused_connect(endpoint: Endpoint, client_id: str, **options: Any) -> ConnectRefused:
    try:
        client, events = connect5(endpoint, client_id, **options)
    except ConnectRefused as refused:
        return refused
    stop(client, events)
    raise AssertionError(f"{client_id} was allowed to connect")


def stop(client: mqtt5.Client, events: Events) -> None:
    client.stop()
    try:
        events.stopped.result(TIMEOUT_S)
    except Exception:
        pass


def identity_client5(client: mqtt5.Client) -> iotidentity.IotIdentityClientV2:
    """As fleet_provisioning_csr.py / fleet_provisioning_basic.py configure it."""
    options = mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=2, max_streaming_subscriptions=0, operation_timeout_in_seconds=30
    )
    return iotidentity.IotIdentityClientV2(client, options)


class Raw5:
    """Plain MQTT 5 operations on a client: subscribe, publish, wait for what arrives."""

    def __init__(self, client: mqtt5.Client, events: Events) -> None:
        self.client, self.events = client, events

    def subscribe(self, *filters: str, qos: mqtt5.QoS = mqtt5.QoS.AT_LEAST_ONCE) -> list[int]:
        packet = mqtt5.SubscribePacket([mqtt5.Subscription(f, qos) for f in filters])
        suback = self.client.subscribe(packet).result(TIMEOUT_S)
        return [int(code) for code in suback.reason_codes]

    def publish(self, topic: str, payload: bytes, **properties: Any) -> Any:
        packet = mqtt5.PublishPacket(payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE, topic=topic, **properties)
        return self.client.publish(packet)

    def request(self, topic: str, payload: bytes, decode: Any) -> tuple[str, Any]:
        """Subscribe to accepted/rejected, publish, wait for one reply: (accepted|rejected, decoded body)."""
        assert self.subscribe(f"{topic}/accepted", f"{topic}/rejected") == [1, 1]
        before = len(self.events.messages)
        self.publish(topic, payload).result(TIMEOUT_S)
        messages = self.events.wait_messages(before + 1)
        assert len(messages) > before, f"no reply on {topic}"
        reply = messages[before]
        return reply.topic.rsplit("/", 1)[-1], decode(reply.payload)
