"""One client connection after a successful CONNECT: what it sends, in the codec of its MQTT version.

`Session` is the broker's handle on a connected client (the gatekeeper and the topic handlers receive
it). Its `state` is the MQTT session (`sessions.SessionState`), which may outlive the connection. What
differs between versions on the way out lives here and in the codecs only: MQTT 5 topic aliases towards
the client, the client's Receive Maximum and Maximum Packet Size, Message Expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from emulator.logsafe import quoted
from emulator.mqtt import properties as props
from emulator.mqtt import reasons
from emulator.mqtt.codec import Codec
from emulator.mqtt.contracts import Admission
from emulator.mqtt.sessions import Message, SessionState, Subscription
from emulator.mqtt.throttle import TokenBucket

if TYPE_CHECKING:
    from emulator.mqtt.broker import Broker

log = logging.getLogger("emulator.mqtt")


class Session:
    """One client connection after a successful CONNECT."""

    def __init__(
        self,
        broker: Broker,
        writer: asyncio.StreamWriter,
        client_id: str,
        admission: Admission,
        peer: str,
        *,
        codec: type[Codec],
        state: SessionState,
        connect_properties: Mapping[str, Any] = props.EMPTY,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.admission = admission
        self.peer = peer
        self.codec = codec
        self.state = state
        self.keep_alive = 0
        self._writer = writer
        self._next_packet_id = 0
        self.closed = False
        self.close_reason = ""  # the first reason it was closed for (its lifecycle event's disconnectReason)
        self.ended = False  # the broker has settled its session state (parked or discarded)
        self.state_label = ""  # for the connect log line: clean, persistent, resumed(n queued)
        limits = broker.limits
        # Towards the client: MQTT 5 CONNECT properties (absent in 3.1.1, where none of this applies).
        self.max_packet_to_client: int | None = connect_properties.get(props.MAXIMUM_PACKET_SIZE)
        self.alias_max_to_client: int = connect_properties.get(props.TOPIC_ALIAS_MAXIMUM, 0)
        receive_maximum = connect_properties.get(props.RECEIVE_MAXIMUM)
        flow = [x for x in (receive_maximum, limits.outbound_in_flight) if x is not None]
        self.flow_limit: int | None = min(flow) if flow else None
        self._aliases_to_client: dict[str, int] = {}
        self.aliases_from_client: dict[int, str] = {}
        # QoS 1 messages sent and not yet acknowledged (the message itself only where a persistent
        # session must send it again after a reconnect), and those waiting for a free slot.
        self.in_flight: dict[int, Message | None] = {}
        self.pending: deque[tuple[Message, int, bool]] = deque()
        self.held_bytes = 0  # payload bytes of the pending messages and of the in-flight ones kept
        self._transport = writer.transport
        self._high_water = limits.write_buffer_high_water
        # AWS's publishes per second per connection (`--limits aws`), and how many it discarded.
        rate = limits.publishes_per_second
        self.publish_rate: TokenBucket | None = None if rate is None else TokenBucket(rate)
        self.throttled_publishes = 0
        # Requests under way for topic handlers (the provisioning API): past the cap the broker stops
        # reading this connection until one is answered (`wait_for_request_slot`).
        self.requests = 0
        self._request_slot: asyncio.Future[None] | None = None

    @property
    def certificate_id(self) -> str:
        return self.admission.certificate_id

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return self.state.subscriptions

    def send(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if not self._write(data):
            log.info(
                "disconnect client=%s cert=%.12s reason=slow reader: over %d bytes waiting to be sent",
                quoted(self.client_id),
                self.certificate_id,
                self._high_water,
            )

    def _write(self, data: bytes) -> bool:
        """Queue `data`; False when the client does not read and the connection was dropped for it."""
        transport = self._transport
        transport.write(data)
        if transport.get_write_buffer_size() > self._high_water:
            # A client that does not read: what it is sent piles up here once the kernel's buffers are
            # full. Dropped at once (abort, not close: close would first try to send the pile).
            self._mark_closed("slow reader")
            transport.abort()
            trimmer = self.broker.trimmer
            trimmer.connection_closed(weight=trimmer.burst)  # megabytes freed at once: give them back
            return False
        return True

    # ---------------------------------------------------------------- requests to topic handlers
    def request_started(self) -> None:
        self.requests += 1

    def request_finished(self) -> None:
        self.requests -= 1
        slot = self._request_slot
        if (
            slot is not None
            and not slot.done()
            and self.requests < self.broker.limits.requests_per_connection
        ):
            slot.set_result(None)

    async def wait_for_request_slot(self) -> None:
        """Until fewer than `requests_per_connection` requests are under way (or the connection closed)."""
        while self.requests >= self.broker.limits.requests_per_connection and not self.closed:
            self._request_slot = asyncio.get_running_loop().create_future()
            try:
                await self._request_slot
            finally:
                self._request_slot = None

    # ---------------------------------------------------------------- delivery
    def matching_subscription(self, topic: str) -> Subscription | None:
        """The highest-QoS subscription of this session that matches `topic`."""
        return self.broker.store.index.best_for(self.state, topic)

    def granted_qos(self, topic: str) -> int | None:
        best = self.matching_subscription(topic)
        return None if best is None else best.qos

    def deliver(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Send a message to this client alone, as a subscriber of `topic`: only if it subscribed to a
        matching filter and may receive it. Returns whether it was sent (or, for a persistent session
        whose connection has ended, kept for its next connection)."""
        subscription = self.matching_subscription(topic)
        if subscription is None:
            return False
        message = Message(topic, payload, qos)
        if not self.closed:
            return self.send_message(message, min(qos, subscription.qos), False)
        return self.broker.offer(self.state, message, min(qos, subscription.qos), False)

    def send_message(self, message: Message, qos: int, retain: bool) -> bool:
        if self.closed or not self.broker.gatekeeper.may_receive(self, message.topic):
            return False
        if qos and self.flow_limit is not None and len(self.in_flight) >= self.flow_limit:
            limits = self.broker.limits
            size = len(message.payload)
            if (
                len(self.pending) >= limits.pending_messages_per_connection
                or self.held_bytes + size > limits.held_bytes_per_connection
            ):
                log.info(
                    "dropped message client=%s topic=%s: pending queue full",
                    quoted(self.client_id),
                    quoted(message.topic),
                )
                return False
            self.pending.append((message, qos, retain))
            self.held_bytes += size
            return True
        return self._transmit(message, qos, retain)

    def _transmit(self, message: Message, qos: int, retain: bool) -> bool:
        properties = message.properties
        if message.expires_at is not None:
            remaining = message.expires_at - time.monotonic()
            if remaining <= 0:
                return False  # MQTT 5 section 3.3.2.3.3: an expired message is not delivered
            properties = {**properties, props.MESSAGE_EXPIRY_INTERVAL: math.ceil(remaining)}
        topic, new_alias = message.topic, None
        if self.alias_max_to_client:
            alias = self._aliases_to_client.get(topic)
            if alias is None and len(self._aliases_to_client) < self.alias_max_to_client:
                alias = new_alias = len(self._aliases_to_client) + 1
            if alias is not None:
                properties = {**properties, props.TOPIC_ALIAS: alias}
                if new_alias is None:
                    topic = ""  # the client knows this alias already
        packet_id = self._packet_id() if qos else None
        data = self.codec.publish(topic, message.payload, qos, packet_id, retain, message.dup, properties)
        if self.max_packet_to_client is not None and len(data) > self.max_packet_to_client:
            # MQTT-3.1.2-25: a packet larger than the client accepts is discarded, as if delivered.
            log.info(
                "dropped message client=%s topic=%s: %d bytes over the client's maximum packet size %d",
                quoted(self.client_id),
                quoted(message.topic),
                len(data),
                self.max_packet_to_client,
            )
            return False
        if new_alias is not None:
            self._aliases_to_client[message.topic] = new_alias
        if packet_id is not None:
            self._track(packet_id, message)
        self.send(data)
        return True

    def _track(self, packet_id: int, message: Message) -> None:
        """Count a QoS 1 message until its PUBACK: for flow control (the client's Receive Maximum), and
        kept whole where a persistent session sends it again after a reconnect, within the caps."""
        limits = self.broker.limits
        persistent = self.state.persistent
        if self.flow_limit is None and not (
            persistent and len(self.in_flight) < limits.queued_messages_per_session
        ):
            return
        size = len(message.payload)
        if persistent and self.held_bytes + size <= limits.held_bytes_per_connection:
            self.in_flight[packet_id] = message
            self.held_bytes += size
        else:
            self.in_flight[packet_id] = None

    def acknowledged(self, packet_id: int) -> None:
        """PUBACK from the client: its slot is free for the next pending message."""
        if packet_id not in self.in_flight:
            return  # not in flight (an ack for a message this broker does not track): nothing to do
        acknowledged = self.in_flight.pop(packet_id)
        if acknowledged is not None:
            self.held_bytes -= len(acknowledged.payload)
        while self.pending and (self.flow_limit is None or len(self.in_flight) < self.flow_limit):
            message, qos, retain = self.pending.popleft()
            self.held_bytes -= len(message.payload)
            self._transmit(message, qos, retain)

    def unacknowledged(self) -> list[Message]:
        """What a persistent session sends again when it resumes: in flight (marked DUP), then pending."""
        kept = [replace(m, dup=True) for m in self.in_flight.values() if m is not None]
        kept += [
            replace(m, retain=retain) if m.retain != retain else m for m, qos, retain in self.pending if qos
        ]
        self.in_flight.clear()
        self.pending.clear()
        self.held_bytes = 0
        return kept

    def _packet_id(self) -> int:
        """The next packet identifier not in flight. Flow control and `_track` keep fewer than 65535 in
        flight; the loop is bounded all the same, so that no client can make it spin."""
        for _ in range(65535):
            self._next_packet_id = self._next_packet_id % 65535 + 1
            if self._next_packet_id not in self.in_flight:
                break
        return self._next_packet_id

    # ---------------------------------------------------------------- ending
    def disconnect(self, reason_code: int, reason: str, level: int = logging.INFO) -> None:
        """End the connection as the broker: MQTT 5 clients get a DISCONNECT with `reason_code` first."""
        if self.closed:
            return
        self.close(
            f"{reason} [{reasons.name(reason_code, props.DISCONNECT)}]",
            level,
            last=self.codec.disconnect(reason_code),
        )

    def close(self, reason: str, level: int = logging.INFO, last: bytes = b"") -> None:
        """The line first, then `last` (an MQTT 5 DISCONNECT), then the close: a client (or a test) that
        has seen its connection end finds the line already written."""
        if self.closed:
            return
        if log.isEnabledFor(level):  # most closes log at DEBUG: not even the client id is quoted then
            log.log(
                level,
                "disconnect client=%s cert=%.12s reason=%s",
                quoted(self.client_id),
                self.certificate_id,
                reason,
            )
        if last and not self._write(last):
            return  # a slow reader: dropped by `_write` (one line: the one above)
        self._mark_closed(reason)
        with contextlib.suppress(Exception):
            self._writer.close()

    def _mark_closed(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        slot = self._request_slot
        if slot is not None and not slot.done():
            slot.set_result(None)  # the read loop stops waiting for a request slot, and ends
