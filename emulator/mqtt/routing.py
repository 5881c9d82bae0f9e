"""What the broker does with PUBLISH, SUBSCRIBE and UNSUBSCRIBE, the same for both MQTT versions.

A PUBLISH is checked (AWS's publish rate with `--limits aws`, topic alias, topic name, QoS, iot:Publish,
size, payload format), acknowledged, then handed to the topic handler that owns its topic (the provisioning
API) or routed: to every session with a matching subscription, connected or persistent and away, and to one
member of each matching shared subscription, found through the subscription index (`topic_index.py`), so
that routing costs what the matching subscriptions cost. A SUBSCRIBE is held to AWS's 8 filters per request
and 50 subscriptions per connection. Refusals are MQTT 5 reason codes; the 3.1.1 codec turns them into what
3.1.1 can say.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

from emulator.logsafe import quoted
from emulator.mqtt import properties as props
from emulator.mqtt import reasons
from emulator.mqtt.codec import ProtocolError
from emulator.mqtt.connection import Session
from emulator.mqtt.contracts import Gatekeeper, TopicHandler
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import Publish, Subscribe, SubscriptionRequest, Unsubscribe
from emulator.mqtt.sessions import Message, SessionState, SessionStore, Subscription
from emulator.mqtt.topics import SHARE_PREFIX, split_shared, valid_topic_filter, valid_topic_name

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
        if session.publish_rate is not None and not session.publish_rate.take():
            self._throttled(session, message)
            return
        if message.properties:  # MQTT 5 only
            message = self._resolve_alias(session, message)
            if props.SUBSCRIPTION_IDENTIFIER in message.properties:
                raise ProtocolError("PUBLISH from a client with a Subscription Identifier")  # MQTT-3.3.4-6
        if not valid_topic_name(message.topic):
            raise ProtocolError(
                f"PUBLISH to invalid topic name {quoted(message.topic)}", reasons.TOPIC_NAME_INVALID
            )
        if message.qos == 2:
            if session.codec.enforces_maximum_qos:  # MQTT 5: CONNACK said Maximum QoS 1 (MQTT-3.2.2-11)
                raise ProtocolError("QoS 2 PUBLISH", reasons.QOS_NOT_SUPPORTED)
            # AWS IoT (3.1.1): "When QoS level 2 is requested, the message broker doesn't send a PUBACK".
            log.info(
                "ignored QoS 2 publish client=%s topic=%s", quoted(session.client_id), quoted(message.topic)
            )
            return
        if not self.gatekeeper.may_publish(session, message.topic):
            session.disconnect(
                reasons.NOT_AUTHORIZED, f"AUTHORIZATION_FAILURE publish to {quoted(message.topic)}"
            )
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
            log.debug(
                "reserved topic %s from %s not relayed", quoted(message.topic), quoted(session.client_id)
            )
            return
        self.route(_routed(message, session.client_id))

    def _throttled(self, session: Session, message: Publish) -> None:
        """AWS: "Publish requests exceeding that limit will be discarded"; the connection stays. An MQTT 5
        QoS 1 publish is told so with PUBACK 0x97 Quota exceeded (UNCONFIRMED code); 3.1.1 has no way to."""
        if message.qos == 1 and message.packet_id is not None and session.codec.acks_with_reason_codes:
            session.send(session.codec.puback(message.packet_id, reasons.QUOTA_EXCEEDED))
        session.throttled_publishes += 1
        if session.throttled_publishes == 1 or session.throttled_publishes % 1000 == 0:
            log.info(
                "publish throttled client=%s topic=%s: over %g publishes/s (%d discarded on this connection)",
                quoted(session.client_id),
                quoted(message.topic),
                self.limits.publishes_per_second,
                session.throttled_publishes,
            )

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
        best: dict[SessionState, Subscription] = {}
        groups: list[list[tuple[SessionState, Subscription]]] = []
        origin = message.origin
        for node in self.store.index.nodes(message.topic):
            if node.plain:
                for state, subscription in node.plain.items():
                    if subscription.no_local and state.client_id == origin:
                        continue
                    current = best.get(state)
                    if current is None or subscription.qos > current.qos:
                        best[state] = subscription
            if node.shared:
                groups += [list(members.items()) for members in node.shared.values()]
        # Delivery may end sessions (an expired one, a slow reader): the index is not iterated any more.
        delivered = 0
        for state, subscription in best.items():
            delivered += self._offer_to(state, message, subscription)
        for members in groups:
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
                quoted(state.client_id),
                quoted(message.topic),
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
        limit = self.limits.filters_per_subscribe
        if limit is not None and len(subscribe.requests) > limit:
            log.info(
                "subscribe refused client=%s: %d filters in one SUBSCRIBE, AWS allows %d",
                quoted(session.client_id),
                len(subscribe.requests),
                limit,
            )
            session.send(wire.suback(subscribe.packet_id, [reasons.QUOTA_EXCEEDED] * len(subscribe.requests)))
            return
        codes = [self._subscribe_one(session, request) for request in subscribe.requests]
        session.send(wire.suback(subscribe.packet_id, codes))

    def _subscribe_one(self, session: Session, request: SubscriptionRequest) -> int:
        """The SUBACK code for one filter of a SUBSCRIBE: the granted QoS, or the refusal."""
        topic_filter = request.topic_filter
        shared = split_shared(topic_filter) if topic_filter.startswith(SHARE_PREFIX) else None
        if not valid_topic_filter(topic_filter):
            log.info(
                "subscribe refused client=%s filter=%s: invalid",
                quoted(session.client_id),
                quoted(topic_filter),
            )
            return reasons.TOPIC_FILTER_INVALID
        if shared is not None and request.no_local:
            raise ProtocolError("No Local on a shared subscription")  # MQTT-3.8.3-4
        state = session.state
        cap = self.limits.subscriptions_per_connection
        if cap is not None and topic_filter not in state.subscriptions and len(state.subscriptions) >= cap:
            log.info(
                "subscribe refused client=%s filter=%s: %d subscriptions on this connection, AWS allows %d",
                quoted(session.client_id),
                quoted(topic_filter),
                len(state.subscriptions),
                cap,
            )
            return reasons.QUOTA_EXCEEDED
        if not self.gatekeeper.may_subscribe(session, topic_filter):
            log.info("subscribe refused client=%s filter=%s", quoted(session.client_id), quoted(topic_filter))
            return reasons.NOT_AUTHORIZED
        granted = min(request.qos, self.limits.maximum_qos)  # AWS IoT supports QoS 0 and 1 only
        share, inner = shared if shared is not None else (None, topic_filter)
        self.store.subscribe(
            state,
            topic_filter,
            Subscription(inner, granted, request.no_local, request.retain_as_published, share),
        )
        return granted

    def on_unsubscribe(self, session: Session, unsubscribe: Unsubscribe) -> None:
        state = session.state
        codes = [
            reasons.SUCCESS if self.store.unsubscribe(state, f) else reasons.NO_SUBSCRIPTION_EXISTED
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
