"""MQTT 5 packets (OASIS MQTT 5.0, section 3): parsing into `packets` objects and encoding.

The same packets as 3.1.1 plus a property list in each and reason codes on every acknowledgement.
AUTH (enhanced authentication) is not supported by AWS IoT: the broker treats it as a Protocol Error.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from emulator.mqtt import properties as props
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import (
    Ack,
    Connect,
    Disconnect,
    Publish,
    Subscribe,
    SubscriptionRequest,
    Unsubscribe,
    Will,
)
from emulator.mqtt.properties import EMPTY
from emulator.mqtt.wire import (
    CONNACK,
    DISCONNECT,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    UNSUBACK,
    MalformedPacket,
    ProtocolError,
    Reader,
    packet,
    string,
)

LEVEL = 5


def parse_connect_rest(r: Reader, name: str, level: int) -> Connect:
    """The CONNECT after its protocol name and level (section 3.1.2-3.1.3)."""
    flags = r.u8()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag set")  # MQTT-3.1.2-3
    will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
    if will_qos == 3:
        raise MalformedPacket("will QoS 3")  # MQTT-3.1.2-12
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("will QoS or retain set without a will")  # MQTT-3.1.2-11, -13
    keep_alive = r.u16()
    connect_properties = props.decode(r, props.CONNECT)
    client_id = r.string()
    will = None
    if will_flag:
        will_properties = props.decode(r, props.WILL)
        will_topic = r.string()
        will = Will(will_topic, r.raw(), will_qos, will_retain, will_properties)
    username = r.string() if flags & 0x80 else None
    if flags & 0x40:
        r.raw()  # password: AWS IoT's mTLS endpoint ignores it
    if not r.done:
        raise MalformedPacket("bytes after the CONNECT payload")
    return Connect(name, level, client_id, bool(flags & 0x02), keep_alive, will, username, connect_properties)


def parse_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")  # MQTT-3.3.1-4
    r = Reader(body)
    topic = r.string()
    packet_id = r.u16() if qos else None
    if packet_id == 0:
        raise ProtocolError("PUBLISH with packet identifier 0")  # MQTT-2.2.1-3
    publish_properties = props.decode(r, props.PUBLISH)
    return Publish(
        topic, r.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id, publish_properties
    )


def parse_subscribe(body: bytes) -> Subscribe:
    r = Reader(body)
    packet_id = r.u16()
    subscribe_properties = props.decode(r, props.SUBSCRIBE)
    requests = []
    while not r.done:
        topic_filter = r.string()
        options = r.u8()
        if options & 0xC0:
            raise MalformedPacket("reserved subscription option bits set")  # MQTT-3.8.3-5
        qos, retain_handling = options & 0x03, (options >> 4) & 0x03
        if qos == 3 or retain_handling == 3:
            raise MalformedPacket("subscription QoS or Retain Handling 3")
        requests.append(
            SubscriptionRequest(
                topic_filter, qos, bool(options & 0x04), bool(options & 0x08), retain_handling
            )
        )
    if not requests:
        raise ProtocolError("SUBSCRIBE without topic filters")  # MQTT-3.8.3-2
    return Subscribe(packet_id, tuple(requests), subscribe_properties)


def parse_unsubscribe(body: bytes) -> Unsubscribe:
    r = Reader(body)
    packet_id = r.u16()
    unsubscribe_properties = props.decode(r, props.UNSUBSCRIBE)
    filters = []
    while not r.done:
        filters.append(r.string())
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")  # MQTT-3.10.3-2
    return Unsubscribe(packet_id, tuple(filters), unsubscribe_properties)


def parse_puback(body: bytes) -> Ack:
    r = Reader(body)
    packet_id = r.u16()
    if r.done:
        return Ack(packet_id)  # section 3.4.2.1: no reason code means 0x00 Success
    reason = r.u8()
    ack_properties = props.decode(r, props.PUBACK) if not r.done else EMPTY
    return Ack(packet_id, reason, ack_properties)


def parse_disconnect(body: bytes) -> Disconnect:
    if not body:
        return Disconnect()
    r = Reader(body)
    reason = r.u8()
    disconnect_properties = props.decode(r, props.DISCONNECT) if not r.done else EMPTY
    return Disconnect(reason, disconnect_properties)


def connack(session_present: bool, reason: int, properties: Mapping[str, Any] | None = None) -> bytes:
    flags = 1 if session_present and reason == 0 else 0  # MQTT-3.2.2-6
    return packet(CONNACK << 4, bytes((flags, reason)) + props.encode(properties or EMPTY, props.CONNACK))


def publish(
    topic: str,
    payload: bytes,
    qos: int,
    packet_id: int | None,
    retain: bool = False,
    dup: bool = False,
    properties: Mapping[str, Any] | None = None,
) -> bytes:
    body = (
        string(topic)
        + (struct.pack("!H", packet_id) if qos else b"")
        + (props.encode(properties, props.PUBLISH) if properties else b"\x00")
        + payload
    )
    return packet((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), body)


def puback(packet_id: int, reason: int = 0) -> bytes:
    if not reason:
        return bytes([PUBACK << 4, 2]) + struct.pack("!H", packet_id)  # section 3.4.2.1
    return bytes([PUBACK << 4, 4]) + struct.pack("!HB", packet_id, reason) + b"\x00"


def suback(packet_id: int, codes: Sequence[int]) -> bytes:
    return packet(SUBACK << 4, struct.pack("!H", packet_id) + b"\x00" + bytes(codes))


def unsuback(packet_id: int, codes: Sequence[int]) -> bytes:
    return packet(UNSUBACK << 4, struct.pack("!H", packet_id) + b"\x00" + bytes(codes))


def disconnect(reason: int, properties: Mapping[str, Any] | None = None) -> bytes:
    if not reason and not properties:
        return bytes([DISCONNECT << 4, 0])
    return packet(DISCONNECT << 4, bytes((reason,)) + props.encode(properties or EMPTY, props.DISCONNECT))


def pingresp() -> bytes:
    return bytes([PINGRESP << 4, 0])


class Codec5:
    """MQTT 5 behind the broker's version-free interface: parse into `packets`, encode from them."""

    level = LEVEL
    version = "5"
    assigns_client_ids = True  # an empty client id gets Assigned Client Identifier in CONNACK
    enforces_maximum_qos = True  # the CONNACK announced Maximum QoS: QoS 2 is DISCONNECT 0x9B
    acks_with_reason_codes = True  # PUBACK 0x97 Quota exceeded for a publish AWS discards

    @staticmethod
    def read_limit(limits: Limits) -> int:
        return limits.maximum_packet_size  # as announced in CONNACK

    @staticmethod
    def session_expiry(connect: Connect, limits: Limits) -> tuple[int, int]:
        """(asked, granted) seconds. AWS: a session lives at most the account's persistent-session expiry
        (mqtt.html); a client that asks for longer (0xFFFFFFFF: never) is told that value in CONNACK."""
        requested = int(connect.properties.get(props.SESSION_EXPIRY_INTERVAL, 0))
        return requested, min(requested, limits.session_expiry_s)

    parse_publish = staticmethod(parse_publish)
    parse_subscribe = staticmethod(parse_subscribe)
    parse_unsubscribe = staticmethod(parse_unsubscribe)
    parse_puback = staticmethod(parse_puback)
    parse_disconnect = staticmethod(parse_disconnect)
    connack = staticmethod(connack)
    publish = staticmethod(publish)
    puback = staticmethod(puback)
    suback = staticmethod(suback)
    unsuback = staticmethod(unsuback)
    disconnect = staticmethod(disconnect)
    pingresp = staticmethod(pingresp)
