"""MQTT packets, both versions: `parse_connect` reads the protocol name and level first and hands the rest
to that version's codec (`codec3.Codec311`, `codec5.Codec5`), which the connection then uses for every
packet. The MQTT 3.1.1 functions and the topic rules are re-exported here under their historic names.
"""

from __future__ import annotations

from emulator.mqtt import codec3, codec5
from emulator.mqtt.codec3 import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_PROTOCOL,
    CONNACK_IDENTIFIER_REJECTED,
    SUBACK_FAILURE,
    Codec311,
    connack,
    parse_packet_id,
    parse_publish,
    parse_subscribe,
    parse_unsubscribe,
    pingresp,
    puback,
    publish,
    suback,
    unsuback,
)
from emulator.mqtt.codec5 import Codec5
from emulator.mqtt.packets import Connect, Publish, Will
from emulator.mqtt.topics import topic_matches, valid_topic_filter, valid_topic_name
from emulator.mqtt.wire import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    MalformedPacket,
    PacketTooLarge,
    ProtocolError,
    Reader,
    UnsupportedProtocol,
    read_packet,
)
from emulator.mqtt.wire import packet as _packet
from emulator.mqtt.wire import string as _string

Codec = Codec311 | Codec5
CODECS: dict[int, type[Codec311] | type[Codec5]] = {codec3.LEVEL: Codec311, codec5.LEVEL: Codec5}
_PARSE_REST = {codec3.LEVEL: codec3.parse_connect_rest, codec5.LEVEL: codec5.parse_connect_rest}


def parse_connect(body: bytes) -> Connect:
    """The protocol name and level first, then that version's layout. UnsupportedProtocol for a name
    other than MQTT or a level other than 4 (3.1.1) or 5; MalformedPacket / ProtocolError otherwise."""
    r = Reader(body)
    name = r.string()
    level = r.u8()
    parse_rest = _PARSE_REST.get(level)
    if name != "MQTT" or parse_rest is None:
        raise UnsupportedProtocol(name, level)
    return parse_rest(r, name, level)


def protocol_level(body: bytes) -> int | None:
    """The level byte of a CONNECT body, None if the body is too short to hold one: so that an error in
    the rest of a CONNECT is answered in the format its client reads."""
    try:
        r = Reader(body)
        r.raw()
        return r.u8()
    except ProtocolError:
        return None


__all__ = [
    "AUTH",
    "CODECS",
    "CONNACK",
    "CONNACK_ACCEPTED",
    "CONNACK_BAD_PROTOCOL",
    "CONNACK_IDENTIFIER_REJECTED",
    "CONNECT",
    "DISCONNECT",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBREC",
    "PUBREL",
    "SUBACK",
    "SUBACK_FAILURE",
    "SUBSCRIBE",
    "UNSUBACK",
    "UNSUBSCRIBE",
    "Codec",
    "Codec311",
    "Codec5",
    "Connect",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "Publish",
    "UnsupportedProtocol",
    "Will",
    "_packet",
    "_string",
    "connack",
    "parse_connect",
    "parse_packet_id",
    "parse_publish",
    "parse_subscribe",
    "parse_unsubscribe",
    "pingresp",
    "protocol_level",
    "puback",
    "publish",
    "read_packet",
    "suback",
    "topic_matches",
    "unsuback",
    "valid_topic_filter",
    "valid_topic_name",
]
