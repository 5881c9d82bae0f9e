"""What the broker does with PUBLISH, SUBSCRIBE and UNSUBSCRIBE, the same for both MQTT versions.

A PUBLISH is checked (topic alias, topic name, QoS, iot:Publish, size, payload format), acknowledged,
then handed to the topic handler that owns its topic (the provisioning API) or routed: to every session
with a matching subscription, connected or persistent and away, and to one member of each matching shared
subscription. Refusals are MQTT 5 reason codes; the 3.1.1 codec turns them into what 3.1.1 can say.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

from emulator.mqtt import properties as props
from emulator.mqtt import reasons
from emulator.mqtt.codec import ProtocolError
from emulator.mqtt.connection import Session
from emulator.mqtt.contracts import Gatekeeper, TopicHandler
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import Publish, Subscribe, Unsubscribe
from emulator.mqtt.sessions import Message, SessionState, SessionStore, Subscription
from emulator.mqtt.topics import (
    SHARE_PREFIX,
    split_shared,
    topic_matches,
    valid_topic_filter,
    valid_topic_name,
)

log = logging.getLogger("emulator.mqtt")

# Properties a PUBLISH carries on to subscribers; Topic Alias is per connection, Message Expiry is
# recomputed at delivery, Subscription Identifier is not supported (MQTT 5 section 3.3.4).
_NOT_RELAYED = (props.TOPIC_ALIAS, props.MESSAGE_EXPIRY_INTERVAL, props.SUBSCRIPTION_IDENTIFIER)


class Router:
    def __init__(
        self, gatekeeper: Gatekeeper, handlers: Sequence[TopicHandler], limits: Limits, store: SessionStore
    ) -> None:
        self.gatekeeper = gatekeeper
        self.handlers = list(handlers)
        self.limits = limits
        self.store = store

    # ------------------------------------------------------------------ PUBLISH
    def on_publish(self, session: Session, message: Publish) -> None:
        if message.properties:  # MQTT 5 only
            message = self._resolve_alias(session, message)
            if props.SUBSCRIPTION_IDENTIFIER in message.properties:
                raise ProtocolError("PUBLISH from a client with a Subscription Identifier")  # MQTT-3.3.4-6
        if not valid_topic_name(message.topic):
            raise ProtocolError(
                f"PUBLISH to invalid topic name {message.topic!r}", reasons.TOPIC_NAME_INVALID
            )
        if message.qos == 2:
            if session.codec.enforces_maximum_qos:  # MQTT 5: CONNACK said Maximum QoS 1 (MQTT-3.2.2-11)
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
            size = len(message.payload)
            session.disconnect(
                reasons.PACKET_TOO_LARGE, f"CLIENT_ERROR payload of {size} bytes exceeds 128 KB"
            )
            return
        if (
            message.properties
            and message.properties.get(props.PAYLOAD_FORMAT_INDICATOR) == 1
            and not _is_utf8(message.payload)
        ):
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

    def _resolve_alias(self, session: Session, message: Publish) -> Publish:
        """MQTT 5 Topic Alias from the client (section 3.3.2.3.4): set with a topic, used without one."""
        alias = message.properties.get(props.TOPIC_ALIAS)
        if alias is None:
            return message
        maximum = self.limits.topic_alias_maximum
        if not 0 < alias <= maximum:
            raise ProtocolError(f"topic alias {alias} outside 1..{maximum}", reasons.TOPIC_ALIAS_INVALID)
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

    # ------------------------------------------------------------------ delivery
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
        # iot:Receive is checked when the message is sent, with the policies of the connection that
        # resumes the session (holding the last connection's authority here would cost memory per session).
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
                "dropped message client=%s topic=%s: queued bytes over their cap",
                state.client_id,
                message.topic,
            )
            return False
        return True

    # ------------------------------------------------------------------ SUBSCRIBE, UNSUBSCRIBE
    def on_subscribe(self, session: Session, subscribe: Subscribe) -> None:
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

    def on_unsubscribe(self, session: Session, unsubscribe: Unsubscribe) -> None:
        subscriptions = session.state.subscriptions
        codes = [
            reasons.SUCCESS if subscriptions.pop(f, None) is not None else reasons.NO_SUBSCRIPTION_EXISTED
            for f in unsubscribe.topic_filters
        ]
        session.send(session.codec.unsuback(unsubscribe.packet_id, codes))


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
