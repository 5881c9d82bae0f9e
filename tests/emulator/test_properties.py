"""MQTT 5 properties against hand-built bytes: every wire type; malformed, duplicate, misplaced ones."""

from __future__ import annotations

import pytest

from emulator.mqtt import properties as props
from emulator.mqtt.wire import MalformedPacket, ProtocolError, Reader

# One property of each wire type, as the bytes of MQTT 5 section 2.2.2.2 / 1.5 spell them.
EVERY_TYPE = [
    (props.PUBLISH, b"\x01\x01", {props.PAYLOAD_FORMAT_INDICATOR: 1}),  # byte
    (props.PUBLISH, b"\x23\x00\x05", {props.TOPIC_ALIAS: 5}),  # two-byte integer
    (props.PUBLISH, b"\x02\x00\x01\x51\x80", {props.MESSAGE_EXPIRY_INTERVAL: 86_400}),  # four-byte integer
    (props.SUBSCRIBE, b"\x0b\x80\x01", {props.SUBSCRIPTION_IDENTIFIER: 128}),  # variable byte integer
    (props.SUBSCRIBE, b"\x0b\xff\xff\xff\x7f", {props.SUBSCRIPTION_IDENTIFIER: 268_435_455}),
    (props.PUBLISH, b"\x03\x00\x05t\xc3\xa9xt", {props.CONTENT_TYPE: "t\u00e9xt"}),  # UTF-8 string
    (props.PUBLISH, b"\x09\x00\x03\x00\xff\x01", {props.CORRELATION_DATA: b"\x00\xff\x01"}),  # binary data
    (
        props.PUBLISH,
        b"\x26\x00\x01k\x00\x02v1\x26\x00\x01k\x00\x00",  # UTF-8 string pair, repeated, empty value
        {props.USER_PROPERTY: [("k", "v1"), ("k", "")]},
    ),
    (props.PUBLISH, b"\x0b\x01\x0b\x02", {props.SUBSCRIPTION_IDENTIFIER: [1, 2]}),  # may repeat in PUBLISH
]


def read(packet_name: str, encoded: bytes, trailing: bytes = b"") -> tuple[dict[str, object], bytes]:
    reader = Reader(encoded + trailing)
    found = dict(props.decode(reader, packet_name))
    return found, reader.rest()


@pytest.mark.parametrize("packet_name, body, expected", EVERY_TYPE)
def test_every_property_type_decodes_and_encodes_to_the_same_bytes(
    packet_name: str, body: bytes, expected: dict[str, object]
) -> None:
    encoded = bytes([len(body)]) + body
    found, rest = read(packet_name, encoded, trailing=b"payload")
    assert found == expected and rest == b"payload"
    assert props.encode(expected, packet_name) == encoded


def test_no_properties_is_a_zero_length() -> None:
    assert read(props.PUBLISH, b"\x00", b"x") == ({}, b"x")
    assert props.encode({}, props.CONNACK) == b"\x00"


def test_a_property_list_longer_than_127_bytes_has_a_two_byte_length() -> None:
    pairs = [("key", "v" * 40)] * 3
    encoded = props.encode({props.USER_PROPERTY: pairs}, props.PUBLISH)
    assert encoded[:2] == bytes([(3 * 48) % 128 | 0x80, (3 * 48) // 128])
    assert read(props.PUBLISH, encoded)[0] == {props.USER_PROPERTY: pairs}


@pytest.mark.parametrize(
    "packet_name, encoded, why",
    [
        (props.PUBLISH, b"\x05\x02\x00\x00", "run past the packet"),  # length 5, three bytes follow
        (props.PUBLISH, b"\x02\x7f\x00", "unknown property 0x7F"),
        (props.PUBLISH, b"\x04\x03\x00\x01\xff", "not UTF-8"),  # Content Type with an invalid byte
        (props.PUBLISH, b"\x04\x03\x00\x01\x00", "U\\+0000"),
        (props.PUBLISH, b"\x03\x02\x00\x01", "packet too short"),  # four-byte integer cut short
        (props.SUBSCRIBE, b"\x03\x0b\x80\x00", "shortest form"),  # variable byte integer 0 in two bytes
        (props.SUBSCRIBE, b"\x06\x0b\x80\x80\x80\x80\x01", "longer than four bytes"),
        (props.PUBLISH, b"\x05\x26\x00\x01k\x00", "packet too short"),  # a pair without its value
        (props.PUBLISH, b"\x81\x01\x01", "run past the packet"),  # property length past the end
    ],
)
def test_malformed_properties_are_0x81(packet_name: str, encoded: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket, match=why) as info:
        read(packet_name, encoded)
    assert info.value.reason_code == 0x81


@pytest.mark.parametrize(
    "packet_name, encoded, name",
    [
        (props.PUBLISH, b"\x05\x11\x00\x00\x00\x3c", props.SESSION_EXPIRY_INTERVAL),
        (props.CONNECT, b"\x03\x23\x00\x01", props.TOPIC_ALIAS),
        (props.SUBSCRIBE, b"\x02\x01\x01", props.PAYLOAD_FORMAT_INDICATOR),
        (props.CONNACK, b"\x02\x17\x01", props.REQUEST_PROBLEM_INFORMATION),
        (props.WILL, b"\x03\x23\x00\x01", props.TOPIC_ALIAS),
        (props.PUBACK, b"\x02\x01\x01", props.PAYLOAD_FORMAT_INDICATOR),
    ],
)
def test_a_property_in_a_packet_that_does_not_allow_it_is_0x81(
    packet_name: str, encoded: bytes, name: str
) -> None:
    # MQTT 5 section 2.2.2.2: an identifier not valid for its packet type is a Malformed Packet.
    with pytest.raises(MalformedPacket, match=f"{name} is not allowed in {packet_name}"):
        read(packet_name, encoded)


@pytest.mark.parametrize(
    "packet_name, body",
    [
        (props.PUBLISH, b"\x03\x00\x01a\x03\x00\x01b"),  # Content Type twice
        (props.CONNECT, b"\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02"),  # Session Expiry Interval twice
        (props.SUBSCRIBE, b"\x0b\x01\x0b\x02"),  # Subscription Identifier twice (only PUBLISH may repeat it)
        (props.PUBLISH, b"\x23\x00\x01\x23\x00\x01"),  # Topic Alias twice, even with the same value
    ],
)
def test_a_duplicate_property_is_a_protocol_error_0x82(packet_name: str, body: bytes) -> None:
    with pytest.raises(ProtocolError, match="given twice") as info:
        read(packet_name, bytes([len(body)]) + body)
    assert type(info.value) is ProtocolError and info.value.reason_code == 0x82


@pytest.mark.parametrize(
    "packet_name, body, why",
    [
        (props.PUBLISH, b"\x01\x02", "must be 0 or 1"),
        (props.CONNECT, b"\x17\x05", "must be 0 or 1"),
        (props.CONNECT, b"\x21\x00\x00", "must not be 0"),  # Receive Maximum 0
        (props.CONNECT, b"\x27\x00\x00\x00\x00", "must not be 0"),  # Maximum Packet Size 0
        (props.SUBSCRIBE, b"\x0b\x00", "must not be 0"),  # Subscription Identifier 0
    ],
)
def test_a_forbidden_value_is_a_protocol_error_0x82(packet_name: str, body: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why) as info:
        read(packet_name, bytes([len(body)]) + body)
    assert info.value.reason_code == 0x82


def test_the_broker_cannot_encode_a_property_into_the_wrong_packet() -> None:
    with pytest.raises(ValueError, match="cannot be sent in PUBLISH"):
        props.encode({props.SERVER_KEEP_ALIVE: 30}, props.PUBLISH)
    with pytest.raises(ValueError, match="cannot be sent"):
        props.encode({"NoSuchProperty": 1}, props.CONNACK)


def test_the_table_covers_every_property_of_the_specification() -> None:
    assert sorted(props.TABLE) == [
        0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
        0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
    ]  # fmt: skip
