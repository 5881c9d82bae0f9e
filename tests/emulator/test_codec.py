"""MQTT 3.1.1 packet encoding/parsing and AWS IoT's topic matching."""

from __future__ import annotations

import asyncio

import pytest

from emulator.mqtt import codec


def roundtrip(data: bytes) -> tuple[int, int, bytes]:
    async def read() -> tuple[int, int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await codec.read_packet(reader, 1 << 20)

    return asyncio.run(read())


@pytest.mark.parametrize("size", [0, 5, 127, 128, 16383, 16384, 200_000])
def test_publish_roundtrip_with_every_remaining_length_width(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    kind, flags, body = roundtrip(codec.publish("a/b", payload, qos=1, packet_id=7))
    assert kind == codec.PUBLISH
    message = codec.parse_publish(flags, body)
    assert (message.topic, message.payload, message.qos, message.packet_id) == ("a/b", payload, 1, 7)


def test_read_packet_refuses_oversized_packets() -> None:
    async def read() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(codec.publish("t", b"x" * 2000))
        await codec.read_packet(reader, 1000)

    with pytest.raises(codec.ProtocolError, match="exceeds"):
        asyncio.run(read())


def test_connect_parsing() -> None:
    body = (
        codec._string("MQTT")
        + bytes([4, 0x02 | 0x04 | 0x08 | 0x80])
        + (60).to_bytes(2, "big")
        + codec._string("prov-1")
        + codec._string("will/t")
        + codec._string("bye")
        + codec._string("user")
    )
    connect = codec.parse_connect(body)
    assert (connect.client_id, connect.keep_alive, connect.clean_session, connect.username) == (
        "prov-1",
        60,
        True,
        "user",
    )
    assert connect.will is not None and (connect.will.topic, connect.will.payload, connect.will.qos) == (
        "will/t",
        b"bye",
        1,
    )


def test_connect_with_reserved_flag_is_a_protocol_error() -> None:
    body = codec._string("MQTT") + bytes([4, 0x03]) + (60).to_bytes(2, "big") + codec._string("c")
    with pytest.raises(codec.ProtocolError):
        codec.parse_connect(body)


def test_subscribe_and_unsubscribe_parsing() -> None:
    body = (3).to_bytes(2, "big") + codec._string("a/+") + bytes([1]) + codec._string("#") + bytes([0])
    assert codec.parse_subscribe(body) == (3, [("a/+", 1), ("#", 0)])
    assert codec.parse_unsubscribe((4).to_bytes(2, "big") + codec._string("a/+")) == (4, ["a/+"])
    with pytest.raises(codec.ProtocolError):
        codec.parse_subscribe((3).to_bytes(2, "big"))


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a/b/c", True),
        ("a/#", "a", False),  # AWS IoT: the parent is not matched
        ("#", "a/b", True),
        ("#", "$aws/things/x/shadow/update", False),  # MQTT-4.7.2-1
        ("+/things/x", "$aws/things/x", False),
        ("$aws/things/+/shadow/#", "$aws/things/x/shadow/update/accepted", True),
        ("a/+/c", "a//c", True),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert codec.topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "topic_filter, valid",
    [("a/#", True), ("a/#/b", False), ("a+", False), ("+", True), ("", False), ("a/b#", False)],
)
def test_topic_filter_validation(topic_filter: str, valid: bool) -> None:
    assert codec.valid_topic_filter(topic_filter) is valid


def test_acks() -> None:
    assert codec.connack(0) == b"\x20\x02\x00\x00"
    assert codec.puback(258) == b"\x40\x02\x01\x02"
    assert codec.suback(1, [1, 0x80]) == b"\x90\x04\x00\x01\x01\x80"
    assert codec.pingresp() == b"\xd0\x00"
