"""The MQTT broker (3.1.1 and 5): TLS with client certificates, CONNECT, sessions, subscriptions, routing.

AWS IoT's decisions (who may connect, publish, subscribe, receive) come from a `Gatekeeper`; reserved
request topics (the provisioning API) go to `TopicHandler`s instead of subscribers. Each connection reads
and writes through its version's codec; everything here works on the version-free packet objects and
speaks in MQTT 5 reason codes, which the 3.1.1 codec maps to return codes or to a bare close.

Refusals follow AWS IoT (docs/emulator.md): a CONNECT whose certificate is not accepted is closed without
CONNACK; one the policies refuse gets CONNACK 0x87 (MQTT 5) or is closed (3.1.1); an unauthorised PUBLISH
ends the connection (MQTT 5: DISCONNECT 0x87); an unauthorised SUBSCRIBE gets 0x87 (3.1.1: 0x80) for that
filter in the SUBACK. This file is over 400 lines because the CONNECT handshake, the packet loop and the
routing share the broker's state (sessions, connections, limits); the per-connection sending, the session
store and the codecs are in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from emulator.mqtt import codec, reasons
from emulator.mqtt import properties as props
from emulator.mqtt.codec import Codec, ProtocolError
from emulator.mqtt.connection import Session
from emulator.mqtt.contracts import Admission, Gatekeeper, Refused, TopicHandler
from emulator.mqtt.limits import DEFAULT_LIMITS, Limits
from emulator.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe
from emulator.mqtt.sessions import Message, SessionState, SessionStore, Subscription
from emulator.mqtt.topics import (
    SHARE_PREFIX,
    split_shared,
    topic_matches,
    valid_topic_filter,
    valid_topic_name,
)

__all__ = ["ALPN_PROTOCOL", "Admission", "Broker", "Gatekeeper", "Refused", "Session", "TopicHandler"]

log = logging.getLogger("emulator.mqtt")

ALPN_PROTOCOL = "x-amzn-mqtt-ca"  # AWS IoT: MQTT with X.509 client certificates on port 443
# Properties a PUBLISH carries on to subscribers; Topic Alias is per connection, Message Expiry is
# recomputed at delivery, Subscription Identifier is not supported (MQTT 5 section 3.3.4).
_NOT_RELAYED = (props.TOPIC_ALIAS, props.MESSAGE_EXPIRY_INTERVAL, props.SUBSCRIPTION_IDENTIFIER)
# Kept as module names for callers of the 3.1.1-only broker.
MAX_PACKET_BYTES = DEFAULT_LIMITS.maximum_packet_size_v3
MAX_PAYLOAD_BYTES = DEFAULT_LIMITS.maximum_payload_bytes
CONNECT_TIMEOUT_S = DEFAULT_LIMITS.connect_timeout_s


class Broker:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        gatekeeper: Gatekeeper,
        handlers: Sequence[TopicHandler],
        host: str = "127.0.0.1",
        port: int = 0,
        extra_ports: Sequence[int] = (),
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.handlers = list(handlers)
        self.limits = limits
        self.store = SessionStore(limits)
        self._ssl = ssl_context
        self._host = host
        self._ports = [port, *extra_ports]
        self._servers: list[asyncio.base_events.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.sessions: dict[str, Session] = {}  # connected clients by client id
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._connack_base = {
            props.RECEIVE_MAXIMUM: limits.receive_maximum,
            props.MAXIMUM_QOS: limits.maximum_qos,
            props.RETAIN_AVAILABLE: int(limits.retain_available),
            props.MAXIMUM_PACKET_SIZE: limits.maximum_packet_size,
            props.TOPIC_ALIAS_MAXIMUM: limits.topic_alias_maximum,
            props.WILDCARD_SUBSCRIPTION_AVAILABLE: int(limits.wildcard_subscription_available),
            props.SUBSCRIPTION_IDENTIFIER_AVAILABLE: int(limits.subscription_identifier_available),
            props.SHARED_SUBSCRIPTION_AVAILABLE: int(limits.shared_subscription_available),
        }

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for port in self._ports:
            self._servers.append(
                await asyncio.start_server(
                    self._on_connection,
                    self._host,
                    port,
                    ssl=self._ssl,
                    ssl_handshake_timeout=self.limits.connect_timeout_s,
                    backlog=1024,
                    limit=self.limits.maximum_packet_size_v3 + 16,
                )
            )
        self._sweeper = asyncio.create_task(self._sweep_sessions())

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def ports(self) -> list[int]:
        return [int(server.sockets[0].getsockname()[1]) for server in self._servers]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.values()):
            session.disconnect(reasons.SERVER_SHUTTING_DOWN, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    # ------------------------------------------------------------------ connection
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        host, port = (writer.get_extra_info("peername") or ("?", "?"))[:2]
        peer = f"{host}:{port}"
        session: Session | None = None
        try:
            session = await self._connect(reader, writer, peer)
            if session is not None:
                await self._serve(session, reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, TimeoutError):
            pass
        except ProtocolError as exc:
            client = session.client_id if session else "-"
            log.info("protocol error peer=%s client=%s: %s", peer, client, exc)
            if session is not None:
                session.disconnect(exc.reason_code, f"protocol error: {exc}")
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("unexpected error on connection peer=%s", peer)
            if session is not None:
                session.disconnect(reasons.UNSPECIFIED_ERROR, "unexpected error")
        finally:
            self._tasks.discard(task)
            if session is not None:
                session.close("connection closed", logging.DEBUG)
                self._end(session)
            with contextlib.suppress(Exception):
                writer.close()

    async def _connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> Session | None:
        limits = self.limits
        kind, _, body = await asyncio.wait_for(
            codec.read_packet(reader, limits.maximum_packet_size_v3), limits.connect_timeout_s
        )
        if kind != codec.CONNECT:
            raise ProtocolError("first packet is not CONNECT")  # MQTT-3.1.0-1
        try:
            connect = codec.parse_connect(body)
        except codec.UnsupportedProtocol as exc:
            # MQTT 5 section 3.1.2.2: a level above 5 may be a newer client and reads 0x84 in MQTT 5's
            # CONNACK; anything older reads 3.1.1's return code 1.
            refusal = (codec.Codec5 if exc.level > 5 else codec.Codec311).connack(False, exc.reason_code)
            writer.write(refusal)
            log.info("connect refused peer=%s: %s (only MQTT 3.1.1 and 5 are emulated)", peer, exc)
            return None
        except ProtocolError as exc:
            level = codec.protocol_level(body)
            writer.write(codec.CODECS.get(level or 0, codec.Codec311).connack(False, exc.reason_code))
            log.info("connect refused peer=%s: malformed CONNECT: %s", peer, exc)
            return None
        wire = codec.CODECS[connect.protocol_level]
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        refusal = self._check_connect(connect, len(body))
        if refusal is not None:
            code, why = refusal
            writer.write(wire.connack(False, code))
            log.info(
                "connect refused peer=%s client=%s mqtt=%s: %s", peer, connect.client_id, wire.version, why
            )
            return None
        client_id = connect.client_id
        assigned = None
        if not client_id:
            # MQTT 5 (AWS IoT: "If one is not provided, AWS IoT server will assign a unique ID ... and
            # return it in the CONNACK packet", awsiot.mqtt5_client_builder). The format is UNCONFIRMED.
            client_id = assigned = str(uuid.uuid4())
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        certificate_id = hashlib.sha256(der).hexdigest() if der else ""
        try:
            admission = await self.gatekeeper.admit(certificate_id, client_id)
        except Refused as exc:
            if not exc.hang_up:
                writer.write(wire.connack(False, reasons.NOT_AUTHORIZED))
            log.info(
                "connect refused client=%s cert=%.12s peer=%s mqtt=%s: %s",
                client_id,
                certificate_id,
                peer,
                wire.version,
                exc,
            )
            return None
        return self._open_session(connect, wire, writer, client_id, assigned, admission, peer, alpn)

    def _check_connect(self, connect: Connect, size: int) -> tuple[int, str] | None:
        """A reason to refuse a well-formed CONNECT before asking the gatekeeper, or None."""
        if connect.protocol_level == codec.Codec311.level and not connect.client_id:
            return reasons.CLIENT_IDENTIFIER_NOT_VALID, "empty client id"
        if connect.protocol_level == codec.Codec5.level and size + 5 > self.limits.maximum_packet_size:
            # (fixed header: 1 byte and at most 4 of remaining length)
            return reasons.PACKET_TOO_LARGE, f"CONNECT of {size} bytes"
        if props.AUTHENTICATION_METHOD in connect.properties:
            # AWS IoT's MQTT 5 has no enhanced authentication (AUTH); an MQTT 5 server answers an
            # authentication method it does not support with 0x8C (MQTT-4.12.0-1).
            return reasons.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported"
        if connect.will is not None and not valid_topic_name(connect.will.topic):
            return reasons.TOPIC_NAME_INVALID, f"will topic {connect.will.topic!r}"
        return None

    def _open_session(
        self,
        connect: Connect,
        wire: type[Codec],
        writer: asyncio.StreamWriter,
        client_id: str,
        assigned: str | None,
        admission: Admission,
        peer: str,
        alpn: str | None,
    ) -> Session:
        """Take over the client id, resume or start its session, CONNACK, then what was queued."""
        previous = self.sessions.get(client_id)
        if previous is not None:
            # AWS IoT: a second connection with the same client id disconnects the first
            # (lifecycle reason DUPLICATE_CLIENTID; MQTT 5: DISCONNECT 0x8E Session taken over).
            previous.disconnect(reasons.SESSION_TAKEN_OVER, "DUPLICATE_CLIENTID")
            self._end(previous)
        requested, expiry = self._session_expiry(connect)
        state = self.store.find(client_id)
        if state is not None and connect.clean_session:
            self.store.discard(state)
            state = None
        resumed = state is not None
        if state is None:
            state = self.store.create(client_id, admission.certificate_id, expiry)
        else:
            self.store.attach(state)
            state.expiry_s = expiry
            state.certificate_id = admission.certificate_id
        session = Session(
            self,
            writer,
            client_id,
            admission,
            peer,
            codec=wire,
            state=state,
            connect_properties=connect.properties,
        )
        session.keep_alive = self.limits.server_keep_alive(connect.keep_alive)
        state.session = session
        self.sessions[client_id] = session
        if resumed:
            self._reauthorise(session)
        connack_properties = dict(self._connack_base)
        connack_properties[props.SERVER_KEEP_ALIVE] = session.keep_alive
        if assigned is not None:
            connack_properties[props.ASSIGNED_CLIENT_IDENTIFIER] = assigned
        if requested != expiry:
            connack_properties[props.SESSION_EXPIRY_INTERVAL] = (
                expiry  # section 3.2.2.3.2: the server's value
            )
        writer.write(wire.connack(resumed, reasons.SUCCESS, connack_properties))
        log.info(
            "connect client=%s cert=%.12s %s peer=%s mqtt=%s session=%s%s",
            client_id,
            admission.certificate_id,
            admission.label,
            peer,
            wire.version,
            f"resumed({len(state.queue)} queued)" if resumed else ("persistent" if expiry else "clean"),
            f" alpn={alpn}" if alpn else "",
        )
        for message in self.store.take_queue(state):
            session.send_message(message, message.qos, message.retain)
        return session

    def _session_expiry(self, connect: Connect) -> tuple[int, int]:
        """(what the client asked, what it gets) in seconds; 0 ends the session with the connection."""
        limit = self.limits.session_expiry_s
        if connect.protocol_level == codec.Codec311.level:
            expiry = 0 if connect.clean_session else limit
            return expiry, expiry
        requested = int(connect.properties.get(props.SESSION_EXPIRY_INTERVAL, 0))
        # AWS: a session lives at most the account's persistent-session expiry (mqtt.html); an MQTT 5
        # client that asks for longer (0xFFFFFFFF: never) is told the server's value in CONNACK.
        return requested, min(requested, limit)

    def _reauthorise(self, session: Session) -> None:
        """AWS re-authorises a resumed session: subscriptions its policies no longer allow are dropped."""
        for topic_filter in list(session.state.subscriptions):
            if not self.gatekeeper.may_subscribe(session, topic_filter):
                del session.state.subscriptions[topic_filter]
                log.info(
                    "resumed session client=%s: subscription %s no longer allowed",
                    session.client_id,
                    topic_filter,
                )

    def _end(self, session: Session) -> None:
        """The connection is gone: keep its session for its expiry, or end it (idempotent)."""
        if session.ended:
            return
        session.ended = True
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        state = session.state
        if state.session is not session:
            return
        state.session = None
        if state.persistent:
            state.last_session = session
            self.store.requeue_front(state, session.unacknowledged())
        for evicted in self.store.park(state):
            log.info(
                "session client=%s cert=%.12s dropped early: disconnected sessions over their cap",
                evicted.client_id,
                evicted.certificate_id,
            )

    async def _serve(self, session: Session, reader: asyncio.StreamReader) -> None:
        wire = session.codec
        read_limit = (
            self.limits.maximum_packet_size if wire is codec.Codec5 else self.limits.maximum_packet_size_v3
        )
        timeout = session.keep_alive * 1.5 if session.keep_alive else None
        while not session.closed:
            try:
                kind, flags, body = await asyncio.wait_for(codec.read_packet(reader, read_limit), timeout)
            except TimeoutError:
                session.disconnect(reasons.KEEP_ALIVE_TIMEOUT, "MQTT_KEEP_ALIVE_TIMEOUT")
                return
            if kind == codec.PUBLISH:
                self._on_publish(session, wire.parse_publish(flags, body))
            elif kind == codec.PUBACK:
                session.acknowledged(wire.parse_puback(body).packet_id)
            elif kind == codec.SUBSCRIBE:
                self._on_subscribe(session, wire.parse_subscribe(body))
            elif kind == codec.UNSUBSCRIBE:
                self._on_unsubscribe(session, wire.parse_unsubscribe(body))
            elif kind == codec.PINGREQ:
                session.send(wire.pingresp())
            elif kind == codec.DISCONNECT:
                self._on_disconnect(session, wire.parse_disconnect(body).properties)
                return
            elif kind == codec.CONNECT:
                raise ProtocolError("second CONNECT")  # MQTT-3.1.0-2
            else:
                # PUBREC/PUBREL/PUBCOMP: AWS IoT does not support QoS 2; AUTH: no enhanced authentication.
                raise ProtocolError(f"unsupported packet type {kind}")

    def _on_disconnect(self, session: Session, properties: Mapping[str, Any]) -> None:
        expiry = properties.get(props.SESSION_EXPIRY_INTERVAL)
        if isinstance(expiry, int):
            if session.state.expiry_s == 0 and expiry:
                raise ProtocolError("Session Expiry Interval set at DISCONNECT after 0 at CONNECT")
            session.state.expiry_s = min(expiry, self.limits.session_expiry_s)
        session.close("CLIENT_INITIATED_DISCONNECT", logging.DEBUG)

    # ------------------------------------------------------------------ messages
    def _resolve_alias(self, session: Session, message: Publish) -> Publish:
        """MQTT 5 Topic Alias from the client (section 3.3.2.3.4): set with a topic, used without one."""
        alias = message.properties.get(props.TOPIC_ALIAS)
        if alias is None:
            return message
        if not 0 < alias <= self.limits.topic_alias_maximum:
            raise ProtocolError(
                f"topic alias {alias} outside 1..{self.limits.topic_alias_maximum}",
                reasons.TOPIC_ALIAS_INVALID,
            )
        if message.topic:
            session.aliases_from_client[alias] = message.topic
            return message
        topic = session.aliases_from_client.get(alias)
        if topic is None:
            raise ProtocolError(f"topic alias {alias} used before it was set")
        return Publish(
            topic,
            message.payload,
            message.qos,
            message.retain,
            message.dup,
            message.packet_id,
            message.properties,
        )

    def _on_publish(self, session: Session, message: Publish) -> None:
        message = self._resolve_alias(session, message)
        if props.SUBSCRIPTION_IDENTIFIER in message.properties:
            raise ProtocolError("PUBLISH from a client with a Subscription Identifier")  # MQTT-3.3.4-6
        if not valid_topic_name(message.topic):
            raise ProtocolError(
                f"PUBLISH to invalid topic name {message.topic!r}", reasons.TOPIC_NAME_INVALID
            )
        if message.qos == 2:
            if session.codec is codec.Codec5:
                # The CONNACK announced Maximum QoS 1 (MQTT-3.2.2-11: DISCONNECT 0x9B).
                raise ProtocolError("QoS 2 PUBLISH", reasons.QOS_NOT_SUPPORTED)
            # AWS IoT (3.1.1): "When QoS level 2 is requested, the message broker doesn't send a PUBACK".
            log.info("ignored QoS 2 publish client=%s topic=%s", session.client_id, message.topic)
            return
        if not self.gatekeeper.may_publish(session, message.topic):
            session.disconnect(reasons.NOT_AUTHORIZED, f"AUTHORIZATION_FAILURE publish to {message.topic}")
            return
        handler = next((h for h in self.handlers if h.claims(message.topic)), None)
        if handler is None and len(message.payload) > self.limits.maximum_payload_bytes:
            # AWS: CLIENT_ERROR PAYLOAD_LIMIT_EXCEEDED. MQTT 5: 0x95 Packet too large (UNCONFIRMED code).
            session.disconnect(
                reasons.PACKET_TOO_LARGE,
                f"CLIENT_ERROR payload of {len(message.payload)} bytes exceeds 128 KB",
            )
            return
        if message.properties.get(props.PAYLOAD_FORMAT_INDICATOR) == 1 and not _is_utf8(message.payload):
            # MQTT 5 section 3.3.2.3.2: the receiver may check it; PUBACK 0x99 (UNCONFIRMED for AWS IoT).
            if message.qos == 1 and message.packet_id is not None:
                session.send(session.codec.puback(message.packet_id, reasons.PAYLOAD_FORMAT_INVALID))
            return
        if message.qos == 1 and message.packet_id is not None:
            session.send(session.codec.puback(message.packet_id))
        if handler is not None:
            handler.handle(session, message)
            return
        if message.topic.startswith("$aws/"):
            # Reserved topics of services the emulator does not run (shadow, jobs, ...) and the reply
            # topics of the provisioning API: nothing answers, and nothing is relayed to other clients.
            log.debug("reserved topic %s from %s not relayed", message.topic, session.client_id)
            return
        self.route(_routed(message, session.client_id))

    def route(self, message: Message) -> int:
        """Deliver to every subscribed session (connected, or persistent and away); returns how many."""
        delivered = 0
        groups: dict[tuple[str, str], list[tuple[SessionState, Subscription]]] = {}
        topic = message.topic
        for state in list(self.store.states.values()):
            best: Subscription | None = None
            for subscription in state.subscriptions.values():
                if not topic_matches(subscription.topic_filter, topic):
                    continue
                if subscription.share is not None:
                    groups.setdefault((subscription.share, subscription.topic_filter), []).append(
                        (state, subscription)
                    )
                elif not (subscription.no_local and state.client_id == message.origin):
                    if best is None or subscription.qos > best.qos:
                        best = subscription
            if best is not None:
                delivered += self._offer_to(state, message, best)
        for members in groups.values():
            # AWS: each message of a shared subscription goes to one member, chosen at random; a connected
            # member is preferred to a persistent session that is away (UNCONFIRMED).
            connected = [m for m in members if m[0].session is not None]
            state, subscription = random.choice(connected or members)
            delivered += self._offer_to(state, message, subscription)
        return delivered

    def _offer_to(self, state: SessionState, message: Message, subscription: Subscription) -> int:
        retain = message.retain and subscription.retain_as_published  # MQTT-3.3.1-12/13; 3.1.1: always 0
        return int(self.offer(state, message, min(message.qos, subscription.qos), retain))

    def offer(self, state: SessionState, message: Message, qos: int, retain: bool) -> bool:
        """Send to the connection holding `state`, or keep a QoS 1 message for it while it is away."""
        session = state.session
        if session is not None and not session.closed:
            return session.send_message(message, qos, retain)
        if qos != 1 or not state.persistent:
            return False
        if state.expires_at is not None and state.expires_at <= self.store.clock():
            self.store.discard(state)
            return False
        last = state.last_session
        if last is not None and not self.gatekeeper.may_receive(last, message.topic):
            return False
        if message.retain != retain:
            message = Message(
                message.topic,
                message.payload,
                1,
                retain,
                message.properties,
                message.expires_at,
                message.origin,
            )
        if not self.store.enqueue(state, message):
            log.info(
                "dropped message client=%s topic=%s: queued messages over their cap",
                state.client_id,
                message.topic,
            )
            return False
        return True

    def _on_subscribe(self, session: Session, subscribe: Subscribe) -> None:
        wire = session.codec
        if props.SUBSCRIPTION_IDENTIFIER in subscribe.properties:
            # The CONNACK said Subscription Identifiers are not available (AWS IoT does not support them).
            # UNCONFIRMED: AWS's exact answer; MQTT 5 allows SUBACK 0xA1 for each filter, kept connected.
            codes = [reasons.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED] * len(subscribe.requests)
            session.send(wire.suback(subscribe.packet_id, codes))
            return
        codes = []
        for request in subscribe.requests:
            topic_filter = request.topic_filter
            shared = split_shared(topic_filter) if topic_filter.startswith(SHARE_PREFIX) else None
            if not valid_topic_filter(topic_filter):
                log.info("subscribe refused client=%s filter=%r: invalid", session.client_id, topic_filter)
                codes.append(reasons.TOPIC_FILTER_INVALID)
                continue
            if shared is not None and request.no_local:
                raise ProtocolError("No Local on a shared subscription")  # MQTT-3.8.3-4
            if not self.gatekeeper.may_subscribe(session, topic_filter):
                log.info("subscribe refused client=%s filter=%s", session.client_id, topic_filter)
                codes.append(reasons.NOT_AUTHORIZED)
                continue
            granted = min(request.qos, self.limits.maximum_qos)  # AWS IoT supports QoS 0 and 1 only
            share, inner = shared if shared is not None else (None, topic_filter)
            session.state.subscriptions[topic_filter] = Subscription(
                inner, granted, request.no_local, request.retain_as_published, share
            )
            codes.append(granted)
        session.send(wire.suback(subscribe.packet_id, codes))

    def _on_unsubscribe(self, session: Session, unsubscribe: Unsubscribe) -> None:
        codes = [
            reasons.SUCCESS
            if session.state.subscriptions.pop(f, None) is not None
            else reasons.NO_SUBSCRIPTION_EXISTED
            for f in unsubscribe.topic_filters
        ]
        session.send(session.codec.unsuback(unsubscribe.packet_id, codes))

    # ------------------------------------------------------------------ sessions
    async def _sweep_sessions(self) -> None:
        period = max(0.2, min(self.limits.session_expiry_s / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            for state in self.store.expire():
                log.info("session client=%s expired", state.client_id)

    def close_certificate_sessions(self, certificate_id: str, reason: str) -> int:
        """Disconnect every connection authenticated with `certificate_id` and drop the sessions it held
        (its certificate was deactivated or revoked); returns how many connections were closed. Callable
        from any thread: the work runs on the broker's event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0
        if threading.get_ident() == self._loop_thread:
            return self._close_certificate_sessions(certificate_id, reason)

        async def on_loop() -> int:
            return self._close_certificate_sessions(certificate_id, reason)

        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(timeout=30)

    def _close_certificate_sessions(self, certificate_id: str, reason: str) -> int:
        closed = 0
        for session in list(self.sessions.values()):
            if session.certificate_id != certificate_id:
                continue
            # UNCONFIRMED: what AWS IoT sends when a certificate is deactivated; its lifecycle event says
            # AUTH_ERROR, so MQTT 5 clients get 0x87 Not authorized.
            session.disconnect(reasons.NOT_AUTHORIZED, reason)
            self._end(session)
            self.store.discard(session.state)
            closed += 1
        for state in self.store.offline():
            if state.certificate_id == certificate_id:
                self.store.discard(state)
        return closed


def _routed(message: Publish, origin: str) -> Message:
    properties = message.properties
    expires_at = None
    if properties:
        interval = properties.get(props.MESSAGE_EXPIRY_INTERVAL)
        if interval is not None:
            expires_at = time.monotonic() + interval
        properties = {k: v for k, v in properties.items() if k not in _NOT_RELAYED}
    return Message(
        message.topic, message.payload, message.qos, message.retain, properties, expires_at, origin
    )


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
