"""The broker with raw MQTT 5 clients over real TLS (fake gatekeeper): CONNACK, reason codes, properties,
topic aliases, flow control, and MQTT 3.1.1 and 5 clients talking to each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from emulator.mqtt import codec
from emulator.mqtt import properties as props
from emulator.mqtt.limits import Limits
from tests.emulator.mqtt_harness import (
    MQTT5,
    MQTT311,
    Env,
    broker_env,
    connect_packet,
    puback_packet,
    publish_packet,
    subscribe_packet,
)

AWS_CONNACK = {  # what AWS IoT Core announces (limits.py)
    props.RECEIVE_MAXIMUM: 100,
    props.MAXIMUM_QOS: 1,
    props.RETAIN_AVAILABLE: 1,
    props.MAXIMUM_PACKET_SIZE: 149_504,
    props.TOPIC_ALIAS_MAXIMUM: 8,
    props.WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
    props.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
    props.SHARED_SUBSCRIPTION_AVAILABLE: 1,
}


def run(tmp_path: Path, scenario: Callable[[Env], Awaitable[None]], **options: object) -> None:
    async def main() -> None:
        async with broker_env(tmp_path, **options) as env:  # type: ignore[arg-type]
            await scenario(env)

    asyncio.run(main())


def test_connack_announces_aws_iot_values(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        _, connack = await env.connected("ok-1", keep_alive=1200)
        assert connack.properties == {**AWS_CONNACK, props.SERVER_KEEP_ALIVE: 1200}
        # No client id: the server assigns one and says which.
        _, connack = await env.connected("")
        assigned = connack.properties[props.ASSIGNED_CLIENT_IDENTIFIER]
        assert len(assigned) == 36 and env.broker.sessions[assigned]
        # A session expiry over the account's is cut to it, and the CONNACK says so.
        _, connack = await env.connected("ok-2", properties={props.SESSION_EXPIRY_INTERVAL: 0xFFFFFFFF})
        assert connack.properties[props.SESSION_EXPIRY_INTERVAL] == 3600
        _, connack = await env.connected("ok-3", properties={props.SESSION_EXPIRY_INTERVAL: 60})
        assert props.SESSION_EXPIRY_INTERVAL not in connack.properties

    run(tmp_path, scenario)


def test_connect_refusals_are_readable_by_each_version(tmp_path: Path) -> None:
    async def refused(env: Env, client_id: str, version: int = MQTT5, **connect: object) -> bytes:
        client = await env.open(client_id, version, **connect)  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(client.reader.read(), 3)
        except (ConnectionError, OSError):
            return b""

    async def scenario(env: Env) -> None:
        assert await refused(env, "nope") == b"\x20\x03\x00\x87\x00"  # policy: CONNACK 0x87
        assert await refused(env, "nope", MQTT311) == b""  # 3.1.1: closed without CONNACK (AWS)
        assert await refused(env, "gone") == b""  # certificate not accepted: hang-up, both versions
        assert await refused(env, "ok", 6) == b"\x20\x03\x00\x84\x00"  # newer than 5: MQTT 5's CONNACK
        assert await refused(env, "ok", 3) == b"\x20\x02\x00\x01"  # older: 3.1.1's return code 1
        assert await refused(env, "", MQTT311) == b"\x20\x02\x00\x02"
        assert (
            await refused(env, "ok", raw_properties=b"\x06\x21\x00\x01\x21\x00\x01")
            == b"\x20\x03\x00\x82\x00"
        )
        assert await refused(env, "ok", raw_properties=b"\x03\x23\x00\x01") == b"\x20\x03\x00\x81\x00"
        method = props.encode({props.AUTHENTICATION_METHOD: "SCRAM-SHA-1"}, props.CONNECT)
        assert await refused(env, "ok", raw_properties=method) == b"\x20\x03\x00\x8c\x00"

    run(tmp_path, scenario)


async def disconnect_reason(env: Env, data: bytes) -> int | None:
    client, _ = await env.connected("ok-victim")
    await client.send(data)
    return await client.disconnected_with()


@pytest.mark.parametrize(
    "data, reason",
    [
        (publish_packet("allowed/a", b"x", raw_properties=b"\x05\x11\x00\x00\x00\x01"), 0x81),  # misplaced
        (publish_packet("allowed/a", b"x", raw_properties=b"\x04\x01\x01\x01\x01"), 0x82),  # duplicate
        (publish_packet("allowed/a", b"x", raw_properties=b"\x07\x03\x00\x01"), 0x81),  # runs past
        (publish_packet("allowed/a", b"x", raw_properties=b"\x02\x01\x07"), 0x82),  # flag 7
        (publish_packet("allowed/a", b"x", properties={props.TOPIC_ALIAS: 9}), 0x94),  # over the 8 announced
        (publish_packet("allowed/a", b"x", raw_properties=b"\x03\x23\x00\x00"), 0x94),  # alias 0
        (publish_packet("", b"x", properties={props.TOPIC_ALIAS: 3}), 0x82),  # alias never set
        (publish_packet("allowed/+", b"x"), 0x90),
        (publish_packet("allowed/a", b"x", qos=2, packet_id=1), 0x9B),  # Maximum QoS was 1
        (publish_packet("forbidden/a", b"x", qos=1, packet_id=1), 0x87),  # iot:Publish denied
        (publish_packet("allowed/a", b"x" * (129 * 1024), qos=1, packet_id=1), 0x95),  # over 128 KB
        (publish_packet("allowed/a", b"x" * 149_504), 0x95),  # over the Maximum Packet Size
        (publish_packet("allowed/a", b"x", properties={props.SUBSCRIPTION_IDENTIFIER: [1]}), 0x82),
        (subscribe_packet(1, ("$share/g/allowed/a", 0x05)), 0x82),  # No Local on a shared subscription
        (bytes([codec.AUTH << 4, 0]), 0x82),  # no enhanced authentication
        (bytes([codec.PUBREL << 4 | 2, 2, 0, 1]), 0x82),  # QoS 2 flow
        (connect_packet("ok-victim"), 0x82),  # a second CONNECT
        (b"\x82\x05\x00\x01\x00\x00\x05", 0x81),  # SUBSCRIBE whose filter runs past the packet
        (b"\x82\x03\x00\x01\x00", 0x82),  # SUBSCRIBE without a filter
    ],
)
def test_a_broken_or_refused_packet_gets_a_disconnect_with_its_reason(
    tmp_path: Path, data: bytes, reason: int
) -> None:
    async def scenario(env: Env) -> None:
        assert await disconnect_reason(env, data) == reason

    run(tmp_path, scenario)


def test_subscribe_reason_codes_per_filter(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        client, _ = await env.connected("ok-1")
        await client.send(subscribe_packet(1, "allowed/a", "forbidden/#", "allowed/#/x", ("allowed/b", 0x02)))
        assert await client.suback() == [0x01, 0x87, 0x8F, 0x01]  # QoS 2 asked: 1 granted
        await client.send(subscribe_packet(2, "allowed/c", properties={props.SUBSCRIPTION_IDENTIFIER: 7}))
        assert await client.suback() == [0xA1]  # Subscription Identifiers: not available
        await client.send(_unsubscribe(3, "allowed/a", "nothing"))
        _, body = await client.expect(codec.UNSUBACK)
        assert body == b"\x00\x03\x00\x00\x11"  # Success, No subscription existed
        assert await client.silent()  # still connected

    run(tmp_path, scenario)


def _unsubscribe(packet_id: int, *filters: str) -> bytes:
    from emulator.mqtt.wire import packet, string

    return packet(0xA2, packet_id.to_bytes(2, "big") + b"\x00" + b"".join(string(f) for f in filters))


def test_duplicate_client_id_and_keep_alive(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        older, _ = await env.connected("ok-dup")
        older311, _ = await env.connected("ok-dup3", MQTT311)
        await env.connected("ok-dup")
        await env.connected("ok-dup3", MQTT5)
        assert await older.disconnected_with() == 0x8E  # Session taken over
        assert await older311.disconnected_with() is None  # 3.1.1: closed
        sleepy, _ = await env.connected("ok-sleepy", keep_alive=1)
        assert await sleepy.disconnected_with(timeout=3) == 0x8D

    # AWS holds keep-alive to 30 s at least (test_limits.py): lowered so that the timeout takes a second.
    run(tmp_path, scenario, limits=Limits(keep_alive_min_s=1))


def test_properties_relayed_and_topic_aliases_both_ways(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        subscriber, _ = await env.connected("ok-sub", properties={props.TOPIC_ALIAS_MAXIMUM: 2})
        await subscriber.send(subscribe_packet(1, "allowed/#"))
        await subscriber.suback()
        publisher, _ = await env.connected("ok-pub")
        relayed = {
            props.USER_PROPERTY: [("trace", "1"), ("trace", "2")],
            props.RESPONSE_TOPIC: "allowed/reply",
            props.CORRELATION_DATA: b"\x01\x02",
            props.CONTENT_TYPE: "application/json",
            props.PAYLOAD_FORMAT_INDICATOR: 1,
        }
        # Client to broker: set alias 3 with its topic, then use it alone.
        await publisher.send(
            publish_packet(
                "allowed/t", b"one", qos=1, packet_id=1, properties={**relayed, props.TOPIC_ALIAS: 3}
            )
        )
        await publisher.expect(codec.PUBACK)
        await publisher.send(
            publish_packet("", b"two", qos=1, packet_id=2, properties={props.TOPIC_ALIAS: 3})
        )
        await publisher.expect(codec.PUBACK)
        first, second = await subscriber.message(), await subscriber.message()
        # Broker to client: alias 1 comes with its topic first, then alone.
        assert (first.topic, first.payload) == ("allowed/t", b"one")
        assert first.properties == {**relayed, props.TOPIC_ALIAS: 1}
        assert (second.topic, second.payload, second.properties) == ("", b"two", {props.TOPIC_ALIAS: 1})
        # Message expiry: relayed as what is left of it.
        await publisher.send(
            publish_packet("allowed/e", b"e", properties={props.MESSAGE_EXPIRY_INTERVAL: 30})
        )
        expiring = await subscriber.message()
        assert 29 <= expiring.properties[props.MESSAGE_EXPIRY_INTERVAL] <= 30
        # Payload Format Indicator 1 with bytes that are not UTF-8: PUBACK 0x99, not relayed.
        await publisher.send(
            publish_packet(
                "allowed/t", b"\xff", qos=1, packet_id=3, properties={props.PAYLOAD_FORMAT_INDICATOR: 1}
            )
        )
        _, body = await publisher.expect(codec.PUBACK)
        assert body[:3] == b"\x00\x03\x99"
        assert await subscriber.silent()

    run(tmp_path, scenario)


def test_mqtt311_and_mqtt5_clients_talk_to_each_other(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        v3, _ = await env.connected("ok-v3", MQTT311)
        v5, _ = await env.connected("ok-v5")
        for client in (v3, v5):
            await client.send(subscribe_packet(1, "allowed/#", version=client.version))
            assert await client.suback() == [1]
        await v3.send(publish_packet("allowed/from3", b"hello 5", MQTT311, qos=1, packet_id=5))
        await v3.expect(codec.PUBACK)
        to5 = await v5.message()
        assert (to5.topic, to5.payload, to5.qos, to5.properties) == ("allowed/from3", b"hello 5", 1, {})
        await v3.message()  # its own message too (no No Local in 3.1.1)
        await v5.send(
            publish_packet(
                "allowed/from5",
                b"hello 3",
                qos=1,
                packet_id=6,
                properties={props.USER_PROPERTY: [("k", "v")]},
            )
        )
        to3 = await v3.message()
        assert (to3.topic, to3.payload, to3.qos) == ("allowed/from5", b"hello 3", 1)  # properties dropped

    run(tmp_path, scenario)


def test_no_local_and_retain_as_published(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        me, _ = await env.connected("ok-me")
        await me.send(subscribe_packet(1, ("allowed/mine", 0x05), ("allowed/keep", 0x09)))  # No Local; RAP
        assert await me.suback() == [1, 1]
        await me.send(publish_packet("allowed/mine", b"echo?"))
        assert await me.silent()  # No Local: not sent back to its publisher
        await me.send(publish_packet("allowed/keep", b"r", retain=True))
        kept = await me.message()
        assert kept.retain  # Retain As Published

    run(tmp_path, scenario)


def test_shared_subscription_delivers_each_message_to_one_member(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        workers = [(await env.connected(f"ok-worker{i}"))[0] for i in range(3)]
        for worker in workers:
            await worker.send(subscribe_packet(1, "$share/pool/allowed/jobs/+"))
            assert await worker.suback() == [1]
        publisher, _ = await env.connected("ok-boss")
        for i in range(30):
            await publisher.send(publish_packet(f"allowed/jobs/{i}", b"job"))
        counts = []
        for worker in workers:
            count = 0
            while True:
                try:
                    await worker.message(timeout=0.5)
                except TimeoutError:
                    break
                count += 1
            counts.append(count)
        assert sum(counts) == 30 and max(counts) < 30  # each once, not all to one member

    run(tmp_path, scenario)


def test_flow_control_and_maximum_packet_size_towards_the_client(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        small, _ = await env.connected(
            "ok-small", properties={props.RECEIVE_MAXIMUM: 1, props.MAXIMUM_PACKET_SIZE: 200}
        )
        await small.send(subscribe_packet(1, "allowed/#"))
        await small.suback()
        publisher, _ = await env.connected("ok-pub")
        await publisher.send(publish_packet("allowed/big", b"x" * 300, qos=1, packet_id=1))
        for i in range(3):
            await publisher.send(publish_packet("allowed/small", bytes([i]), qos=1, packet_id=2 + i))
        first = await small.message()
        assert first.payload == b"\x00"  # the 300-byte one was over the client's 200: not sent
        assert await small.silent()  # Receive Maximum 1: nothing more until the PUBACK
        await small.send(puback_packet(first.packet_id or 0))
        second = await small.message()
        assert second.payload == b"\x01"
        await small.send(puback_packet(second.packet_id or 0))
        assert (await small.message()).payload == b"\x02"

    run(tmp_path, scenario)


def test_alpn_x_amzn_mqtt_ca_on_both_ports(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        main, second = env.broker.ports
        assert main != second
        for port in (main, second):
            for alpn in (["x-amzn-mqtt-ca"], None, ["http/1.1"]):
                client = await env.open("ok-alpn", port=port, alpn=alpn)
                assert (await client.connack()).reason_code == 0
                selected = client.writer.get_extra_info("ssl_object").selected_alpn_protocol()
                assert selected == ("x-amzn-mqtt-ca" if alpn == ["x-amzn-mqtt-ca"] else None)
                client.writer.close()

    run(tmp_path, scenario, extra_ports=(0,))


def test_shutdown_tells_mqtt5_clients(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        client, _ = await env.connected("ok-1")
        await env.broker.stop()
        assert await client.disconnected_with() == 0x8B

    run(tmp_path, scenario, limits=Limits())
