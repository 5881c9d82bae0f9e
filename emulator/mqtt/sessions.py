"""MQTT sessions that outlive their connection (AWS IoT "persistent sessions"), and the bounded store of them.

A session is what MQTT keeps per client id: its subscriptions and, while no connection holds it, the QoS 1
messages that arrive for it. It is the same object for both MQTT versions: 3.1.1 cleanSession=0 and MQTT 5
Clean Start 0 with a Session Expiry Interval both resume it; the version only decides how long it lives
(3.1.1: the account's expiry; 5: what the client asks, at most that).

Memory is bounded whatever clients do (see `Limits`): queued messages per session and in bytes over all
sessions, disconnected sessions per certificate and in all, and subscriptions over all disconnected
sessions. Past a cap the session disconnected longest ago is dropped first, as if it had expired.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.mqtt.limits import Limits
from emulator.mqtt.properties import EMPTY
from emulator.mqtt.topic_index import SubscriptionIndex

if TYPE_CHECKING:
    from emulator.mqtt.connection import Session


@dataclass(slots=True)
class Subscription:
    topic_filter: str  # what is matched: for `$share/g/a/b`, `a/b`
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    share: str | None = None  # the share name of a shared subscription


@dataclass(slots=True)  # not frozen: on every reply's path, and a frozen __init__ costs twice as much
class Message:
    """An application message on its way to subscribers, as the broker holds it between versions (treated
    as immutable: `dataclasses.replace` makes changed copies)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: Mapping[str, Any] = EMPTY  # relayed as they came (user properties, response topic...)
    expires_at: float | None = None  # monotonic; from MQTT 5 Message Expiry Interval
    origin: str | None = None  # the publisher's client id (MQTT 5 No Local)
    dup: bool = False


class SessionState:
    __slots__ = (
        "client_id",
        "certificate_id",
        "subscriptions",
        "queue",
        "queued_bytes",
        "expiry_s",
        "expires_at",
        "session",
        "discarded",
    )

    def __init__(self, client_id: str, certificate_id: str, expiry_s: int) -> None:
        self.client_id = client_id
        self.certificate_id = certificate_id  # of the connection that last held it
        self.subscriptions: dict[str, Subscription] = {}  # by the filter as subscribed
        self.queue: deque[Message] = deque()  # QoS 1 messages for the next connection
        self.queued_bytes = 0
        self.expiry_s = expiry_s  # 0: ends with its connection
        self.expires_at: float | None = None  # set while no connection holds it
        self.session: Session | None = None  # the connection holding it
        self.discarded = False

    @property
    def persistent(self) -> bool:
        return self.expiry_s > 0 and not self.discarded


class SessionStore:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.states: dict[str, SessionState] = {}  # by client id: held by a connection or not
        self.index = SubscriptionIndex()  # every state's subscriptions, for matching topics
        self._offline: OrderedDict[str, SessionState] = OrderedDict()  # disconnected longest ago first
        self._offline_by_certificate: dict[str, OrderedDict[str, None]] = {}
        self.queued_bytes = 0
        self.offline_subscriptions = 0

    # ---------------------------------------------------------------- lifecycle
    def find(self, client_id: str) -> SessionState | None:
        """The session of `client_id` if it exists and has not expired."""
        state = self.states.get(client_id)
        if state is not None and state.expires_at is not None and state.expires_at <= self.clock():
            self.discard(state)
            return None
        return state

    def create(self, client_id: str, certificate_id: str, expiry_s: int) -> SessionState:
        old = self.states.get(client_id)
        if old is not None:
            self.discard(old)
        state = SessionState(client_id, certificate_id, expiry_s)
        self.states[client_id] = state
        return state

    def attach(self, state: SessionState) -> None:
        """A connection resumes `state`: it is no longer disconnected."""
        if self._offline.pop(state.client_id, None) is not None:
            self._forget_offline(state)
        state.expires_at = None

    def park(self, state: SessionState) -> list[SessionState]:
        """The connection holding `state` ended: keep it for its expiry, or end it. Returns the sessions
        dropped early to stay within the caps (oldest disconnected first)."""
        if not state.persistent:
            self.discard(state)
            return []
        state.expires_at = self.clock() + state.expiry_s
        self._offline[state.client_id] = state
        self._offline_by_certificate.setdefault(state.certificate_id, OrderedDict())[state.client_id] = None
        self.offline_subscriptions += len(state.subscriptions)
        return self._enforce_caps(state.certificate_id)

    def discard(self, state: SessionState) -> None:
        if state.discarded:
            return
        state.discarded = True
        if self._offline.pop(state.client_id, None) is not None:
            self._forget_offline(state)
        if self.states.get(state.client_id) is state:
            del self.states[state.client_id]
        self.queued_bytes -= state.queued_bytes
        state.queue.clear()
        state.queued_bytes = 0
        for subscription in state.subscriptions.values():
            self.index.remove(state, subscription)
        state.subscriptions.clear()

    def expire(self) -> list[SessionState]:
        now = self.clock()
        expired = [s for s in self._offline.values() if s.expires_at is not None and s.expires_at <= now]
        for state in expired:
            self.discard(state)
        return expired

    def offline(self) -> list[SessionState]:
        return list(self._offline.values())

    # ---------------------------------------------------------------- subscriptions
    def subscribe(self, state: SessionState, key: str, subscription: Subscription) -> None:
        """`key`: the filter as subscribed (`$share/g/a/b` for a shared one)."""
        old = state.subscriptions.get(key)
        if old is not None:
            self.index.remove(state, old)
        state.subscriptions[key] = subscription
        self.index.add(state, subscription)

    def unsubscribe(self, state: SessionState, key: str) -> bool:
        subscription = state.subscriptions.pop(key, None)
        if subscription is None:
            return False
        self.index.remove(state, subscription)
        return True

    # ---------------------------------------------------------------- queued messages
    def enqueue(self, state: SessionState, message: Message) -> bool:
        """Keep a QoS 1 message for a disconnected session; False if it was dropped at a cap."""
        size = len(message.payload)
        if self.queued_bytes + size > self.limits.queued_bytes_total:
            return False
        if len(state.queue) >= self.limits.queued_messages_per_session:
            # AWS gives no per-session count; keep the newest, as a device that reconnects cares most
            # about the latest state.
            self._drop_oldest(state)
        state.queue.append(message)
        state.queued_bytes += size
        self.queued_bytes += size
        return True

    def requeue_front(self, state: SessionState, messages: list[Message]) -> None:
        """In-flight and pending messages of a connection that ended go first when it resumes."""
        for message in reversed(messages):
            if self.queued_bytes + len(message.payload) > self.limits.queued_bytes_total:
                continue
            state.queue.appendleft(message)
            state.queued_bytes += len(message.payload)
            self.queued_bytes += len(message.payload)
        while len(state.queue) > self.limits.queued_messages_per_session:
            self._drop_oldest(state)

    def take_queue(self, state: SessionState) -> list[Message]:
        messages = list(state.queue)
        state.queue.clear()
        self.queued_bytes -= state.queued_bytes
        state.queued_bytes = 0
        return messages

    def _drop_oldest(self, state: SessionState) -> None:
        dropped = state.queue.popleft()
        state.queued_bytes -= len(dropped.payload)
        self.queued_bytes -= len(dropped.payload)

    # ---------------------------------------------------------------- caps
    def _forget_offline(self, state: SessionState) -> None:
        self.offline_subscriptions -= len(state.subscriptions)
        by_certificate = self._offline_by_certificate.get(state.certificate_id)
        if by_certificate is not None:
            by_certificate.pop(state.client_id, None)
            if not by_certificate:
                del self._offline_by_certificate[state.certificate_id]

    def _enforce_caps(self, certificate_id: str) -> list[SessionState]:
        evicted = []
        by_certificate = self._offline_by_certificate.get(certificate_id)
        while by_certificate and len(by_certificate) > self.limits.offline_sessions_per_certificate:
            evicted.append(self._offline[next(iter(by_certificate))])
            self.discard(evicted[-1])
            by_certificate = self._offline_by_certificate.get(certificate_id)
        while self._offline and (
            len(self._offline) > self.limits.offline_sessions
            or self.offline_subscriptions > self.limits.offline_subscriptions
        ):
            evicted.append(next(iter(self._offline.values())))
            self.discard(evicted[-1])
        return evicted
