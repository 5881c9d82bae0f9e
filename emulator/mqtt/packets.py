"""The packets as the broker sees them, whatever MQTT version the client speaks.

Each version's codec (`codec3.py`, `codec5.py`) reads its wire format into these objects and writes
them back out; MQTT 3.1.1 packets simply have no properties and no reason codes. The broker, sessions,
authorisation and the provisioning topics work on these alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.mqtt.properties import EMPTY


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class Connect:
    protocol_name: str
    protocol_level: int  # 4: MQTT 3.1.1, 5: MQTT 5
    client_id: str
    clean_session: bool  # MQTT 5: Clean Start
    keep_alive: int
    will: Will | None
    username: str | None
    properties: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str  # MQTT 5: empty when a Topic Alias stands for it
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """One topic filter of a SUBSCRIBE with its options (MQTT 5 section 3.8.3.1; 3.1.1 has QoS only)."""

    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    requests: tuple[SubscriptionRequest, ...]
    properties: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class Ack:
    """PUBACK from the client."""

    packet_id: int
    reason_code: int = 0
    properties: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Mapping[str, Any] = EMPTY
