"""The MQTT 3.1.1 broker: TLS with client certificates, sessions, subscriptions, routing.

AWS IoT's decisions (who may connect, publish, subscribe, receive) come from a `Gatekeeper`;
reserved request topics (the provisioning API) go to `TopicHandler`s instead of subscribers.
Behaviour on refusals follows AWS IoT (docs/emulator.md): a refused CONNECT is closed without
CONNACK, an unauthorised PUBLISH closes the connection, an unauthorised SUBSCRIBE gets 0x80 for
that filter in the SUBACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.mqtt import codec
from emulator.mqtt.codec import ProtocolError

log = logging.getLogger("emulator.mqtt")

# AWS IoT's payload limit is 128 KB; packets up to twice that are read so that an oversized
# provisioning request can still be answered with a 400 rejection instead of a dropped connection.
MAX_PACKET_BYTES = 256 * 1024 + 1024
MAX_PAYLOAD_BYTES = 128 * 1024
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Admission:
    """What the gatekeeper decided at CONNECT: who this is and what it may do (opaque to the broker)."""

    certificate_id: str
    authority: Any  # the gatekeeper's per-connection state (policies, context)
    label: str = ""  # for log lines, e.g. "claim" or "thing device-123"


class Refused(Exception):
    """The gatekeeper refuses a CONNECT; the reason goes to the log, never to the client (as AWS)."""


class Gatekeeper(Protocol):
    async def admit(self, certificate_id: str, client_id: str) -> Admission: ...
    def may_publish(self, session: Session, topic: str) -> bool: ...
    def may_subscribe(self, session: Session, topic_filter: str) -> bool: ...
    def may_receive(self, session: Session, topic: str) -> bool: ...


class TopicHandler(Protocol):
    def claims(self, topic: str) -> bool:
        """True for a topic this handler owns: it is never routed to subscribers."""
        ...

    def handle(self, session: Session, message: codec.Publish) -> None: ...


class Session:
    """One client connection after a successful CONNECT."""

    def __init__(
        self, broker: Broker, writer: asyncio.StreamWriter, client_id: str, admission: Admission, peer: str
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.admission = admission
        self.peer = peer
        self.subscriptions: dict[str, int] = {}
        self.keep_alive = 0
        self._writer = writer
        self._next_packet_id = 0
        self.closed = False

    @property
    def certificate_id(self) -> str:
        return self.admission.certificate_id

    def send(self, data: bytes) -> None:
        if not self.closed:
            self._writer.write(data)

    def _packet_id(self) -> int:
        self._next_packet_id = self._next_packet_id % 65535 + 1
        return self._next_packet_id

    def granted_qos(self, topic: str) -> int | None:
        """The highest QoS among this session's subscriptions matching `topic`, None if none does."""
        best = None
        for topic_filter, qos in self.subscriptions.items():
            if codec.topic_matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        return best

    def deliver(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Send a message to this client alone, as a subscriber of `topic`: only if it subscribed to a
        matching filter and may receive it. Returns whether it was sent."""
        granted = self.granted_qos(topic)
        if granted is None or self.closed:
            return False
        if not self.broker.gatekeeper.may_receive(self, topic):
            return False
        out_qos = min(qos, granted)
        self.send(codec.publish(topic, payload, out_qos, self._packet_id() if out_qos else None))
        return True

    def close(self, reason: str, level: int = logging.INFO) -> None:
        if self.closed:
            return
        self.closed = True
        log.log(
            level, "disconnect client=%s cert=%.12s reason=%s", self.client_id, self.certificate_id, reason
        )
        with contextlib.suppress(Exception):
            self._writer.close()


class Broker:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        gatekeeper: Gatekeeper,
        handlers: Sequence[TopicHandler],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.handlers = list(handlers)
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._server: asyncio.base_events.Server | None = None
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(
            self._on_connection,
            self._host,
            self._port,
            ssl=self._ssl,
            ssl_handshake_timeout=CONNECT_TIMEOUT_S,
            backlog=1024,
            limit=MAX_PACKET_BYTES + 16,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def close_certificate_sessions(self, certificate_id: str, reason: str) -> int:
        """Disconnect every connection authenticated with `certificate_id` (its certificate left ACTIVE, as
        AWS IoT does). Callable from any thread: the closing happens on the broker's loop. Returns how
        many connections were found."""
        matching = [s for s in list(self.sessions.values()) if s.certificate_id == certificate_id]
        if matching and self._loop is not None:
            self._loop.call_soon_threadsafe(_close_each, matching, reason)
        return len(matching)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.close("server shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

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
            log.info("protocol error peer=%s client=%s: %s", peer, session.client_id if session else "-", exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("unexpected error on connection peer=%s", peer)
        finally:
            self._tasks.discard(task)
            if session is not None:
                session.close("connection closed", logging.DEBUG)
                if self.sessions.get(session.client_id) is session:
                    del self.sessions[session.client_id]
            with contextlib.suppress(Exception):
                writer.close()

    async def _connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> Session | None:
        kind, _, body = await asyncio.wait_for(codec.read_packet(reader, MAX_PACKET_BYTES), CONNECT_TIMEOUT_S)
        if kind != codec.CONNECT:
            raise ProtocolError("first packet is not CONNECT")  # MQTT-3.1.0-1
        connect = codec.parse_connect(body)
        if connect.protocol_name != "MQTT" or connect.protocol_level != 4:
            writer.write(codec.connack(codec.CONNACK_BAD_PROTOCOL))
            log.info(
                "connect refused peer=%s: protocol %s level %s (only MQTT 3.1.1 is emulated)",
                peer,
                connect.protocol_name,
                connect.protocol_level,
            )
            return None
        if not connect.client_id:
            writer.write(codec.connack(codec.CONNACK_IDENTIFIER_REJECTED))
            log.info("connect refused peer=%s: empty client id", peer)
            return None
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        certificate_id = hashlib.sha256(der).hexdigest() if der else ""
        try:
            admission = await self.gatekeeper.admit(certificate_id, connect.client_id)
        except Refused as exc:
            # AWS IoT closes the connection without a CONNACK; the SDK reports an unexpected hang-up.
            log.info(
                "connect refused client=%s cert=%.12s peer=%s: %s",
                connect.client_id,
                certificate_id,
                peer,
                exc,
            )
            return None
        previous = self.sessions.get(connect.client_id)
        if previous is not None:
            # AWS IoT: a second connection with the same client id disconnects the first.
            previous.close("DUPLICATE_CLIENTID")
        session = Session(self, writer, connect.client_id, admission, peer)
        self.sessions[connect.client_id] = session
        writer.write(codec.connack(codec.CONNACK_ACCEPTED, session_present=False))
        log.info(
            "connect client=%s cert=%.12s %s peer=%s",
            connect.client_id,
            certificate_id,
            admission.label,
            peer,
        )
        session.keep_alive = connect.keep_alive
        return session

    async def _serve(self, session: Session, reader: asyncio.StreamReader) -> None:
        keep_alive = session.keep_alive
        timeout = keep_alive * 1.5 if keep_alive else None
        while not session.closed:
            if timeout is None:
                kind, flags, body = await codec.read_packet(reader, MAX_PACKET_BYTES)
            else:
                try:
                    kind, flags, body = await asyncio.wait_for(
                        codec.read_packet(reader, MAX_PACKET_BYTES), timeout
                    )
                except TimeoutError:
                    session.close("MQTT_KEEP_ALIVE_TIMEOUT")
                    return
            if kind == codec.PUBLISH:
                self._on_publish(session, codec.parse_publish(flags, body))
            elif kind == codec.SUBSCRIBE:
                self._on_subscribe(session, *codec.parse_subscribe(body))
            elif kind == codec.UNSUBSCRIBE:
                packet_id, filters = codec.parse_unsubscribe(body)
                for topic_filter in filters:
                    session.subscriptions.pop(topic_filter, None)
                session.send(codec.unsuback(packet_id))
            elif kind == codec.PINGREQ:
                session.send(codec.pingresp())
            elif kind == codec.PUBACK:
                codec.parse_packet_id(body)  # QoS 1 deliveries are not retransmitted; nothing to track
            elif kind == codec.DISCONNECT:
                session.close("CLIENT_INITIATED_DISCONNECT", logging.DEBUG)
                return
            elif kind == codec.CONNECT:
                raise ProtocolError("second CONNECT")  # MQTT-3.1.0-2
            else:
                # PUBREC/PUBREL/PUBCOMP: AWS IoT does not support QoS 2.
                raise ProtocolError(f"unsupported packet type {kind}")

    # ------------------------------------------------------------------ messages
    def _on_publish(self, session: Session, message: codec.Publish) -> None:
        if not codec.valid_topic_name(message.topic):
            raise ProtocolError(f"PUBLISH to invalid topic name {message.topic!r}")
        if message.qos == 2:
            # AWS IoT: "When QoS level 2 is requested, the message broker doesn't send a PUBACK".
            log.info("ignored QoS 2 publish client=%s topic=%s", session.client_id, message.topic)
            return
        if not self.gatekeeper.may_publish(session, message.topic):
            session.close(f"AUTHORIZATION_FAILURE publish to {message.topic}")
            return
        handler = next((h for h in self.handlers if h.claims(message.topic)), None)
        if handler is None and len(message.payload) > MAX_PAYLOAD_BYTES:
            session.close(f"CLIENT_ERROR payload of {len(message.payload)} bytes exceeds 128 KB")
            return
        if message.qos == 1 and message.packet_id is not None:
            session.send(codec.puback(message.packet_id))
        if handler is not None:
            handler.handle(session, message)
            return
        if message.topic.startswith("$aws/"):
            # Reserved topics of services the emulator does not run (shadow, jobs, ...) and the reply
            # topics of the provisioning API: nothing answers, and nothing is relayed to other clients.
            log.debug("reserved topic %s from %s not relayed", message.topic, session.client_id)
            return
        self.route(message.topic, message.payload, message.qos)

    def route(self, topic: str, payload: bytes, qos: int) -> int:
        delivered = 0
        for session in list(self.sessions.values()):
            if session.deliver(topic, payload, qos):
                delivered += 1
        return delivered

    def _on_subscribe(self, session: Session, packet_id: int, filters: Iterable[tuple[str, int]]) -> None:
        codes = []
        for topic_filter, qos in filters:
            if not codec.valid_topic_filter(topic_filter) or not self.gatekeeper.may_subscribe(
                session, topic_filter
            ):
                log.info("subscribe refused client=%s filter=%s", session.client_id, topic_filter)
                codes.append(codec.SUBACK_FAILURE)
                continue
            granted = min(qos, 1)  # AWS IoT supports QoS 0 and 1 only
            session.subscriptions[topic_filter] = granted
            codes.append(granted)
        session.send(codec.suback(packet_id, codes))


def _close_each(sessions: list[Session], reason: str) -> None:
    for session in sessions:
        session.close(reason)
