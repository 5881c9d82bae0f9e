"""The MQTT broker (3.1.1 and 5): listening over TLS with client certificates, each connection's packet loop,
and the sessions that outlive connections.

Connections are accepted by `listener.Listener` (TCP first, TLS once the client speaks, capped and timed
until CONNACK); the packet loop holds each client to its keep-alive between packets and to
`packet_read_timeout_s` within one, and stops reading a client with too many provisioning requests under
way. Memory freed by connections that end goes back to the system in bursts (`heap.py`).

AWS IoT's decisions (who may connect, publish, subscribe, receive) come from a `Gatekeeper`; reserved
request topics (the provisioning API) go to `TopicHandler`s instead of subscribers. Each connection reads
and writes through its version's codec; the broker works on the version-free packet objects and speaks
in MQTT 5 reason codes, which the 3.1.1 codec maps to return codes or to a bare close. The CONNECT phase
is `handshake.py`, what PUBLISH/SUBSCRIBE do is `routing.py`, sending to one client is `connection.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from emulator.logsafe import quoted
from emulator.mqtt import codec, reasons
from emulator.mqtt import properties as props
from emulator.mqtt.codec import ProtocolError
from emulator.mqtt.connection import Session
from emulator.mqtt.contracts import Admission, ConnectionEvents, Gatekeeper, Refused, TopicHandler
from emulator.mqtt.handshake import handshake
from emulator.mqtt.heap import HeapTrimmer
from emulator.mqtt.limits import DEFAULT_LIMITS, Limits
from emulator.mqtt.listener import Listener, Ticket
from emulator.mqtt.routing import Router
from emulator.mqtt.sessions import Message, SessionState, SessionStore
from emulator.mqtt.throttle import PerKeyInterval
from emulator.mqtt.watchdog import Watchdog
from emulator.mqtt.wire import read_packet_rest

__all__ = ["ALPN_PROTOCOL", "Admission", "Broker", "Gatekeeper", "Refused", "Session", "TopicHandler"]

log = logging.getLogger("emulator.mqtt")

ALPN_PROTOCOL = "x-amzn-mqtt-ca"  # AWS IoT: MQTT with X.509 client certificates on port 443
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
        self.router = Router(gatekeeper, self.handlers, limits, self.store)
        self.sessions: dict[str, Session] = {}  # connected clients by client id
        self.events: ConnectionEvents | None = None  # lifecycle events (lifecycle.py), set by the emulator
        self._host = host
        self._ports = [port, *extra_ports]
        self.listener = Listener(ssl_context, limits, self._on_connection, limits.maximum_packet_size_v3 + 16)
        self.trimmer = HeapTrimmer()
        self.listener.on_closed = self.trimmer.connection_closed
        rate = limits.connects_per_second_per_client_id
        self.connect_rate: PerKeyInterval | None = None if rate is None else PerKeyInterval(rate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # What every MQTT 5 CONNACK announces: AWS IoT Core's values (limits.py).
        self._connack = {
            props.RECEIVE_MAXIMUM: limits.receive_maximum,
            props.MAXIMUM_QOS: limits.maximum_qos,
            props.RETAIN_AVAILABLE: int(limits.retain_available),
            props.MAXIMUM_PACKET_SIZE: limits.maximum_packet_size,
            props.TOPIC_ALIAS_MAXIMUM: limits.topic_alias_maximum,
            props.WILDCARD_SUBSCRIPTION_AVAILABLE: int(limits.wildcard_subscription_available),
            props.SUBSCRIPTION_IDENTIFIER_AVAILABLE: int(limits.subscription_identifier_available),
            props.SHARED_SUBSCRIPTION_AVAILABLE: int(limits.shared_subscription_available),
        }

    def connack_properties(self, keep_alive: int) -> dict[str, Any]:
        # AWS IoT sends Server Keep Alive in every CONNACK (1200 for a client that asked for 1200).
        return {**self._connack, props.SERVER_KEEP_ALIVE: keep_alive}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self.listener.start(self._host, self._ports)
        self._sweeper = asyncio.create_task(self._sweep_sessions())

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def ports(self) -> list[int]:
        return self.listener.ports

    async def stop(self) -> None:
        await self.listener.close_listening()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.values()):
            session.disconnect(reasons.SERVER_SHUTTING_DOWN, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.listener.close()

    # ------------------------------------------------------------------ messages (see routing.py)
    def route(self, message: Message) -> int:
        return self.router.route(message)

    def offer(self, state: SessionState, message: Message, qos: int, retain: bool) -> bool:
        return self.router.offer(state, message, qos, retain)

    # ------------------------------------------------------------------ connections
    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ticket: Ticket
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = ticket.peer
        session: Session | None = None
        try:
            session = await handshake(self, reader, writer, peer, ticket.deadline)
            ticket.release()  # CONNECT answered: the next client may start its TLS handshake
            if session is not None:
                if self.events is not None:
                    self.events.connected(session)
                await self._serve(session, reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, TimeoutError):
            pass
        except ProtocolError as exc:
            client = quoted(session.client_id) if session else "-"
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
                self.release(session)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, session: Session, reader: asyncio.StreamReader) -> None:
        """The packet loop: keep-alive between packets, `packet_read_timeout_s` within one, and no reading
        while the client has `requests_per_connection` provisioning requests under way."""
        wire, router, limits = session.codec, self.router, self.limits
        read_limit = wire.read_limit(limits)
        task = asyncio.current_task()
        assert task is not None
        idle_s = session.keep_alive * 1.5 if session.keep_alive else None  # MQTT-3.1.2-24
        packet_s = limits.packet_read_timeout_s
        watchdog = Watchdog(asyncio.get_running_loop(), task, idle_s, packet_s)
        try:
            while not session.closed:
                watchdog.idle()
                first = await reader.readexactly(1)
                watchdog.packet_started()
                kind, flags, body = await read_packet_rest(reader, first[0], read_limit)
                if kind == codec.PUBLISH:
                    router.on_publish(session, wire.parse_publish(flags, body))
                    if session.requests >= limits.requests_per_connection:
                        watchdog.pause()
                        await session.wait_for_request_slot()
                elif kind == codec.PUBACK:
                    session.acknowledged(wire.parse_puback(body).packet_id)
                elif kind == codec.SUBSCRIBE:
                    router.on_subscribe(session, wire.parse_subscribe(body))
                elif kind == codec.UNSUBSCRIBE:
                    router.on_unsubscribe(session, wire.parse_unsubscribe(body))
                elif kind == codec.PINGREQ:
                    session.send(wire.pingresp())
                elif kind == codec.DISCONNECT:
                    self._on_disconnect(session, wire.parse_disconnect(body).properties)
                    return
                elif kind == codec.CONNECT:
                    raise ProtocolError("second CONNECT")  # MQTT-3.1.0-2
                else:
                    # PUBREC/PUBREL/PUBCOMP: AWS IoT does not support QoS 2; AUTH: no enhanced auth.
                    raise ProtocolError(f"unsupported packet type {kind}")
        except asyncio.CancelledError:
            if not watchdog.expired:
                raise
            task.uncancel()  # the watchdog's own cancellation, turned into the time-out it stands for
            if watchdog.within_packet:
                # CHOSEN: AWS documents no such deadline; a half-sent packet holds its bytes in memory.
                session.disconnect(
                    reasons.KEEP_ALIVE_TIMEOUT, f"packet not complete within {packet_s:g} s of its first byte"
                )
            else:
                session.disconnect(reasons.KEEP_ALIVE_TIMEOUT, "MQTT_KEEP_ALIVE_TIMEOUT")
        finally:
            watchdog.stop()

    def _on_disconnect(self, session: Session, properties: Mapping[str, Any]) -> None:
        expiry = properties.get(props.SESSION_EXPIRY_INTERVAL)
        if isinstance(expiry, int):
            if session.state.expiry_s == 0 and expiry:
                raise ProtocolError("Session Expiry Interval set at DISCONNECT after 0 at CONNECT")
            session.state.expiry_s = min(expiry, self.limits.session_expiry_s)
        session.close("CLIENT_INITIATED_DISCONNECT", logging.DEBUG)

    def release(self, session: Session) -> None:
        """The connection is gone: keep its session for its expiry, or end it (idempotent)."""
        if session.ended:
            return
        session.ended = True
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if self.events is not None:
            self.events.disconnected(session)
        state = session.state
        if state.session is not session:
            return
        state.session = None
        if state.persistent:
            self.store.requeue_front(state, session.unacknowledged())
        for evicted in self.store.park(state):
            log.info(
                "session client=%s cert=%.12s dropped early: disconnected sessions over their cap",
                quoted(evicted.client_id),
                evicted.certificate_id,
            )

    # ------------------------------------------------------------------ sessions
    async def _sweep_sessions(self) -> None:
        period = max(0.2, min(self.limits.session_expiry_s / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            for state in self.store.expire():
                log.info("session client=%s expired", quoted(state.client_id))

    def close_certificate_sessions(self, certificate_id: str, reason: str) -> int:
        """Disconnect every connection authenticated with `certificate_id` and drop the sessions it held
        (its certificate left ACTIVE, as AWS IoT does); returns how many connections were found. Callable
        from any thread without waiting: from another thread the closing is scheduled on the broker's
        event loop (the registry calls it while it changes a certificate)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0
        if threading.get_ident() == self._loop_thread:
            return self._close_certificate_sessions(certificate_id, reason)
        found = sum(1 for s in list(self.sessions.values()) if s.certificate_id == certificate_id)
        loop.call_soon_threadsafe(self._close_certificate_sessions, certificate_id, reason)
        return found

    def _close_certificate_sessions(self, certificate_id: str, reason: str) -> int:
        closed = 0
        for session in list(self.sessions.values()):
            if session.certificate_id != certificate_id:
                continue
            # UNCONFIRMED: what AWS IoT sends when a certificate is deactivated; its lifecycle event says
            # AUTH_ERROR, so MQTT 5 clients get 0x87 Not authorized.
            session.disconnect(reasons.NOT_AUTHORIZED, reason)
            self.release(session)
            self.store.discard(session.state)
            closed += 1
        for state in self.store.offline():
            if state.certificate_id == certificate_id:
                self.store.discard(state)
        return closed
