"""The CONNECT phase of a connection: read the CONNECT in its version's layout, refuse it as AWS IoT does,
admit it through the gatekeeper, take the client id over from an older connection, resume or start the
session, answer CONNACK (MQTT 5: with AWS IoT's properties), then send what the session kept.

Refusals: a CONNECT whose certificate AWS IoT does not accept is closed without CONNACK (both versions);
one the policies refuse gets CONNACK 0x87 (MQTT 5) or is closed without CONNACK (3.1.1, as AWS does); an
unsupported protocol level, a malformed CONNECT, an empty 3.1.1 client id, a client id over AWS's 128 bytes
or enhanced authentication get the CONNACK refusal the client's version can read; a second CONNECT of a
client id within AWS's second (`--limits aws`) gets CONNACK 0x97 (MQTT 5) or is closed (3.1.1).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import TYPE_CHECKING

from emulator.logsafe import quoted
from emulator.mqtt import codec, reasons
from emulator.mqtt import properties as props
from emulator.mqtt.codec import Codec, ProtocolError
from emulator.mqtt.connection import Session
from emulator.mqtt.contracts import Admission, Refused
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import Connect
from emulator.mqtt.topics import valid_topic_name

if TYPE_CHECKING:
    from emulator.mqtt.broker import Broker

log = logging.getLogger("emulator.mqtt")


async def handshake(
    broker: Broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, deadline: float
) -> Session | None:
    """The connected session, or None once the CONNECT was refused (the caller closes the socket).
    `deadline` (event-loop time): the CONNECT must have arrived by then."""
    limits = broker.limits
    async with asyncio.timeout_at(deadline):
        kind, _, body = await codec.read_packet(reader, limits.maximum_packet_size_v3)
    if kind != codec.CONNECT:
        raise ProtocolError("first packet is not CONNECT")  # MQTT-3.1.0-1
    try:
        connect = codec.parse_connect(body)
    except codec.UnsupportedProtocol as exc:
        # MQTT 5 section 3.1.2.2: a level above 5 may be a newer client and reads 0x84 in MQTT 5's
        # CONNACK; anything older reads 3.1.1's return code 1.
        writer.write((codec.Codec5 if exc.level > 5 else codec.Codec311).connack(False, exc.reason_code))
        log.info("connect refused peer=%s: %s (only MQTT 3.1.1 and 5 are emulated)", peer, exc)
        return None
    except ProtocolError as exc:
        # MQTT 5 section 4.13.1: CONNACK with the reason code before closing; 3.1.1: closed.
        wire = codec.CODECS.get(codec.protocol_level(body) or 0, codec.Codec311)
        writer.write(wire.connack(False, exc.reason_code))
        log.info("connect refused peer=%s: malformed CONNECT: %s", peer, exc)
        return None
    wire = codec.CODECS[connect.protocol_level]
    refusal = _refusal(connect, wire, len(body), limits)
    if refusal is not None:
        code, why = refusal
        writer.write(wire.connack(False, code))
        log.info(
            "connect refused peer=%s client=%s mqtt=%s: %s",
            peer,
            quoted(connect.client_id),
            wire.version,
            why,
        )
        return None
    client_id, assigned = connect.client_id, None
    if not client_id:
        # MQTT 5 (AWS IoT: "If one is not provided, AWS IoT server will assign a unique ID ... and
        # return it in the CONNACK packet", awsiot.mqtt5_client_builder). The format is UNCONFIRMED.
        client_id = assigned = str(uuid.uuid4())
    tls = writer.get_extra_info("ssl_object")
    der = tls.getpeercert(binary_form=True)
    certificate_id = hashlib.sha256(der).hexdigest() if der else ""
    try:
        admission = await broker.gatekeeper.admit(certificate_id, client_id)
    except Refused as exc:
        if not exc.hang_up:
            writer.write(wire.connack(False, reasons.NOT_AUTHORIZED))
        log.info(
            "connect refused client=%s cert=%.12s peer=%s mqtt=%s: %s",
            quoted(client_id),
            certificate_id,
            peer,
            wire.version,
            exc,
        )
        return None
    if broker.connect_rate is not None and not broker.connect_rate.allow(client_id):
        # AWS: "limits MQTT CONNECT requests from the same accountId and clientId to 1 MQTT CONNECT
        # operation per second". Checked once admitted, so that nobody can throttle a client id it may not
        # use. MQTT 5 code UNCONFIRMED (0x97 Quota exceeded); 3.1.1: closed without CONNACK.
        writer.write(wire.connack(False, reasons.QUOTA_EXCEEDED))
        log.info(
            "connect refused client=%s cert=%.12s peer=%s mqtt=%s: THROTTLED, over %g CONNECT/s per client",
            quoted(client_id),
            certificate_id,
            peer,
            wire.version,
            limits.connects_per_second_per_client_id,
        )
        return None
    session, connack = _open_session(broker, connect, wire, writer, client_id, assigned, admission, peer)
    # Logged before the CONNACK goes out: whoever reads the log after the client connected finds the line.
    log.info(
        "connect client=%s cert=%.12s %s peer=%s mqtt=%s session=%s%s",
        quoted(client_id),
        certificate_id,
        admission.label,
        peer,
        wire.version,
        session.state_label,
        f" alpn={tls.selected_alpn_protocol()}" if tls.selected_alpn_protocol() else "",
    )
    writer.write(connack)
    for message in broker.store.take_queue(session.state):
        session.send_message(message, message.qos, message.retain)
    return session


def _refusal(connect: Connect, wire: type[Codec], size: int, limits: Limits) -> tuple[int, str] | None:
    """A reason to refuse a well-formed CONNECT before asking the gatekeeper, or None."""
    if not connect.client_id and not wire.assigns_client_ids:
        return reasons.CLIENT_IDENTIFIER_NOT_VALID, "empty client id"
    size = len(connect.client_id.encode())
    if limits.client_id_max_bytes is not None and size > limits.client_id_max_bytes:
        return (
            reasons.CLIENT_IDENTIFIER_NOT_VALID,
            f"client id of {size} bytes (AWS: at most {limits.client_id_max_bytes})",
        )
    if size + 5 > wire.read_limit(limits):  # + the fixed header: 1 byte and at most 4 of length
        return reasons.PACKET_TOO_LARGE, f"CONNECT of {size} bytes"
    if props.AUTHENTICATION_METHOD in connect.properties:
        # AWS IoT's MQTT 5 has no enhanced authentication (AUTH); a server answers an authentication
        # method it does not support with 0x8C (MQTT-4.12.0-1).
        return reasons.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported"
    if connect.will is not None and not valid_topic_name(connect.will.topic):
        return reasons.TOPIC_NAME_INVALID, f"will topic {quoted(connect.will.topic)}"
    return None


def _open_session(
    broker: Broker,
    connect: Connect,
    wire: type[Codec],
    writer: asyncio.StreamWriter,
    client_id: str,
    assigned: str | None,
    admission: Admission,
    peer: str,
) -> tuple[Session, bytes]:
    """Take the client id over, resume or start its session; (the session, its CONNACK)."""
    previous = broker.sessions.get(client_id)
    if previous is not None:
        # AWS IoT: a second connection with the same client id disconnects the first
        # (lifecycle reason DUPLICATE_CLIENTID; MQTT 5: DISCONNECT 0x8E Session taken over).
        previous.disconnect(reasons.SESSION_TAKEN_OVER, "DUPLICATE_CLIENTID")
        broker.release(previous)
    store = broker.store
    requested, expiry = wire.session_expiry(connect, broker.limits)
    state = store.find(client_id)
    if state is not None and connect.clean_session:
        store.discard(state)
        state = None
    resumed = state is not None
    if state is None:
        state = store.create(client_id, admission.certificate_id, expiry)
    else:
        store.attach(state)
        state.expiry_s = expiry
        state.certificate_id = admission.certificate_id
    session = Session(
        broker,
        writer,
        client_id,
        admission,
        peer,
        codec=wire,
        state=state,
        connect_properties=connect.properties,
    )
    session.keep_alive = broker.limits.server_keep_alive(connect.keep_alive)
    session.state_label = (
        f"resumed({len(state.queue)} queued)" if resumed else ("persistent" if expiry else "clean")
    )
    state.session = session
    broker.sessions[client_id] = session
    if resumed:
        _reauthorise(broker, session)
    connack_properties = broker.connack_properties(session.keep_alive)
    if assigned is not None:
        connack_properties[props.ASSIGNED_CLIENT_IDENTIFIER] = assigned
    if requested != expiry:
        connack_properties[props.SESSION_EXPIRY_INTERVAL] = expiry  # section 3.2.2.3.2: the server's value
    return session, wire.connack(resumed, reasons.SUCCESS, connack_properties)


def _reauthorise(broker: Broker, session: Session) -> None:
    """AWS re-authorises a resumed session: subscriptions its policies no longer allow are dropped."""
    for topic_filter in list(session.state.subscriptions):
        if not broker.gatekeeper.may_subscribe(session, topic_filter):
            broker.store.unsubscribe(session.state, topic_filter)
            log.info(
                "resumed session client=%s: subscription %s no longer allowed",
                quoted(session.client_id),
                quoted(topic_filter),
            )
