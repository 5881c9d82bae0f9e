"""What MQTT 3.1.1 and 5 share on the wire: the fixed header, the data types, and the errors.

Errors carry the MQTT 5 reason code the broker answers with (DISCONNECT, or CONNACK before the session
exists); an MQTT 3.1.1 client is simply disconnected (MQTT-4.8.0-1), since 3.1.1 has no way to say why.
"""

from __future__ import annotations

import asyncio
import struct

from emulator.logsafe import quoted

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

MAX_VARINT = 268_435_455  # four bytes of variable byte integer


class ProtocolError(Exception):
    """The client broke the protocol; the connection is closed (MQTT 5: after a DISCONNECT with
    `reason_code`, or a CONNACK with it while connecting)."""

    reason_code = 0x82  # Protocol Error

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class MalformedPacket(ProtocolError):
    """The bytes cannot be read as the packet they claim to be (MQTT 5 section 4.13: 0x81)."""

    reason_code = 0x81


class PacketTooLarge(ProtocolError):
    reason_code = 0x95


class UnsupportedProtocol(ProtocolError):
    """A CONNECT for a protocol name or level the broker does not speak."""

    reason_code = 0x84

    def __init__(self, name: str, level: int) -> None:
        super().__init__(f"protocol {quoted(name)} level {level}")
        self.name = name
        self.level = level


async def read_packet(reader: asyncio.StreamReader, max_size: int) -> tuple[int, int, bytes]:
    """(packet type, flags, body). Raises asyncio.IncompleteReadError at end of stream, PacketTooLarge
    for a packet over `max_size` bytes (fixed header included, as MQTT 5's Maximum Packet Size counts)."""
    first = await reader.readexactly(1)
    return await read_packet_rest(reader, first[0], max_size)


async def read_packet_rest(reader: asyncio.StreamReader, first: int, max_size: int) -> tuple[int, int, bytes]:
    """`read_packet` once its first byte has been read (the broker times the rest of a packet apart)."""
    length, multiplier, header = 0, 1, 2
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            break
        multiplier *= 128
        header += 1
    else:
        raise MalformedPacket("malformed remaining length")
    if length + header > max_size:
        raise PacketTooLarge(f"packet of {length + header} bytes exceeds the {max_size}-byte limit")
    body = await reader.readexactly(length) if length else b""
    return first >> 4, first & 0x0F, body


class Reader:
    """Reads the data types of MQTT's variable header and payload; every overrun is malformed."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def _take(self, size: int) -> int:
        start = self.pos
        if start + size > self.end:
            raise MalformedPacket("packet too short")
        self.pos = start + size
        return start

    def u8(self) -> int:
        return self.data[self._take(1)]

    def u16(self) -> int:
        return int(struct.unpack_from("!H", self.data, self._take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack_from("!I", self.data, self._take(4))[0])

    def varint(self) -> int:
        value, multiplier = 0, 1
        for index in range(4):
            byte = self.u8()
            if index and byte == 0 and not byte & 0x80:
                # MQTT 5 section 1.5.5: the minimum number of bytes is used; a trailing 0x00 is not.
                raise MalformedPacket("variable byte integer not in its shortest form")
            value += (byte & 0x7F) * multiplier
            if not byte & 0x80:
                return value
            multiplier *= 128
        raise MalformedPacket("variable byte integer longer than four bytes")

    def raw(self) -> bytes:
        size = self.u16()
        if self.pos + size > self.end:
            raise MalformedPacket("string runs past the packet")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def string(self) -> str:
        raw = self.raw()
        try:
            text = raw.decode("utf-8")  # strict: no surrogates, no overlong forms (MQTT-1.5.4-1)
        except UnicodeDecodeError:
            raise MalformedPacket("string is not UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket("string contains U+0000")  # MQTT-1.5.4-2
        return text

    def rest(self) -> bytes:
        return self.data[self.pos : self.end]

    @property
    def done(self) -> bool:
        return self.pos >= self.end


def varint(value: int) -> bytes:
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    size = len(body)
    if size < 128:
        return bytes((first, size)) + body
    return bytes((first,)) + varint(size) + body


def string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def binary(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data
