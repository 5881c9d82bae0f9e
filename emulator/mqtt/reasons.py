"""MQTT 5 reason codes: one table of code -> name -> packets (MQTT 5 section 2.4, as paho's reasoncodes.py),
and how each outcome looks to an MQTT 3.1.1 client, which has return codes on CONNACK and SUBACK only.

The broker speaks in these codes whatever the client's version; the 3.1.1 codec maps them
(`connack_return_code`, `suback_return_code`) or, for DISCONNECT, closes the connection without a word.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.mqtt.properties import (
    AUTH,
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    SUBACK,
    UNSUBACK,
)

SUCCESS = 0x00  # also Normal disconnection, Granted QoS 0
GRANTED_QOS_1 = 0x01
GRANTED_QOS_2 = 0x02
DISCONNECT_WITH_WILL_MESSAGE = 0x04
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
CONTINUE_AUTHENTICATION = 0x18
RE_AUTHENTICATE = 0x19
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89
BANNED = 0x8A
SERVER_SHUTTING_DOWN = 0x8B
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_IDENTIFIER_IN_USE = 0x91
PACKET_IDENTIFIER_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
MESSAGE_RATE_TOO_HIGH = 0x96
QUOTA_EXCEEDED = 0x97
ADMINISTRATIVE_ACTION = 0x98
PAYLOAD_FORMAT_INVALID = 0x99
RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B
USE_ANOTHER_SERVER = 0x9C
SERVER_MOVED = 0x9D
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
CONNECTION_RATE_EXCEEDED = 0x9F
MAXIMUM_CONNECT_TIME = 0xA0
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


@dataclass(frozen=True)
class ReasonCode:
    code: int
    name: str
    packets: frozenset[str]


def _r(code: int, name: str, *packets: str) -> ReasonCode:
    return ReasonCode(code, name, frozenset(packets))


_ACKS = (PUBACK, PUBREC)
TABLE: tuple[ReasonCode, ...] = (
    _r(SUCCESS, "Success", CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH),
    _r(SUCCESS, "Normal disconnection", DISCONNECT),
    _r(SUCCESS, "Granted QoS 0", SUBACK),
    _r(GRANTED_QOS_1, "Granted QoS 1", SUBACK),
    _r(GRANTED_QOS_2, "Granted QoS 2", SUBACK),
    _r(DISCONNECT_WITH_WILL_MESSAGE, "Disconnect with Will Message", DISCONNECT),
    _r(NO_MATCHING_SUBSCRIBERS, "No matching subscribers", *_ACKS),
    _r(NO_SUBSCRIPTION_EXISTED, "No subscription existed", UNSUBACK),
    _r(CONTINUE_AUTHENTICATION, "Continue authentication", AUTH),
    _r(RE_AUTHENTICATE, "Re-authenticate", AUTH),
    _r(UNSPECIFIED_ERROR, "Unspecified error", CONNACK, SUBACK, UNSUBACK, DISCONNECT, *_ACKS),
    _r(MALFORMED_PACKET, "Malformed Packet", CONNACK, DISCONNECT),
    _r(PROTOCOL_ERROR, "Protocol Error", CONNACK, DISCONNECT),
    _r(
        IMPLEMENTATION_SPECIFIC_ERROR,
        "Implementation specific error",
        CONNACK,
        SUBACK,
        UNSUBACK,
        DISCONNECT,
        *_ACKS,
    ),
    _r(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported Protocol Version", CONNACK),
    _r(CLIENT_IDENTIFIER_NOT_VALID, "Client Identifier not valid", CONNACK),
    _r(BAD_USER_NAME_OR_PASSWORD, "Bad User Name or Password", CONNACK),
    _r(NOT_AUTHORIZED, "Not authorized", CONNACK, SUBACK, UNSUBACK, DISCONNECT, *_ACKS),
    _r(SERVER_UNAVAILABLE, "Server unavailable", CONNACK),
    _r(SERVER_BUSY, "Server busy", CONNACK, DISCONNECT),
    _r(BANNED, "Banned", CONNACK),
    _r(SERVER_SHUTTING_DOWN, "Server shutting down", DISCONNECT),
    _r(BAD_AUTHENTICATION_METHOD, "Bad authentication method", CONNACK, DISCONNECT),
    _r(KEEP_ALIVE_TIMEOUT, "Keep Alive timeout", DISCONNECT),
    _r(SESSION_TAKEN_OVER, "Session taken over", DISCONNECT),
    _r(TOPIC_FILTER_INVALID, "Topic Filter invalid", SUBACK, UNSUBACK, DISCONNECT),
    _r(TOPIC_NAME_INVALID, "Topic Name invalid", CONNACK, DISCONNECT, *_ACKS),
    _r(PACKET_IDENTIFIER_IN_USE, "Packet Identifier in use", SUBACK, UNSUBACK, *_ACKS),
    _r(PACKET_IDENTIFIER_NOT_FOUND, "Packet Identifier not found", PUBREL, PUBCOMP),
    _r(RECEIVE_MAXIMUM_EXCEEDED, "Receive Maximum exceeded", DISCONNECT),
    _r(TOPIC_ALIAS_INVALID, "Topic Alias invalid", DISCONNECT),
    _r(PACKET_TOO_LARGE, "Packet too large", CONNACK, DISCONNECT),
    _r(MESSAGE_RATE_TOO_HIGH, "Message rate too high", DISCONNECT),
    _r(QUOTA_EXCEEDED, "Quota exceeded", CONNACK, SUBACK, DISCONNECT, *_ACKS),
    _r(ADMINISTRATIVE_ACTION, "Administrative action", DISCONNECT),
    _r(PAYLOAD_FORMAT_INVALID, "Payload format invalid", CONNACK, DISCONNECT, *_ACKS),
    _r(RETAIN_NOT_SUPPORTED, "Retain not supported", CONNACK, DISCONNECT),
    _r(QOS_NOT_SUPPORTED, "QoS not supported", CONNACK, DISCONNECT),
    _r(USE_ANOTHER_SERVER, "Use another server", CONNACK, DISCONNECT),
    _r(SERVER_MOVED, "Server moved", CONNACK, DISCONNECT),
    _r(SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, "Shared Subscriptions not supported", SUBACK, DISCONNECT),
    _r(CONNECTION_RATE_EXCEEDED, "Connection rate exceeded", CONNACK, DISCONNECT),
    _r(MAXIMUM_CONNECT_TIME, "Maximum connect time", DISCONNECT),
    _r(SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, "Subscription Identifiers not supported", SUBACK, DISCONNECT),
    _r(WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, "Wildcard Subscriptions not supported", SUBACK, DISCONNECT),
)
_BY_PACKET: dict[tuple[int, str], ReasonCode] = {
    (reason.code, packet): reason for reason in TABLE for packet in reason.packets
}


def allowed(code: int, packet_name: str) -> bool:
    return (code, packet_name) in _BY_PACKET


def name(code: int, packet_name: str) -> str:
    """`Not authorized (0x87)`: for log lines."""
    reason = _BY_PACKET.get((code, packet_name))
    return f"{reason.name if reason else 'unknown'} (0x{code:02X})"


# MQTT 3.1.1 CONNACK return codes (section 3.2.2.3) for the MQTT 5 reasons AWS IoT answers with one.
# Not Authorized (5) is missing on purpose: AWS IoT closes a refused 3.1.1 CONNECT without any CONNACK
# (aws-samples/aws-iot-fleet-provisioning#16; SDKs report AWS_ERROR_MQTT_UNEXPECTED_HANGUP).
_CONNACK_V3 = {
    SUCCESS: 0,
    UNSUPPORTED_PROTOCOL_VERSION: 1,
    CLIENT_IDENTIFIER_NOT_VALID: 2,
}


def connack_return_code(code: int) -> int | None:
    """The 3.1.1 return code for an MQTT 5 CONNACK reason, None where AWS IoT sends no CONNACK to a 3.1.1
    client (it closes the connection)."""
    return _CONNACK_V3.get(code)


def suback_return_code(code: int) -> int:
    """3.1.1 SUBACK: the granted QoS, or 0x80 Failure for any refusal."""
    return code if code < 0x80 else 0x80
