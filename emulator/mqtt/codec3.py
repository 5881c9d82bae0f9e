"""MQTT 3.1.1 packets (OASIS MQTT 3.1.1, sections 2-3): parsing into `packets` objects and encoding.

Only what AWS IoT speaks: CONNECT/CONNACK, PUBLISH QoS 0/1 + PUBACK, SUBSCRIBE/SUBACK,
UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT. 3.1.1 has no properties and no reason codes
except on CONNACK and SUBACK: `Codec311` maps the broker's MQTT 5 reason codes onto them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from emulator.mqtt import reasons
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
from emulator.mqtt.wire import (
    CONNACK,
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

LEVEL = 4
CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL = 1
CONNACK_IDENTIFIER_REJECTED = 2
SUBACK_FAILURE = 0x80


def parse_connect_rest(r: Reader, name: str, level: int) -> Connect:
    """The CONNECT after its protocol name and level."""
    flags = r.u8()
    if flags & 0x01:
        raise ProtocolError("reserved CONNECT flag set")  # MQTT-3.1.2-3
    keep_alive = r.u16()
    client_id = r.string()
    will = None
    if flags & 0x04:
        will_topic = r.string()
        will = Will(will_topic, r.raw(), (flags >> 3) & 0x03, bool(flags & 0x20))
    username = r.string() if flags & 0x80 else None
    if flags & 0x40:
        r.raw()  # password: AWS IoT's mTLS endpoint ignores it
    return Connect(name, level, client_id, bool(flags & 0x02), keep_alive, will, username)


def parse_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    r = Reader(body)
    topic = r.string()
    packet_id = r.u16() if qos else None
    return Publish(topic, r.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)


def parse_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    r = Reader(body)
    packet_id = r.u16()
    filters = []
    while not r.done:
        topic_filter = r.string()
        filters.append((topic_filter, r.u8() & 0x03))
    if not filters:
        raise ProtocolError("SUBSCRIBE without topic filters")  # MQTT-3.8.3-3
    return packet_id, filters


def parse_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    r = Reader(body)
    packet_id = r.u16()
    filters = []
    while not r.done:
        filters.append(r.string())
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")
    return packet_id, filters


def parse_packet_id(body: bytes) -> int:
    return Reader(body).u16()


def connack(return_code: int, session_present: bool = False) -> bytes:
    return bytes([CONNACK << 4, 2, 1 if session_present else 0, return_code])


def publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
    properties: Mapping[str, Any] | None = None,  # 3.1.1 has none: MQTT 5 properties are dropped
) -> bytes:
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), body)


def puback(packet_id: int, reason: int = 0) -> bytes:
    """3.1.1's PUBACK has no reason code: a refused QoS 1 PUBLISH closes the connection instead."""
    return bytes([PUBACK << 4, 2]) + struct.pack("!H", packet_id)


def suback(packet_id: int, codes: Sequence[int]) -> bytes:
    return packet(SUBACK << 4, struct.pack("!H", packet_id) + bytes(codes))


def unsuback(packet_id: int) -> bytes:
    return bytes([UNSUBACK << 4, 2]) + struct.pack("!H", packet_id)


def pingresp() -> bytes:
    return bytes([PINGRESP << 4, 0])


class Codec311:
    """MQTT 3.1.1 behind the broker's version-free interface (see `codec5.Codec5`)."""

    level = LEVEL
    version = "3.1.1"
    # An empty client id is refused with return code 2 (AWS IoT assigns ids to MQTT 5 clients only).
    assigns_client_ids = False
    # 3.1.1 cannot announce a Maximum QoS: a QoS 2 PUBLISH is ignored, as AWS IoT does (no PUBACK).
    enforces_maximum_qos = False
    acks_with_reason_codes = False  # a PUBACK cannot refuse: a publish AWS discards gets none

    @staticmethod
    def read_limit(limits: Limits) -> int:
        return limits.maximum_packet_size_v3

    @staticmethod
    def session_expiry(connect: Connect, limits: Limits) -> tuple[int, int]:
        """(asked, granted) seconds: cleanSession=0 gets the account's persistent-session expiry."""
        expiry = 0 if connect.clean_session else limits.session_expiry_s
        return expiry, expiry

    @staticmethod
    def parse_publish(flags: int, body: bytes) -> Publish:
        return parse_publish(flags, body)

    @staticmethod
    def parse_subscribe(body: bytes) -> Subscribe:
        packet_id, filters = parse_subscribe(body)
        return Subscribe(packet_id, tuple(SubscriptionRequest(f, qos) for f, qos in filters))

    @staticmethod
    def parse_unsubscribe(body: bytes) -> Unsubscribe:
        packet_id, filters = parse_unsubscribe(body)
        return Unsubscribe(packet_id, tuple(filters))

    @staticmethod
    def parse_puback(body: bytes) -> Ack:
        return Ack(parse_packet_id(body))

    @staticmethod
    def parse_disconnect(body: bytes) -> Disconnect:
        return Disconnect()

    @staticmethod
    def connack(session_present: bool, reason: int, properties: Mapping[str, Any] | None = None) -> bytes:
        """b"" where 3.1.1 has no return code for the reason: the connection is closed without a CONNACK."""
        code = reasons.connack_return_code(reason)
        return b"" if code is None else connack(code, session_present and not code)

    publish = staticmethod(publish)
    puback = staticmethod(puback)

    @staticmethod
    def suback(packet_id: int, codes: Sequence[int]) -> bytes:
        return suback(packet_id, [reasons.suback_return_code(code) for code in codes])

    @staticmethod
    def unsuback(packet_id: int, codes: Sequence[int]) -> bytes:
        return unsuback(packet_id)

    @staticmethod
    def disconnect(reason: int, properties: Mapping[str, Any] | None = None) -> bytes:
        return b""  # 3.1.1: the server closes the connection, it cannot say why

    pingresp = staticmethod(pingresp)
