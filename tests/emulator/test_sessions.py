"""Persistent sessions in the broker, raw clients of both versions over real TLS: resumption, queued QoS 1
messages, expiry, take-over, re-authorisation, the caps on what disconnected sessions hold, and closing a
certificate's sessions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from emulator.mqtt import codec
from emulator.mqtt import properties as props
from emulator.mqtt.limits import Limits
from tests.emulator.mqtt_harness import (
    MQTT5,
    MQTT311,
    Client,
    Env,
    broker_env,
    disconnect_packet,
    publish_packet,
    subscribe_packet,
)

PERSISTENT_5 = {props.SESSION_EXPIRY_INTERVAL: 600}


def run(tmp_path: Path, scenario: Callable[[Env], Awaitable[None]], limits: Limits | None = None) -> None:
    async def main() -> None:
        async with broker_env(tmp_path, limits=limits) as env:
            await scenario(env)

    asyncio.run(main())


async def persistent(env: Env, client_id: str, version: int, **options: object) -> tuple[Client, bool]:
    """Connected with a persistent session: (client, session present)."""
    extra: dict[str, object] = {"clean": False}
    if version == MQTT5:
        extra["properties"] = options.pop("properties", PERSISTENT_5)
    client, connack = await env.connected(client_id, version, **extra, **options)  # type: ignore[arg-type]
    return client, connack.session_present


async def leave(client: Client) -> None:
    await client.send(disconnect_packet(client.version))
    await client.closed()


async def publish(env: Env, topic: str, payload: bytes, count: int = 1) -> None:
    publisher, _ = await env.connected("ok-publisher")
    for i in range(count):
        await publisher.send(publish_packet(topic, payload, qos=1, packet_id=i + 1))
        await publisher.expect(codec.PUBACK)
    await leave(publisher)


def test_a_session_survives_its_connection_in_both_versions(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        for version in (MQTT311, MQTT5):
            client_id = f"ok-device-{version}"
            device, present = await persistent(env, client_id, version)
            assert not present
            await device.send(
                subscribe_packet(1, "allowed/cmd/#", ("allowed/telemetry", 0x00), version=version)
            )
            assert await device.suback() == [1, 0]
            await leave(device)
            await publish(env, "allowed/cmd/reboot", b"while away")
            await publish(env, "allowed/telemetry", b"QoS 0 subscription: not kept")
            device, present = await persistent(env, client_id, version)
            assert present  # no need to subscribe again
            message = await device.message()
            assert (message.topic, message.payload, message.qos) == ("allowed/cmd/reboot", b"while away", 1)
            assert await device.silent()
            await publish(env, "allowed/cmd/now", b"live")
            assert (await device.message()).payload == b"live"  # the subscription is still there
            await leave(device)

    run(tmp_path, scenario)


def test_clean_sessions_and_sessions_across_versions(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        device, _ = await persistent(env, "ok-mixed", MQTT311)
        await device.send(subscribe_packet(1, "allowed/x", version=MQTT311))
        await device.suback()
        await leave(device)
        await publish(env, "allowed/x", b"for the 5 client")
        device, present = await persistent(env, "ok-mixed", MQTT5)  # a 3.1.1 session resumed over MQTT 5
        assert present and (await device.message()).payload == b"for the 5 client"
        await leave(device)
        clean, connack = await env.connected("ok-mixed", MQTT311)  # cleanSession=1 ends it
        assert not connack.session_present
        await leave(clean)
        _, present = await persistent(env, "ok-mixed", MQTT311)
        assert not present
        # MQTT 5 with Session Expiry Interval 0 (the default) keeps nothing, even with Clean Start 0.
        device, present = await persistent(env, "ok-zero", MQTT5, properties={})
        await leave(device)
        _, present = await persistent(env, "ok-zero", MQTT5)
        assert not present

    run(tmp_path, scenario)


def test_expiry_drops_the_session_and_its_messages(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        for version in (MQTT311, MQTT5):
            client_id = f"ok-expiring-{version}"
            device, _ = await persistent(env, client_id, version)  # MQTT 5 asks 600 s, gets the 1 s limit
            await device.send(subscribe_packet(1, "allowed/e", version=version))
            await device.suback()
            await leave(device)
            await publish(env, "allowed/e", b"lost")
            await asyncio.sleep(1.3)
            assert client_id not in env.broker.store.states  # swept, not only ignored
            device, present = await persistent(env, client_id, version)
            assert not present and await device.silent()
            await leave(device)
        # MQTT 5: the client's own, shorter interval; and a DISCONNECT may shorten it to 0.
        device, _ = await persistent(env, "ok-own", MQTT5, properties={props.SESSION_EXPIRY_INTERVAL: 1})
        await device.send(disconnect_packet(MQTT5, {props.SESSION_EXPIRY_INTERVAL: 0}))
        await device.closed()
        assert "ok-own" not in env.broker.store.states

    run(tmp_path, scenario, Limits(session_expiry_s=1))


def test_disconnect_cannot_make_a_clean_session_persistent(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        client, _ = await env.connected("ok-1")  # Session Expiry Interval 0
        await client.send(disconnect_packet(MQTT5, {props.SESSION_EXPIRY_INTERVAL: 30}))
        assert await client.disconnected_with() == 0x82
        assert "ok-1" not in env.broker.store.states

    run(tmp_path, scenario)


def test_unacknowledged_messages_are_sent_again_and_take_over_keeps_the_session(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        device, _ = await persistent(env, "ok-slow", MQTT5)
        await device.send(subscribe_packet(1, "allowed/#"))
        await device.suback()
        await publish(env, "allowed/a", b"not acknowledged")
        first = await device.message()
        assert not first.dup
        # A second connection takes the session over: the first gets 0x8E, the message comes again.
        again, present = await persistent(env, "ok-slow", MQTT5)
        assert present
        assert await device.disconnected_with() == 0x8E
        resent = await again.message()
        assert (resent.payload, resent.dup) == (b"not acknowledged", True)

    run(tmp_path, scenario)


def test_a_resumed_session_is_authorised_again(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        device, _ = await persistent(env, "ok-reauth", MQTT311)
        await device.send(subscribe_packet(1, "allowed/keep", "other/drop", version=MQTT311))
        assert await device.suback() == [1, 0x80]
        env.gatekeeper.allowed = ("allowed/", "other/")
        await device.send(subscribe_packet(2, "other/drop", version=MQTT311))
        assert await device.suback() == [1]
        await leave(device)
        env.gatekeeper.allowed = ("allowed/",)  # the policy changed while the device was away
        device, present = await persistent(env, "ok-reauth", MQTT311)
        assert present
        assert set(env.broker.store.states["ok-reauth"].subscriptions) == {"allowed/keep"}

    run(tmp_path, scenario)


def test_what_disconnected_sessions_hold_is_capped(tmp_path: Path) -> None:
    """An attacker with the (public) claim credential opening persistent sessions under many client ids,
    or a subscriber that never comes back, cannot grow the broker's memory past the caps."""
    limits = Limits(
        offline_sessions=5,
        offline_sessions_per_certificate=3,
        queued_messages_per_session=2,
        offline_subscriptions=8,
        queued_bytes_total=10_000,
    )

    async def scenario(env: Env) -> None:
        store = env.broker.store
        for i in range(6):  # certificate "a": only its 3 latest are kept
            device, _ = await persistent(env, f"ok-a{i}", MQTT5)
            await device.send(subscribe_packet(1, "allowed/q"))
            await device.suback()
            await leave(device)
        assert sorted(s.client_id for s in store.offline()) == ["ok-a3", "ok-a4", "ok-a5"]
        for i in range(3):  # certificate "b" does not evict "a"'s sessions until the total cap
            device, _ = await persistent(env, f"ok-b{i}", MQTT5, cert="b")
            await device.send(subscribe_packet(1, "allowed/q", "allowed/r"))
            await device.suback()
            await leave(device)
        assert len(store.offline()) <= 5 and store.offline_subscriptions <= 8
        assert {"ok-b1", "ok-b2"} <= {s.client_id for s in store.offline()}
        await publish(env, "allowed/q", b"m" * 1000, count=5)
        for state in store.offline():
            assert len(state.queue) <= 2
            assert [m.payload for m in state.queue] == [b"m" * 1000] * len(state.queue)
        assert store.queued_bytes <= 10_000
        assert store.queued_bytes == sum(s.queued_bytes for s in store.offline())

    run(tmp_path, scenario, limits)


def test_close_certificate_sessions_from_another_thread(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        v5, _ = await persistent(env, "ok-revoked5", MQTT5)
        v3, _ = await persistent(env, "ok-revoked3", MQTT311)
        away, _ = await persistent(env, "ok-away", MQTT5)
        await leave(away)
        other, _ = await persistent(env, "ok-other", MQTT5, cert="b")
        result: list[int] = []
        worker = threading.Thread(
            target=lambda: result.append(
                env.broker.close_certificate_sessions(env.certificate_ids["a"], "certificate deactivated")
            )
        )
        worker.start()
        assert await v5.disconnected_with() == 0x87
        assert await v3.disconnected_with() is None
        await asyncio.get_running_loop().run_in_executor(None, worker.join)
        assert result == [2]
        assert set(env.broker.store.states) == {"ok-other"}  # the certificate's sessions are gone
        assert await other.silent()
        _, present = await persistent(env, "ok-revoked5", MQTT5)
        assert not present
        # From the loop's own thread it runs at once.
        assert env.broker.close_certificate_sessions(env.certificate_ids["b"], "revoked") == 1

    run(tmp_path, scenario)


def test_a_client_that_never_acknowledges_cannot_grow_what_its_connection_holds(tmp_path: Path) -> None:
    # outbound_in_flight=None: 3.1.1 without AWS's 100 in flight, the case where only the caps hold it back.
    limits = Limits(
        queued_messages_per_session=5,
        pending_messages_per_connection=50,
        held_bytes_per_connection=3000,
        outbound_in_flight=None,
    )

    async def scenario(env: Env) -> None:
        # MQTT 5, Receive Maximum 1: one message in flight, the rest pending up to the byte cap.
        v5, _ = await persistent(
            env, "ok-stuck5", MQTT5, properties={**PERSISTENT_5, props.RECEIVE_MAXIMUM: 1}
        )
        await v5.send(subscribe_packet(1, "allowed/flood"))
        await v5.suback()
        # MQTT 3.1.1 persistent: no flow control, but only so many in-flight messages are kept to resend.
        v3, _ = await persistent(env, "ok-stuck3", MQTT311)
        await v3.send(subscribe_packet(1, "allowed/flood", version=MQTT311))
        await v3.suback()
        await publish(env, "allowed/flood", b"p" * 200, count=40)
        stuck5, stuck3 = env.broker.sessions["ok-stuck5"], env.broker.sessions["ok-stuck3"]
        assert len(stuck5.in_flight) == 1 and stuck5.held_bytes <= 3000
        assert len(stuck5.pending) == (3000 - 200) // 200  # the rest was dropped, not held
        assert len(stuck3.in_flight) == 5 and stuck3.held_bytes == 5 * 200
        # Packet identifiers: even with every one of them in flight, picking the next one ends.
        stuck3.in_flight = dict.fromkeys(range(1, 65536))
        assert 1 <= stuck3._packet_id() <= 65535

    run(tmp_path, scenario, limits)
