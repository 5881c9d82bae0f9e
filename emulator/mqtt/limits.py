"""Every number the broker enforces or announces, in one place.

Values AWS IoT announces in its MQTT 5 CONNACK were read from an awscrt log of a real AWS IoT Core
CONNACK (`ConnackPacket(receive_maximum=100, maximum_qos=1, retain_available=True,
maximum_packet_size=149504, topic_alias_maximum=8, wildcard_subscriptions_available=True,
subscription_identifiers_available=False, shared_subscription_available=True, server_keep_alive_sec=1200)`
for a client that asked for keep-alive 1200); the session numbers are from mqtt.html "persistent
sessions" and the AWS IoT Core quotas page (iot-core.html). What AWS leaves unspecified is marked
CHOSEN, with the reason.

Fields that are None are limits AWS enforces and this broker does not (yet): they live here so that
enforcing one is a value, not a new constant somewhere in the broker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    # ---------------------------------------------------------------- announced in MQTT 5 CONNACK
    receive_maximum: int = 100  # QoS 1 publishes a client may have unacknowledged towards the broker
    maximum_qos: int = 1  # AWS IoT has no QoS 2
    topic_alias_maximum: int = 8  # client -> broker aliases per connection
    maximum_packet_size: int = 149_504  # 146 KB: MQTT 5 packets, fixed header included
    retain_available: bool = True  # as AWS announces; the emulator relays the flag but stores nothing
    wildcard_subscription_available: bool = True
    subscription_identifier_available: bool = False  # AWS IoT: not supported
    shared_subscription_available: bool = True

    # ---------------------------------------------------------------- packets and payloads
    maximum_payload_bytes: int = 128 * 1024  # AWS IoT message payload limit
    # MQTT 3.1.1 has no Maximum Packet Size: packets up to twice the payload limit are read so that an
    # oversized provisioning request is answered with a 400 rejection instead of a dropped connection.
    maximum_packet_size_v3: int = 256 * 1024 + 1024
    connect_timeout_s: float = 10.0  # TLS handshake and CONNECT

    # ---------------------------------------------------------------- persistent sessions
    # AWS: "The default persistent session expiration time of one hour", adjustable (1 min - 7 days);
    # MQTT 3.1.1 cleanSession=0 sessions get this value, MQTT 5 clients at most this value.
    session_expiry_s: int = 3600
    # CHOSEN (AWS gives no per-session count, only an account-wide 500 queued messages/s): QoS 1
    # messages kept for one disconnected session, in-flight ones included; the oldest are dropped first.
    queued_messages_per_session: int = 1000
    # CHOSEN: payload bytes queued over all disconnected sessions; past it new messages are dropped.
    queued_bytes_total: int = 64 * 1024 * 1024
    # CHOSEN: disconnected persistent sessions kept at once, all clients / per certificate. Past either
    # cap the session disconnected longest ago goes first (as if it had expired). The per-certificate cap
    # keeps one certificate (the claim, which every device holds) from evicting other principals'
    # sessions; the total caps memory whatever the number of client ids an attacker invents.
    offline_sessions: int = 20_000
    offline_sessions_per_certificate: int = 5_000
    # CHOSEN: subscriptions kept over all disconnected sessions (each costs a filter string and a record).
    offline_subscriptions: int = 200_000
    # MQTT 5 clients at a full Receive Maximum: messages waiting for a free in-flight slot per connection.
    pending_messages_per_connection: int = 10_000
    # Payload bytes one connection holds for its client: pending messages, and in-flight ones a persistent
    # session keeps to send again (a client that never acknowledges cannot grow it further).
    held_bytes_per_connection: int = 16 * 1024 * 1024

    # ---------------------------------------------------------------- AWS IoT limits not enforced here
    # (AWS IoT Core quotas; issue 13 adds them.)
    subscriptions_per_connection: int | None = None  # AWS: 50
    filters_per_subscribe: int | None = None  # AWS: 8
    outbound_in_flight: int | None = None  # AWS: 100 unacknowledged QoS 1 messages per client
    publishes_per_second: int | None = None  # AWS: 100 per connection
    keep_alive_min_s: int | None = None  # AWS: 30
    keep_alive_max_s: int | None = None  # AWS: 1200

    def server_keep_alive(self, requested: int) -> int:
        """The keep-alive the broker holds the client to (MQTT 5: announced as Server Keep Alive)."""
        keep_alive = requested
        if self.keep_alive_max_s is not None and (keep_alive == 0 or keep_alive > self.keep_alive_max_s):
            keep_alive = self.keep_alive_max_s
        if self.keep_alive_min_s is not None and 0 < keep_alive < self.keep_alive_min_s:
            keep_alive = self.keep_alive_min_s
        return keep_alive


DEFAULT_LIMITS = Limits()
