"""The MQTT 5 codec and the version dispatch of CONNECT, against hand-built packets (MQTT 5.0, section 3)."""

from __future__ import annotations

import pytest

from emulator.mqtt import codec, codec5
from emulator.mqtt import properties as props
from emulator.mqtt.packets import SubscriptionRequest
from emulator.mqtt.wire import MalformedPacket, ProtocolError, UnsupportedProtocol

MQTT = b"\x00\x04MQTT"


def test_mqtt5_connect_with_properties_will_and_credentials() -> None:
    body = (
        MQTT
        + b"\x05"  # level
        + b"\xce"  # username, password, will retain 0, will QoS 1, will, clean start
        + b"\x04\xb0"  # keep-alive 1200
        + b"\x0a"  # properties: 10 bytes
        + b"\x11\x00\x00\x0e\x10"  # Session Expiry Interval 3600
        + b"\x22\x00\x04"  # Topic Alias Maximum 4
        + b"\x19\x01"  # Request Response Information 1
        + b"\x00\x0emqtt5-sample-1"  # client id
        + b"\x05\x02\x00\x00\x00\x3c"  # will properties: Message Expiry Interval 60
        + b"\x00\x06will/t"
        + b"\x00\x03bye"
        + b"\x00\x04user"
        + b"\x00\x02pw"
    )
    connect = codec.parse_connect(body)
    assert (connect.protocol_level, connect.client_id, connect.clean_session, connect.keep_alive) == (
        5,
        "mqtt5-sample-1",
        True,
        1200,
    )
    assert connect.properties == {
        props.SESSION_EXPIRY_INTERVAL: 3600,
        props.TOPIC_ALIAS_MAXIMUM: 4,
        props.REQUEST_RESPONSE_INFORMATION: 1,
    }
    assert connect.will is not None
    assert (connect.will.topic, connect.will.payload, connect.will.qos, connect.will.retain) == (
        "will/t",
        b"bye",
        1,
        False,
    )
    assert connect.will.properties == {props.MESSAGE_EXPIRY_INTERVAL: 60}
    assert connect.username == "user"


def test_a_311_connect_is_read_in_its_own_layout() -> None:
    body = MQTT + b"\x04\x02\x00\x3c\x00\x06prov-1"
    connect = codec.parse_connect(body)
    assert (connect.protocol_level, connect.client_id, connect.properties) == (4, "prov-1", {})


@pytest.mark.parametrize(
    "body, level",
    [
        (b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c", 3),  # MQTT 3.1
        (MQTT + b"\x06\x02\x00\x3c\x00\x00", 6),
        (b"\x00\x04MQTX\x05\x02\x00\x3c\x00\x00\x00", 5),  # right level, wrong name
    ],
)
def test_an_unknown_protocol_is_refused_with_its_level(body: bytes, level: int) -> None:
    with pytest.raises(UnsupportedProtocol) as info:
        codec.parse_connect(body)
    assert info.value.level == level
    assert codec.protocol_level(body) == level


@pytest.mark.parametrize(
    "body, error, code",
    [
        (MQTT + b"\x05\x03\x00\x3c\x00\x00\x00", MalformedPacket, 0x81),  # reserved flag
        (MQTT + b"\x05\x18\x00\x3c\x00\x00\x00", MalformedPacket, 0x81),  # will QoS 3
        (MQTT + b"\x05\x02\x00\x3c\x06\x11\x00\x00\x00\x01", MalformedPacket, 0x81),  # props cut
        (MQTT + b"\x05\x02\x00\x3c\x03\x23\x00\x01\x00\x00", MalformedPacket, 0x81),  # Topic Alias in CONNECT
        (MQTT + b"\x05\x02\x00\x3c\x06\x21\x00\x01\x21\x00\x02\x00\x00", ProtocolError, 0x82),  # twice
        (MQTT + b"\x05\x02\x00\x3c\x00\x00\x00extra", MalformedPacket, 0x81),
        (MQTT + b"\x05", MalformedPacket, 0x81),
    ],
)
def test_a_bad_mqtt5_connect_carries_its_reason_code(body: bytes, error: type[Exception], code: int) -> None:
    with pytest.raises(error) as info:
        codec.parse_connect(body)
    assert isinstance(info.value, ProtocolError) and info.value.reason_code == code
    assert codec.protocol_level(body) == 5


def test_publish_with_properties_and_payload() -> None:
    body = b"\x00\x03a/b" + b"\x00\x07" + b"\x09\x23\x00\x02\x03\x00\x03x/y" + b"\xff\x00payload"
    message = codec5.parse_publish(0b1011, body)  # DUP, QoS 1, retain
    assert (message.topic, message.qos, message.retain, message.dup, message.packet_id) == (
        "a/b",
        1,
        True,
        True,
        7,
    )
    assert message.properties == {props.TOPIC_ALIAS: 2, props.CONTENT_TYPE: "x/y"}
    assert message.payload == b"\xff\x00payload"
    assert codec5.publish("a/b", b"\xff\x00payload", 1, 7, True, True, message.properties) == (
        bytes([0x3B, len(body)]) + body
    )


def test_publish_without_properties_is_one_zero_byte_longer_than_311() -> None:
    assert codec5.publish("t", b"x", 0, None) == b"\x30\x05\x00\x01t\x00x"
    assert codec.publish("t", b"x") == b"\x30\x04\x00\x01tx"


@pytest.mark.parametrize(
    "flags, body, code",
    [
        (0b0110, b"\x00\x01t\x00\x01\x00", 0x81),  # QoS 3
        (0b0010, b"\x00\x01t\x00\x00\x00", 0x82),  # packet identifier 0
        (0b0000, b"\x00\x01t\x03\x11\x00\x00", 0x81),  # Session Expiry Interval in PUBLISH
        (0b0000, b"\x00\x01t\x04\x01\x00\x01\x00", 0x82),  # Payload Format Indicator twice
        (0b0000, b"\x00\x01t\x09\x01\x00", 0x81),  # property length past the packet
    ],
)
def test_a_bad_publish_carries_its_reason_code(flags: int, body: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        codec5.parse_publish(flags, body)
    assert info.value.reason_code == code


def test_subscribe_options() -> None:
    body = (
        b"\x00\x09"  # packet id
        + b"\x02\x0b\x05"  # Subscription Identifier 5
        + b"\x00\x03a/#\x2d"  # retain handling 2, retain as published, no local, QoS 1
        + b"\x00\x01b\x00"
    )
    subscribe = codec5.parse_subscribe(body)
    assert subscribe.packet_id == 9 and subscribe.properties == {props.SUBSCRIPTION_IDENTIFIER: 5}
    assert subscribe.requests == (SubscriptionRequest("a/#", 1, True, True, 2), SubscriptionRequest("b", 0))


@pytest.mark.parametrize(
    "body, code",
    [
        (b"\x00\x01\x00\x00\x01a\x41", 0x81),  # reserved option bit
        (b"\x00\x01\x00\x00\x01a\x03", 0x81),  # QoS 3
        (b"\x00\x01\x00\x00\x01a\x30", 0x81),  # Retain Handling 3
        (b"\x00\x01\x00", 0x82),  # no filter
        (b"\x00\x01\x02\x01\x01\x00\x01a\x01", 0x81),  # Payload Format Indicator in SUBSCRIBE
    ],
)
def test_a_bad_subscribe_carries_its_reason_code(body: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        codec5.parse_subscribe(body)
    assert info.value.reason_code == code


def test_unsubscribe_puback_and_disconnect() -> None:
    unsubscribe = codec5.parse_unsubscribe(b"\x00\x04\x00\x00\x01a\x00\x01b")
    assert (unsubscribe.packet_id, unsubscribe.topic_filters) == (4, ("a", "b"))
    assert codec5.parse_puback(b"\x00\x07").reason_code == 0  # no reason code: Success
    ack = codec5.parse_puback(b"\x00\x07\x10\x03\x1f\x00\x00")
    assert (ack.packet_id, ack.reason_code, ack.properties) == (7, 0x10, {props.REASON_STRING: ""})
    assert codec5.parse_disconnect(b"").reason_code == 0
    disconnect = codec5.parse_disconnect(b"\x04\x05\x11\x00\x00\x00\x0a")
    assert (disconnect.reason_code, disconnect.properties) == (4, {props.SESSION_EXPIRY_INTERVAL: 10})
    with pytest.raises(MalformedPacket):
        codec5.parse_disconnect(b"\x00\x02\x26\x00")  # a user property cut short


def test_acknowledgements_as_the_client_reads_them() -> None:
    assert codec5.connack(False, 0x87) == b"\x20\x03\x00\x87\x00"
    assert codec5.connack(True, 0, {props.SERVER_KEEP_ALIVE: 60}) == b"\x20\x06\x01\x00\x03\x13\x00\x3c"
    assert codec5.connack(True, 0x80) == b"\x20\x03\x00\x80\x00"  # no session on a refusal (MQTT-3.2.2-6)
    assert codec5.puback(258) == b"\x40\x02\x01\x02"
    assert codec5.puback(258, 0x99) == b"\x40\x04\x01\x02\x99\x00"
    assert codec5.suback(1, [1, 0x87, 0x8F]) == b"\x90\x06\x00\x01\x00\x01\x87\x8f"
    assert codec5.unsuback(2, [0, 0x11]) == b"\xb0\x05\x00\x02\x00\x00\x11"
    assert codec5.disconnect(0x8E) == b"\xe0\x02\x8e\x00"
    assert codec5.disconnect(0) == b"\xe0\x00"


def test_the_311_codec_maps_reason_codes_to_what_311_has() -> None:
    v3 = codec.Codec311
    assert v3.connack(False, 0x84) == b"\x20\x02\x00\x01"
    assert v3.connack(False, 0x85) == b"\x20\x02\x00\x02"
    assert v3.connack(False, 0x87) == b""  # AWS IoT closes a refused 3.1.1 CONNECT without CONNACK
    assert v3.connack(True, 0) == b"\x20\x02\x01\x00"
    assert v3.suback(1, [1, 0x87, 0x8F, 0]) == b"\x90\x06\x00\x01\x01\x80\x80\x00"
    assert v3.disconnect(0x8E) == b""  # 3.1.1: closed without a word
    assert v3.publish("t", b"x", 1, 3, properties={props.USER_PROPERTY: [("k", "v")]}) == codec.publish(
        "t", b"x", 1, 3
    )
