"""AWS IoT's lifecycle events: `$aws/events/presence/connected/<clientId>` and `.../disconnected/<clientId>`.

AWS IoT publishes one when a client connects or disconnects (developer guide, life-cycle-events.html), with
the payloads below. Here the broker calls `connected` and `disconnected` (its `events`), and this module
publishes each event to the subscribers whose policies allow it (iot:Subscribe at SUBSCRIBE, iot:Receive
at delivery, as for any message: a device's policy allows neither, so nothing is relayed to it) and hands
it to the listeners, the stack's topic rules (emulator/rules/). Client ids with `#` or `+` get no events,
as on AWS. Everything runs on the broker's event loop and does not block.

Routing a message visits every session (routing.py), about 2 ms with 300 connected clients here, and there
are four events per provisioned device. So the events are routed only while some session holds a
subscription that can match them: `observe(gatekeeper)` notes each session granted such a filter (one that
starts with `$aws/events/`, or a shared subscription), and an event with no such session left is only
handed to the listeners.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from emulator.mqtt.contracts import Admission, Gatekeeper
from emulator.mqtt.sessions import Message, SessionState

if TYPE_CHECKING:
    from emulator.mqtt.connection import Session

log = logging.getLogger("emulator.mqtt.lifecycle")

CONNECTED_TOPIC = "$aws/events/presence/connected/{}"
DISCONNECTED_TOPIC = "$aws/events/presence/disconnected/{}"
# AWS's disconnectReason values (life-cycle-events.html). The broker's own reasons start with one of these
# where they are AWS's; the others are mapped in `disconnect_reason`.
DISCONNECT_REASONS = frozenset(
    {
        "AUTH_ERROR",
        "CLIENT_INITIATED_DISCONNECT",
        "CLIENT_ERROR",
        "CONNECTION_LOST",
        "DUPLICATE_CLIENTID",
        "FORBIDDEN_ACCESS",
        "MQTT_KEEP_ALIVE_TIMEOUT",
        "SERVER_ERROR",
        "SERVER_INITIATED_DISCONNECT",
        "THROTTLED",
        "WEBSOCKET_TTL_EXPIRATION",
        "CUSTOMAUTH_TTL_EXPIRATION",
    }
)
_REASON_PREFIXES = (
    ("AUTHORIZATION_FAILURE", "AUTH_ERROR"),  # a publish the policies deny: "authorization failed"
    ("protocol error", "CLIENT_ERROR"),
    ("server shutting down", "SERVER_INITIATED_DISCONNECT"),
    ("unexpected error", "SERVER_ERROR"),
    ("connection closed", "CONNECTION_LOST"),  # the socket closed without a DISCONNECT
)
MAX_VERSIONED_CLIENTS = 100_000  # client ids whose connection count is remembered (bounded memory)
# Filters that can match a lifecycle topic: `$` topics match no filter that starts with a wildcard.
EVENT_FILTER_PREFIXES = ("$aws/events/", "$share/")

Listener = Callable[[str, bytes], None]  # (topic, payload): a topic rule runner


def disconnect_reason(close_reason: str) -> str:
    """AWS's disconnectReason for the reason the broker closed the connection with."""
    first = close_reason.split(" ", 1)[0]
    if first in DISCONNECT_REASONS:
        return first
    for prefix, reason in _REASON_PREFIXES:
        if close_reason.startswith(prefix):
            return reason
    return "CONNECTION_LOST"


class LifecycleEvents:
    """The broker's `events`: builds AWS's payloads, routes them, tells the listeners."""

    def __init__(self, route: Callable[[Message], int], listeners: Sequence[Listener] = ()) -> None:
        self._route = route
        self._listeners = list(listeners)
        # Per connection: its session identifier and version number, shared by its two events.
        self._connections: WeakKeyDictionary[Session, tuple[str, int]] = WeakKeyDictionary()
        # UNCONFIRMED: AWS says versionNumber "is incremented for each connection of a particular client
        # ID" without saying from where; here it starts at 0 for a client id's first connection.
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._subscribers: set[SessionState] = set()  # sessions granted a filter that can match an event

    def observe(self, gatekeeper: Gatekeeper) -> Gatekeeper:
        """The gatekeeper the broker should use: the same decisions, and the subscribers noted."""
        return _Observed(gatekeeper, self._subscribers)

    def connected(self, session: Session) -> None:
        if _no_events(session.client_id):
            return
        version = self._versions.pop(session.client_id, -1) + 1
        self._versions[session.client_id] = version
        while len(self._versions) > MAX_VERSIONED_CLIENTS:
            self._versions.popitem(last=False)
        identifier = uuid.uuid4().hex
        self._connections[session] = (identifier, version)
        self._publish(
            CONNECTED_TOPIC.format(session.client_id),
            {
                "clientId": session.client_id,
                "timestamp": _now_ms(),
                "eventType": "connected",
                "sessionIdentifier": identifier,
                "principalIdentifier": session.certificate_id,
                "ipAddress": session.peer.rpartition(":")[0] or session.peer,
                "versionNumber": version,
            },
        )

    def disconnected(self, session: Session) -> None:
        known = self._connections.pop(session, None)
        if known is None or _no_events(session.client_id):
            return  # never announced as connected (refused before CONNACK): no disconnect either
        identifier, version = known
        reason = disconnect_reason(session.close_reason)
        self._publish(
            DISCONNECTED_TOPIC.format(session.client_id),
            {
                "clientId": session.client_id,
                "timestamp": _now_ms(),
                "eventType": "disconnected",
                "sessionIdentifier": identifier,
                "principalIdentifier": session.certificate_id,
                "clientInitiatedDisconnect": reason == "CLIENT_INITIATED_DISCONNECT",
                "disconnectReason": reason,
                "versionNumber": version,
            },
        )

    def _publish(self, topic: str, event: dict[str, object]) -> None:
        subscribed = self._has_subscribers()
        if not subscribed and not self._listeners:
            return  # nobody would see it (the default stack, every device): no payload to build
        payload = json.dumps(event, separators=(",", ":")).encode()
        try:
            if subscribed:
                # UNCONFIRMED: the QoS AWS publishes lifecycle events with; QoS 1 here, so a subscriber's
                # own QoS decides (and a persistent session keeps those it missed, as any QoS 1 message).
                self._route(Message(topic, payload, 1))
        except Exception:
            log.exception("lifecycle event %s not delivered", topic)
        for listener in self._listeners:
            try:
                listener(topic, payload)
            except Exception:
                log.exception("lifecycle event %s: a listener failed", topic)

    def _has_subscribers(self) -> bool:
        gone = [
            state
            for state in self._subscribers
            if state.discarded or not any(f.startswith(EVENT_FILTER_PREFIXES) for f in state.subscriptions)
        ]
        self._subscribers.difference_update(gone)
        return bool(self._subscribers)


class _Observed:
    """A gatekeeper that notes which sessions were granted a filter that can match a lifecycle event."""

    def __init__(self, inner: Gatekeeper, subscribers: set[SessionState]) -> None:
        self.inner = inner
        self._subscribers = subscribers
        self.may_publish = inner.may_publish  # the hot paths, unwrapped
        self.may_receive = inner.may_receive

    async def admit(self, certificate_id: str, client_id: str) -> Admission:
        return await self.inner.admit(certificate_id, client_id)

    def may_subscribe(self, session: Session, topic_filter: str) -> bool:
        allowed = self.inner.may_subscribe(session, topic_filter)
        if allowed and topic_filter.startswith(EVENT_FILTER_PREFIXES):
            self._subscribers.add(session.state)
        return allowed


def _no_events(client_id: str) -> bool:
    return "#" in client_id or "+" in client_id


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
