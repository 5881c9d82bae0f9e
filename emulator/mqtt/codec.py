"""MQTT 3.1.1 packets: reading from a stream, parsing, encoding (OASIS MQTT 3.1.1, section 2-3).

Only what AWS IoT speaks: CONNECT/CONNACK, PUBLISH QoS 0/1 + PUBACK, SUBSCRIBE/SUBACK,
UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT. A malformed packet raises ProtocolError,
on which the broker closes the connection (MQTT-4.8.0-1).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL = 1
CONNACK_IDENTIFIER_REJECTED = 2
SUBACK_FAILURE = 0x80


class ProtocolError(Exception):
    """The client broke MQTT 3.1.1; the connection is closed."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Connect:
    protocol_name: str
    protocol_level: int
    client_id: str
    clean_session: bool
    keep_alive: int
    will: Will | None
    username: str | None


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


async def read_packet(reader: asyncio.StreamReader, max_size: int) -> tuple[int, int, bytes]:
    """(packet type, flags, body). Raises asyncio.IncompleteReadError at end of stream."""
    first = await reader.readexactly(1)
    length, multiplier = 0, 1
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            break
        multiplier *= 128
    else:
        raise ProtocolError("malformed remaining length")
    if length > max_size:
        raise ProtocolError(f"packet of {length} bytes exceeds the {max_size}-byte limit")
    body = await reader.readexactly(length) if length else b""
    return first[0] >> 4, first[0] & 0x0F, body


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos + 1 > len(self.data):
            raise ProtocolError("packet too short")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise ProtocolError("packet too short")
        (value,) = struct.unpack_from("!H", self.data, self.pos)
        self.pos += 2
        return int(value)

    def raw(self) -> bytes:
        size = self.u16()
        if self.pos + size > len(self.data):
            raise ProtocolError("string runs past the packet")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def string(self) -> str:
        raw = self.raw()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None
        if "\x00" in text:
            raise ProtocolError("string contains U+0000")  # MQTT-1.5.3-2
        return text

    def rest(self) -> bytes:
        return self.data[self.pos :]

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def parse_connect(body: bytes) -> Connect:
    r = _Reader(body)
    name = r.string()
    level = r.u8()
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
        raise ProtocolError("PUBLISH with QoS 3")
    r = _Reader(body)
    topic = r.string()
    packet_id = r.u16() if qos else None
    return Publish(topic, r.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)


def parse_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    r = _Reader(body)
    packet_id = r.u16()
    filters = []
    while not r.done:
        topic_filter = r.string()
        filters.append((topic_filter, r.u8() & 0x03))
    if not filters:
        raise ProtocolError("SUBSCRIBE without topic filters")  # MQTT-3.8.3-3
    return packet_id, filters


def parse_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    r = _Reader(body)
    packet_id = r.u16()
    filters = []
    while not r.done:
        filters.append(r.string())
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")
    return packet_id, filters


def parse_packet_id(body: bytes) -> int:
    return _Reader(body).u16()


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connack(return_code: int, session_present: bool = False) -> bytes:
    return bytes([CONNACK << 4, 2, 1 if session_present else 0, return_code])


def publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None, retain: bool = False
) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet((PUBLISH << 4) | (qos << 1) | (1 if retain else 0), body)


def puback(packet_id: int) -> bytes:
    return bytes([PUBACK << 4, 2]) + struct.pack("!H", packet_id)


def suback(packet_id: int, codes: list[int]) -> bytes:
    return _packet(SUBACK << 4, struct.pack("!H", packet_id) + bytes(codes))


def unsuback(packet_id: int) -> bytes:
    return bytes([UNSUBACK << 4, 2]) + struct.pack("!H", packet_id)


def pingresp() -> bytes:
    return bytes([PINGRESP << 4, 0])


# ------------------------------------------------------------------------------ topics


def valid_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching; a `$` topic never matches a filter starting with a wildcard (MQTT-4.7.2-1).
    AWS IoT: `sensor/#` does not match the parent `sensor` (mqtt.html, differences from the spec)."""
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return len(topic_levels) > index
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
