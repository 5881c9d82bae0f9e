"""AWS IoT's lifecycle events from the broker alone (fake gatekeeper, raw MQTT over real TLS): their topics
and payloads, the disconnect reasons, who receives them, and the expired-certificate line of the TLS layer."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.mqtt.lifecycle import LifecycleEvents, disconnect_reason
from tests.emulator.mqtt_harness import (
    MQTT311,
    Env,
    broker_env,
    disconnect_packet,
    publish_packet,
    subscribe_packet,
)

CONNECTED_KEYS = {
    "clientId",
    "timestamp",
    "eventType",
    "sessionIdentifier",
    "principalIdentifier",
    "ipAddress",
    "versionNumber",
}
DISCONNECTED_KEYS = CONNECTED_KEYS - {"ipAddress"} | {"clientInitiatedDisconnect", "disconnectReason"}


def run(tmp_path: Path, scenario: Callable[[Env, list[tuple[str, dict[str, Any]]]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with broker_env(tmp_path) as env:
            heard: list[tuple[str, dict[str, Any]]] = []
            events = LifecycleEvents(
                env.broker.route, [lambda topic, payload: heard.append((topic, json.loads(payload)))]
            )
            # As the emulator wires it (serving.py): the broker asks the observed gatekeeper.
            env.broker.gatekeeper = env.broker.router.gatekeeper = events.observe(env.gatekeeper)
            env.broker.events = events
            await scenario(env, heard)

    asyncio.run(main())


async def settle(heard: list[Any], count: int) -> None:
    for _ in range(100):
        if len(heard) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(heard)} events, {count} expected: {heard}")


def test_connect_then_disconnect_with_aws_payloads(tmp_path: Path) -> None:
    async def scenario(env: Env, heard: list[tuple[str, dict[str, Any]]]) -> None:
        client, _ = await env.connected("ok-device", MQTT311)
        await client.send(disconnect_packet(MQTT311))
        await settle(heard, 2)
        (connected_topic, connected), (disconnected_topic, disconnected) = heard
        assert connected_topic == "$aws/events/presence/connected/ok-device"
        assert disconnected_topic == "$aws/events/presence/disconnected/ok-device"
        assert set(connected) == CONNECTED_KEYS and set(disconnected) == DISCONNECTED_KEYS
        assert connected["eventType"] == "connected" and disconnected["eventType"] == "disconnected"
        assert connected["principalIdentifier"] == env.certificate_ids["a"]  # the certificate id
        assert connected["ipAddress"] == "127.0.0.1"
        assert connected["sessionIdentifier"] == disconnected["sessionIdentifier"]
        assert len(connected["sessionIdentifier"]) == 32
        assert (connected["versionNumber"], disconnected["versionNumber"]) == (0, 0)
        assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
        assert disconnected["clientInitiatedDisconnect"] is True
        assert connected["timestamp"] <= disconnected["timestamp"]
        again, _ = await env.connected("ok-device")  # the client id's next connection
        await settle(heard, 3)
        assert heard[2][1]["versionNumber"] == 1

    run(tmp_path, scenario)


def test_disconnect_reasons(tmp_path: Path) -> None:
    async def scenario(env: Env, heard: list[tuple[str, dict[str, Any]]]) -> None:
        older, _ = await env.connected("ok-twice")
        newer, _ = await env.connected("ok-twice")  # takes the client id over (and stays connected)
        lost, _ = await env.connected("ok-lost")
        lost.writer.transport.abort()  # gone without DISCONNECT
        denied, _ = await env.connected("ok-denied")
        await denied.send(publish_packet("forbidden/topic", b"x", qos=1, packet_id=1))
        await settle(heard, 7)  # 4 connected, 3 disconnected
        reasons = {
            (event["clientId"], event["disconnectReason"], event["clientInitiatedDisconnect"])
            for topic, event in heard
            if event["eventType"] == "disconnected"
        }
        assert reasons == {
            ("ok-twice", "DUPLICATE_CLIENTID", False),
            ("ok-lost", "CONNECTION_LOST", False),
            ("ok-denied", "AUTH_ERROR", False),
        }
        assert await newer.silent()

    run(tmp_path, scenario)


def test_no_events_for_a_refused_connection_nor_a_wildcard_client_id(tmp_path: Path) -> None:
    async def scenario(env: Env, heard: list[tuple[str, dict[str, Any]]]) -> None:
        refused = await env.open("nope-1")
        assert await refused.closed()
        await env.connected("ok+wild")  # AWS: client ids with # or + get no lifecycle events
        marker, _ = await env.connected("ok-marker")
        await settle(heard, 1)
        assert [event["clientId"] for _, event in heard] == ["ok-marker"]

    run(tmp_path, scenario)


def test_events_reach_subscribers_the_policies_allow_only(tmp_path: Path) -> None:
    async def scenario(env: Env, heard: list[tuple[str, dict[str, Any]]]) -> None:
        denied, _ = await env.connected("ok-denied")
        await denied.send(subscribe_packet(1, "$aws/events/presence/connected/+"))
        assert await denied.suback() == [0x87]  # the policies do not allow it
        env.gatekeeper.allowed += ("$aws/events/presence/",)
        monitor, _ = await env.connected("ok-monitor")
        await monitor.send(subscribe_packet(2, "$aws/events/presence/connected/+"))
        assert await monitor.suback() == [1]
        await env.connected("ok-watched")
        message = await monitor.message()
        assert message.topic == "$aws/events/presence/connected/ok-watched"
        assert json.loads(message.payload)["clientId"] == "ok-watched"
        assert await denied.silent()  # nothing relayed to a connection that may not receive it

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("closed_for", "reason"),
    [
        ("CLIENT_INITIATED_DISCONNECT", "CLIENT_INITIATED_DISCONNECT"),
        ("DUPLICATE_CLIENTID [Session taken over]", "DUPLICATE_CLIENTID"),
        ("MQTT_KEEP_ALIVE_TIMEOUT [Keep alive timeout]", "MQTT_KEEP_ALIVE_TIMEOUT"),
        ("AUTH_ERROR certificate INACTIVE [Not authorized]", "AUTH_ERROR"),
        ("AUTHORIZATION_FAILURE publish to x [Not authorized]", "AUTH_ERROR"),
        ("CLIENT_ERROR payload of 200000 bytes exceeds 128 KB [Packet too large]", "CLIENT_ERROR"),
        ("protocol error: second CONNECT [Protocol Error]", "CLIENT_ERROR"),
        ("server shutting down [Server shutting down]", "SERVER_INITIATED_DISCONNECT"),
        ("unexpected error [Unspecified error]", "SERVER_ERROR"),
        ("THROTTLED too many publishes", "THROTTLED"),
        ("connection closed", "CONNECTION_LOST"),
        ("", "CONNECTION_LOST"),
    ],
)
def test_disconnect_reason_of_every_broker_reason(closed_for: str, reason: str) -> None:
    assert disconnect_reason(closed_for) == reason


def test_an_expired_client_certificate_is_refused_in_the_handshake_with_a_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenSSL refuses it (as AWS IoT does); the log says why in one line rather than nothing."""

    async def scenario(env: Env, heard: list[tuple[str, dict[str, Any]]]) -> None:
        authority = env.authority
        assert authority is not None
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SN-EXPIRED")]))
            .sign(key, hashes.SHA256())
        )
        authority.device_validity = dt.timedelta(seconds=1)
        pem, _ = authority.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode())
        (tmp_path / "expired.pem").write_text(pem)
        (tmp_path / "expired.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        await asyncio.sleep(1.2)
        context = ssl.create_default_context(cadata=authority.certificate_pem)
        context.load_cert_chain(tmp_path / "expired.pem", tmp_path / "expired.key")
        with caplog.at_level(logging.INFO, logger="emulator.mqtt"):
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", env.broker.port, ssl=context, server_hostname="127.0.0.1"
                )
                assert await reader.read() == b""  # TLS 1.3: the refusal arrives after the client's handshake
            except (ssl.SSLError, ConnectionError):
                pass
            for _ in range(50):
                if "certificate expired" in caplog.text:
                    break
                await asyncio.sleep(0.02)
        assert "connect refused in the TLS handshake: client certificate expired" in caplog.text
        assert heard == []

    run(tmp_path, scenario)


def test_events_are_routed_only_while_someone_may_receive_them() -> None:
    """Routing visits every session: with no subscription that can match an event, only the listeners
    (the topic rules) get it."""
    from emulator.mqtt.sessions import SessionState, Subscription

    routed: list[str] = []
    heard: list[str] = []
    events = LifecycleEvents(
        lambda message: routed.append(message.topic) or 0, [lambda t, _: heard.append(t)]
    )

    class Gate:
        async def admit(self, certificate_id: str, client_id: str) -> Any: ...
        def may_publish(self, session: Any, topic: str) -> bool:
            return True

        def may_subscribe(self, session: Any, topic_filter: str) -> bool:
            return True

        def may_receive(self, session: Any, topic: str) -> bool:
            return True

    class Connection:  # what the events read of a connection
        def __init__(self, client_id: str) -> None:
            self.client_id, self.certificate_id, self.peer = client_id, "c" * 64, "127.0.0.1:5000"
            self.close_reason = "CLIENT_INITIATED_DISCONNECT"
            self.state = SessionState(client_id, "c" * 64, 0)

    observed = events.observe(Gate())  # type: ignore[arg-type]
    device = Connection("device-1")
    events.connected(device)  # type: ignore[arg-type]
    assert routed == [] and heard == ["$aws/events/presence/connected/device-1"]
    monitor = Connection("monitor")
    assert observed.may_subscribe(monitor, "$aws/events/presence/connected/+")  # type: ignore[arg-type]
    monitor.state.subscriptions["$aws/events/presence/connected/+"] = Subscription(
        "$aws/events/presence/connected/+", 1
    )
    events.disconnected(device)  # type: ignore[arg-type]
    assert routed == ["$aws/events/presence/disconnected/device-1"]
    monitor.state.subscriptions.clear()  # unsubscribed
    events.connected(device)  # type: ignore[arg-type]
    assert len(routed) == 1 and len(heard) == 3
