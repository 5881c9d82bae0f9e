"""MQTT 5 properties, driven by one table (MQTT 5 section 2.2.2.2, as paho's properties.py).

Each property: its identifier, its name, its wire type, and the packets it may appear in. Decoding and
encoding are one loop over the table; a property in the wrong packet is caught by the same lookup.
Decoded properties are a plain dict keyed by name; User Property (and, in PUBLISH, Subscription
Identifier) may repeat and decode to a list.

Errors, as MQTT 5 section 2.2.2.2 and each property's rules say:
- an identifier the table does not know, or not allowed in this packet, a value not of its type, a
  property list that runs past its length: Malformed Packet (0x81);
- a property given twice where the specification allows it once, or a value the specification forbids
  (Receive Maximum 0, a flag other than 0/1): Protocol Error (0x82).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from emulator.mqtt.wire import MalformedPacket, ProtocolError, Reader, binary, string, varint


class Kind(Enum):
    BYTE = "byte"
    TWO = "two-byte integer"
    FOUR = "four-byte integer"
    VARINT = "variable byte integer"
    UTF8 = "UTF-8 string"
    BINARY = "binary data"
    PAIR = "UTF-8 string pair"


# Packet names as the table uses them; WILL is the will properties inside CONNECT's payload.
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = (
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
)
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH, WILL = (
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "DISCONNECT",
    "AUTH",
    "WILL",
)

PAYLOAD_FORMAT_INDICATOR = "PayloadFormatIndicator"
MESSAGE_EXPIRY_INTERVAL = "MessageExpiryInterval"
CONTENT_TYPE = "ContentType"
RESPONSE_TOPIC = "ResponseTopic"
CORRELATION_DATA = "CorrelationData"
SUBSCRIPTION_IDENTIFIER = "SubscriptionIdentifier"
SESSION_EXPIRY_INTERVAL = "SessionExpiryInterval"
ASSIGNED_CLIENT_IDENTIFIER = "AssignedClientIdentifier"
SERVER_KEEP_ALIVE = "ServerKeepAlive"
AUTHENTICATION_METHOD = "AuthenticationMethod"
AUTHENTICATION_DATA = "AuthenticationData"
REQUEST_PROBLEM_INFORMATION = "RequestProblemInformation"
WILL_DELAY_INTERVAL = "WillDelayInterval"
REQUEST_RESPONSE_INFORMATION = "RequestResponseInformation"
RESPONSE_INFORMATION = "ResponseInformation"
SERVER_REFERENCE = "ServerReference"
REASON_STRING = "ReasonString"
RECEIVE_MAXIMUM = "ReceiveMaximum"
TOPIC_ALIAS_MAXIMUM = "TopicAliasMaximum"
TOPIC_ALIAS = "TopicAlias"
MAXIMUM_QOS = "MaximumQoS"
RETAIN_AVAILABLE = "RetainAvailable"
USER_PROPERTY = "UserProperty"
MAXIMUM_PACKET_SIZE = "MaximumPacketSize"
WILDCARD_SUBSCRIPTION_AVAILABLE = "WildcardSubscriptionAvailable"
SUBSCRIPTION_IDENTIFIER_AVAILABLE = "SubscriptionIdentifierAvailable"
SHARED_SUBSCRIPTION_AVAILABLE = "SharedSubscriptionAvailable"

_ACKS = frozenset({PUBACK, PUBREC, PUBREL, PUBCOMP})


@dataclass(frozen=True)
class Property:
    identifier: int
    name: str
    kind: Kind
    packets: frozenset[str]
    repeatable: frozenset[str] = frozenset()  # packets where it may appear more than once
    flag: bool = False  # a byte whose only valid values are 0 and 1
    nonzero: bool = False  # zero is a Protocol Error


def _p(identifier: int, name: str, kind: Kind, *packets: str, **rules: Any) -> Property:
    return Property(identifier, name, kind, frozenset(packets), **rules)


TABLE: dict[int, Property] = {
    p.identifier: p
    for p in (
        _p(0x01, PAYLOAD_FORMAT_INDICATOR, Kind.BYTE, PUBLISH, WILL, flag=True),
        _p(0x02, MESSAGE_EXPIRY_INTERVAL, Kind.FOUR, PUBLISH, WILL),
        _p(0x03, CONTENT_TYPE, Kind.UTF8, PUBLISH, WILL),
        _p(0x08, RESPONSE_TOPIC, Kind.UTF8, PUBLISH, WILL),
        _p(0x09, CORRELATION_DATA, Kind.BINARY, PUBLISH, WILL),
        _p(
            0x0B,
            SUBSCRIPTION_IDENTIFIER,
            Kind.VARINT,
            PUBLISH,
            SUBSCRIBE,
            repeatable=frozenset({PUBLISH}),
            nonzero=True,
        ),
        _p(0x11, SESSION_EXPIRY_INTERVAL, Kind.FOUR, CONNECT, CONNACK, DISCONNECT),
        _p(0x12, ASSIGNED_CLIENT_IDENTIFIER, Kind.UTF8, CONNACK),
        _p(0x13, SERVER_KEEP_ALIVE, Kind.TWO, CONNACK),
        _p(0x15, AUTHENTICATION_METHOD, Kind.UTF8, CONNECT, CONNACK, AUTH),
        _p(0x16, AUTHENTICATION_DATA, Kind.BINARY, CONNECT, CONNACK, AUTH),
        _p(0x17, REQUEST_PROBLEM_INFORMATION, Kind.BYTE, CONNECT, flag=True),
        _p(0x18, WILL_DELAY_INTERVAL, Kind.FOUR, WILL),
        _p(0x19, REQUEST_RESPONSE_INFORMATION, Kind.BYTE, CONNECT, flag=True),
        _p(0x1A, RESPONSE_INFORMATION, Kind.UTF8, CONNACK),
        _p(0x1C, SERVER_REFERENCE, Kind.UTF8, CONNACK, DISCONNECT),
        _p(0x1F, REASON_STRING, Kind.UTF8, CONNACK, SUBACK, UNSUBACK, DISCONNECT, AUTH, *_ACKS),
        _p(0x21, RECEIVE_MAXIMUM, Kind.TWO, CONNECT, CONNACK, nonzero=True),
        _p(0x22, TOPIC_ALIAS_MAXIMUM, Kind.TWO, CONNECT, CONNACK),
        # Topic Alias 0 is not a Protocol Error here: the broker answers it with 0x94 Topic Alias invalid.
        _p(0x23, TOPIC_ALIAS, Kind.TWO, PUBLISH),
        _p(0x24, MAXIMUM_QOS, Kind.BYTE, CONNACK, flag=True),
        _p(0x25, RETAIN_AVAILABLE, Kind.BYTE, CONNACK, flag=True),
        _p(
            0x26,
            USER_PROPERTY,
            Kind.PAIR,
            *(
                CONNECT,
                CONNACK,
                PUBLISH,
                WILL,
                SUBSCRIBE,
                SUBACK,
                UNSUBSCRIBE,
                UNSUBACK,
                DISCONNECT,
                AUTH,
                *_ACKS,
            ),
            repeatable=frozenset(
                {CONNECT, CONNACK, PUBLISH, WILL, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH}
                | _ACKS
            ),
        ),
        _p(0x27, MAXIMUM_PACKET_SIZE, Kind.FOUR, CONNECT, CONNACK, nonzero=True),
        _p(0x28, WILDCARD_SUBSCRIPTION_AVAILABLE, Kind.BYTE, CONNACK, flag=True),
        _p(0x29, SUBSCRIPTION_IDENTIFIER_AVAILABLE, Kind.BYTE, CONNACK, flag=True),
        _p(0x2A, SHARED_SUBSCRIPTION_AVAILABLE, Kind.BYTE, CONNACK, flag=True),
    )
}
BY_NAME: dict[str, Property] = {p.name: p for p in TABLE.values()}


class _NoProperties(Mapping[str, Any]):
    """The empty, immutable and hashable property list: the default of every packet object."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # no KeyError on the hot path
        return default

    def __contains__(self, key: object) -> bool:
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


EMPTY: Mapping[str, Any] = _NoProperties()


def _read_value(reader: Reader, kind: Kind) -> Any:
    if kind is Kind.BYTE:
        return reader.u8()
    if kind is Kind.TWO:
        return reader.u16()
    if kind is Kind.FOUR:
        return reader.u32()
    if kind is Kind.VARINT:
        return reader.varint()
    if kind is Kind.UTF8:
        return reader.string()
    if kind is Kind.BINARY:
        return reader.raw()
    return (reader.string(), reader.string())


def decode(reader: Reader, packet_name: str) -> Mapping[str, Any]:
    """Read a property length and the properties after it, for `packet_name`."""
    length = reader.varint()
    if not length:
        return EMPTY
    end = reader.pos + length
    if end > reader.end:
        raise MalformedPacket(f"{packet_name} properties run past the packet")
    inner = Reader(reader.data, reader.pos, end)
    found: dict[str, Any] = {}
    while not inner.done:
        identifier = inner.varint()
        prop = TABLE.get(identifier)
        if prop is None:
            raise MalformedPacket(f"unknown property 0x{identifier:02X} in {packet_name}")
        if packet_name not in prop.packets:
            raise MalformedPacket(f"property {prop.name} is not allowed in {packet_name}")
        value = _read_value(inner, prop.kind)
        if prop.flag and value not in (0, 1):
            raise ProtocolError(f"{prop.name} must be 0 or 1, not {value}")
        if prop.nonzero and value == 0:
            raise ProtocolError(f"{prop.name} must not be 0")
        if packet_name in prop.repeatable:
            found.setdefault(prop.name, []).append(value)
        elif prop.name in found:
            raise ProtocolError(f"property {prop.name} given twice in {packet_name}")
        else:
            found[prop.name] = value
    reader.pos = end
    return found


def _write_value(kind: Kind, value: Any) -> bytes:
    if kind is Kind.BYTE:
        return bytes((value,))
    if kind is Kind.TWO:
        return struct.pack("!H", value)
    if kind is Kind.FOUR:
        return struct.pack("!I", value)
    if kind is Kind.VARINT:
        return varint(value)
    if kind is Kind.UTF8:
        return string(value)
    if kind is Kind.BINARY:
        return binary(value)
    key, text = value
    return string(key) + string(text)


def encode(properties: Mapping[str, Any], packet_name: str) -> bytes:
    """The property length and the properties, for `packet_name`. A name the table does not allow in that
    packet is a bug in the broker, not the client's doing: ValueError."""
    if not properties:
        return b"\x00"
    out = bytearray()
    for name, value in properties.items():
        prop = BY_NAME.get(name)
        if prop is None or packet_name not in prop.packets:
            raise ValueError(f"property {name} cannot be sent in {packet_name}")
        values = value if packet_name in prop.repeatable else (value,)
        for item in values:
            out += varint(prop.identifier)
            out += _write_value(prop.kind, item)
    return varint(len(out)) + bytes(out)
