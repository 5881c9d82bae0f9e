"""Every number the broker enforces or announces, in one place, and the three profiles of `--limits`.

Sources. AWS IoT Core's quotas page (docs.aws.amazon.com/general/latest/gr/iot-core.html, "message broker
and protocol limits"); the values below were read from its copy of 2019-11 in awsdocs/aws-iot-docs
(developerguide/limits-iot.md @b946d0b, the "[LIM19]" of shared/reference/aws-fleet-provisioning.md), which
has every per-connection limit and the control-plane API rates; what has changed since is marked
UNCONFIRMED. The MQTT 5 CONNACK values were read from an awscrt log of a real AWS IoT Core CONNACK
(`ConnackPacket(receive_maximum=100, maximum_qos=1, retain_available=True, maximum_packet_size=149504,
topic_alias_maximum=8, wildcard_subscriptions_available=True, subscription_identifiers_available=False,
shared_subscription_available=True, server_keep_alive_sec=1200)` for a client that asked for 1200); the
session numbers are from mqtt.html "persistent sessions". What AWS leaves unspecified is marked CHOSEN.

Profiles (`python -m emulator up --limits aws|off`):
- default: AWS's per-connection limits on (client id size, subscriptions, filters per SUBSCRIBE, keep-alive,
  in-flight messages), AWS's rate throttles off, so that local load tests can go faster than AWS;
- `aws`: the rate throttles too (publishes per second per connection, CONNECT per client id per second,
  the provisioning APIs' transactions per second);
- `off`: no AWS limit at all (the protocol's sizes stay: they are what the CONNACK announces).
A field set to None is not enforced. The emulator's own defences (the last section: deadlines, caps on
connections that have not finished TLS or CONNECT, the write high-water mark) hold in every profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

PROFILES = ("default", "aws", "off")


@dataclass(frozen=True)
class Limits:
    profile: str = "default"

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
    # AWS: "The payload for every publish request is limited to 128 KB. The AWS IoT service rejects publish
    # and connect requests larger than this size" (inbound; outbound messages are inbound ones relayed).
    maximum_payload_bytes: int = 128 * 1024
    # MQTT 3.1.1 has no Maximum Packet Size: packets up to twice the payload limit are read so that an
    # oversized provisioning request is answered with a 400 rejection instead of a dropped connection.
    maximum_packet_size_v3: int = 256 * 1024 + 1024

    # ---------------------------------------------------------------- AWS per-connection limits
    # On by default and with `aws`, None with `off`. [LIM19] unless said otherwise.
    # "Client ID size: 128 bytes of UTF-8 encoded characters." A longer one: CONNACK 0x85 (MQTT 5) / return
    # code 2 (3.1.1), the MQTT refusal for a client id the server does not accept (AWS's answer UNCONFIRMED).
    client_id_max_bytes: int | None = 128
    # "AWS IoT supports 50 subscriptions per connection. Subscription requests ... in excess of this amount
    # may be rejected": SUBACK 0x97 Quota exceeded (3.1.1: 0x80) for each filter past it, connection kept
    # (whether AWS also closes it, as "may be rejected ... and the connection will be closed" allows, is
    # UNCONFIRMED; the client is told through SUBACK either way, which is what AWS tells clients to check).
    subscriptions_per_connection: int | None = 50
    # "A single SUBSCRIBE request is limited a maximum of eight subscriptions": a larger SUBACK gets 0x97
    # (3.1.1: 0x80) for every filter, nothing is subscribed (AWS's answer UNCONFIRMED).
    filters_per_subscribe: int | None = 8
    # "Maximum outbound unacknowledged QoS 1 publish requests: 100 ... no new publish requests are sent to
    # the client until the client acknowledges": the rest wait in order (pending_messages_per_connection).
    outbound_in_flight: int | None = 100
    # "a client can request a keep-alive interval between 30 - 1200 seconds ... zero or greater than 1200:
    # the default (1200) ... shorter than 30 but greater than zero: 30". MQTT 5 clients are told the value
    # in CONNACK Server Keep Alive (AWS sends it in every CONNACK).
    keep_alive_min_s: int | None = 30
    keep_alive_max_s: int | None = 1200

    # ---------------------------------------------------------------- AWS rate throttles
    # None by default and with `off`; AWS's values with `aws`. One second of burst (a token bucket).
    # "Publish requests per second per connection: 100 ... Publish requests exceeding that limit will be
    # discarded": inbound publishes past it are dropped, the connection stays (an MQTT 5 QoS 1 publish gets
    # PUBACK 0x97 Quota exceeded, UNCONFIRMED; a 3.1.1 one gets no PUBACK). Outbound: not enforced.
    publishes_per_second: float | None = None
    # "Connect requests per second per client ID: 1" (not adjustable): a second CONNECT admitted within the
    # second is refused: CONNACK 0x97 (MQTT 5, UNCONFIRMED), closed without CONNACK (3.1.1, as
    # device_sim expects of AWS).
    connects_per_second_per_client_id: float | None = None
    # The provisioning MQTT APIs, per account: [LIM19]'s throttling table has CreateCertificateFromCsr 15 and
    # RegisterThing 10 TPS (control plane; a user saw the same 10 TPS for MQTT RegisterThing, aws-iot-device-
    # sdk-python-v2#232); the MQTT figures today, and CreateKeysAndCertificate's, are UNCONFIRMED (CHOSEN:
    # 10, as RegisterThing). A throttled request is answered on /rejected: statusCode 429, errorCode
    # ThrottlingException (UNCONFIRMED: AWS documents no throttling payload for these topics; the IoT API's
    # code and HTTP's status, which device_sim's `Rejected.throttled` and any retry logic recognise).
    create_certificate_from_csr_per_second: float | None = None
    create_keys_and_certificate_per_second: float | None = None
    register_thing_per_second: float | None = None

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
    # Messages waiting for a free in-flight slot per connection (the client's Receive Maximum, or AWS's 100).
    pending_messages_per_connection: int = 10_000
    # Payload bytes one connection holds for its client: pending messages, and in-flight ones a persistent
    # session keeps to send again (a client that never acknowledges cannot grow it further).
    held_bytes_per_connection: int = 16 * 1024 * 1024

    # ---------------------------------------------------------------- the emulator's own defences
    # Every profile. AWS documents none of these; all CHOSEN (docs/emulator.md, "Where others can reach it").
    # Accept to CONNACK: the TLS handshake and the CONNECT, whatever the stages in between.
    connect_timeout_s: float = 10.0
    # Accepted connections that have sent nothing yet: a socket each, no TLS state. Past either cap the
    # oldest waiting connection (of that peer address, or of all) is closed, so idle sockets cannot keep a
    # new client out.
    waiting_connections: int = 4096
    waiting_connections_per_peer: int = 1024
    # Connections in their TLS handshake or CONNECT (~40 KB each). Past either cap a client that has spoken
    # waits, still cheap, among the waiting connections until a slot frees.
    connecting: int = 256
    connecting_per_peer: int = 128
    # Once a packet's first byte has arrived, the rest must follow within this (128 KB at >= 13 KB/s).
    packet_read_timeout_s: float = 10.0
    # Bytes queued towards a client that does not read (TLS records not yet taken by the kernel) past which
    # it is disconnected: a reader that never reads cannot make the broker buffer its traffic.
    write_buffer_high_water: int = 1024 * 1024
    # Provisioning requests under way per connection; past it the connection is not read (TCP holds the
    # client back) until one is answered, so a burst cannot queue unbounded payloads in the worker pools.
    requests_per_connection: int = 32

    def server_keep_alive(self, requested: int) -> int:
        """The keep-alive the broker holds the client to (MQTT 5: announced as Server Keep Alive)."""
        keep_alive = requested
        if self.keep_alive_max_s is not None and (keep_alive == 0 or keep_alive > self.keep_alive_max_s):
            keep_alive = self.keep_alive_max_s
        if self.keep_alive_min_s is not None and 0 < keep_alive < self.keep_alive_min_s:
            keep_alive = self.keep_alive_min_s
        return keep_alive

    @classmethod
    def for_profile(cls, profile: str, **overrides: object) -> Limits:
        """The limits of `--limits PROFILE` ("default", "aws" or "off"), with `overrides` on top."""
        if profile not in PROFILES:
            raise ValueError(f"--limits must be one of {', '.join(PROFILES)}, not {profile!r}")
        base = cls()
        changes: dict[str, object] = {"profile": profile}
        if profile == "aws":
            changes.update(
                publishes_per_second=100.0,
                connects_per_second_per_client_id=1.0,
                create_certificate_from_csr_per_second=15.0,
                create_keys_and_certificate_per_second=10.0,
                register_thing_per_second=10.0,
            )
        elif profile == "off":
            changes.update(
                client_id_max_bytes=None,
                subscriptions_per_connection=None,
                filters_per_subscribe=None,
                outbound_in_flight=None,
                keep_alive_min_s=None,
                keep_alive_max_s=None,
            )
        changes.update(overrides)
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    def provisioning_rates(self) -> dict[str, float]:
        """Transactions per second of each provisioning operation that is throttled."""
        rates = {
            "CreateCertificateFromCsr": self.create_certificate_from_csr_per_second,
            "CreateKeysAndCertificate": self.create_keys_and_certificate_per_second,
            "RegisterThing": self.register_thing_per_second,
        }
        return {operation: rate for operation, rate in rates.items() if rate is not None}


DEFAULT_LIMITS = Limits()
