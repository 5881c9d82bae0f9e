"""One MQTT 5 connection (awscrt's `mqtt5.Client`: one client, one connection) behind the simulator's
version-neutral `Connection` interface (device_sim/transport.py), and MQTT 5's reason codes as the
report's kinds.

The mqtt5 client has no connect future and reconnects by itself. Here it behaves as one connection, as
the 3.1.1 one does: `connect` starts it and waits for the first lifecycle outcome, and any failure stops
it. A DISCONNECT from the endpoint fails whatever the device is waiting for at once, with the reason code
in the detail: awscrt itself fails the operations it had queued only when it reconnects (a second later).

Reason codes become the kinds 3.1.1 reports for the same event, retried as 3.1.1's are, so that reports
of both versions compare (docs/loadtest.md, "Failure kinds"):
- a refusing CONNACK (0x87 Not authorized, 0x97 Quota exceeded, ...) is `connect_refused`, retried (awscrt
  reports a refusing 3.1.1 CONNACK as AWS_ERROR_MQTT_PROTOCOL_ERROR, which is `connect_refused`);
- a DISCONNECT (0x87 Not authorized, 0x8E Session taken over, 0x97 Quota exceeded, ...) is
  `connection_closed`, retried: a 3.1.1 endpoint closes the connection in each of these cases;
- a SUBACK failure is `subscribe_refused`, not retried, as 3.1.1's SUBACK 0x80;
- a PUBACK failure has no 3.1.1 counterpart (AWS IoT closes a 3.1.1 connection that publishes where it may
  not, and drops a throttled QoS 1 publish unanswered): `publish_refused`, retried for the throttling
  codes (0x96 Message rate too high, 0x97 Quota exceeded) and 0x80 Unspecified error only.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from enum import IntEnum
from typing import TypeVar

from awscrt import io as crt_io
from awscrt import mqtt5

from device_sim.crt import ConnectionLost, classify, wait
from device_sim.errors import DeviceFailure

T = TypeVar("T")
MessageHandler = Callable[[str, bytes], None]
QOS1 = mqtt5.QoS.AT_LEAST_ONCE
RETRIED_PUBACK_CODES = frozenset({0x80, 0x96, 0x97})
# awscrt's own reconnect: never reached in practice (a lost connection fails the step, which stops the
# client), and slow enough not to race the step's own retry with the same client id.
RECONNECT_DELAY_MS = (5_000, 10_000)


def reason(code: int, names: type[IntEnum]) -> str:
    """`0x87 NOT_AUTHORIZED`: a reason code with awscrt's name for it (MQTT 5 §2.4)."""
    try:
        name = names(code).name
    except ValueError:
        name = "UNKNOWN"
    return f"0x{code:02X} {name}"


class ConnectFailed(Exception):
    """The first connection attempt failed: with the CONNACK that refused it, or without one (hang-up)."""

    def __init__(self, connack: mqtt5.ConnackPacket | None, error: BaseException | None) -> None:
        super().__init__(connack, error)
        self.connack = connack
        self.error = error


def connect_failure(exc: BaseException, step: str) -> DeviceFailure:
    if isinstance(exc, ConnectFailed) and exc.connack is not None:
        code = int(exc.connack.reason_code)
        why = f": {exc.connack.reason_string}" if exc.connack.reason_string else ""
        return DeviceFailure(
            "connect_refused",
            f"{step}: the endpoint refused the connection: CONNACK "
            f"{reason(code, mqtt5.ConnectReasonCode)}{why}",
            retryable=True,
            step=step,
        )
    if isinstance(exc, ConnectFailed) and exc.error is not None:
        return classify(exc.error, step)
    return classify(exc, step)


def disconnect_failure(
    packet: mqtt5.DisconnectPacket | None, error: BaseException | None, step: str
) -> DeviceFailure:
    if packet is None:  # closed without a DISCONNECT: as 3.1.1's hang-up
        failure = classify(error, step) if error is not None else None
        if failure is not None and failure.kind != "error":
            return failure
        return DeviceFailure("connection_closed", f"{step}: the connection closed", retryable=True, step=step)
    code = int(packet.reason_code)
    why = f": {packet.reason_string}" if packet.reason_string else ""
    return DeviceFailure(
        "connection_closed",
        f"{step}: the endpoint disconnected: DISCONNECT {reason(code, mqtt5.DisconnectReasonCode)}{why}",
        retryable=True,
        step=step,
    )


def puback_failure(packet: mqtt5.PubackPacket, topic: str, step: str) -> DeviceFailure:
    code = int(packet.reason_code)
    why = f": {packet.reason_string}" if packet.reason_string else ""
    return DeviceFailure(
        "publish_refused",
        f"{step}: the endpoint refused the publish to {topic}: PUBACK "
        f"{reason(code, mqtt5.PubackReasonCode)}{why}",
        retryable=code in RETRIED_PUBACK_CODES,
        step=step,
    )


class Mqtt5Connection:
    version = "5"

    def __init__(
        self,
        *,
        bootstrap: crt_io.ClientBootstrap,
        tls: crt_io.ClientTlsContext,
        host: str,
        port: int,
        client_id: str,
        socket_options: crt_io.SocketOptions,
        keep_alive_s: int,
        ping_timeout_ms: int,
        timeout_s: float,
    ) -> None:
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.interrupted = False  # the connection was up and went away (any DISCONNECT or hang-up)
        self._outcome = outcome = Future[None]()  # the first connection attempt
        self._stopped = stopped = Future[None]()
        self._lost: asyncio.Future[None] | None = None  # created on the event loop by connect()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnect: tuple[mqtt5.DisconnectPacket | None, BaseException | None] = (None, None)
        self._handlers: dict[str, MessageHandler] = {}
        self._started = self._stopping = False
        me = weakref.ref(self)  # awscrt keeps the callbacks; they must not keep this object alive

        def on_success(_: mqtt5.LifecycleConnectSuccessData) -> None:
            if not outcome.done():
                outcome.set_result(None)

        def on_failure(data: mqtt5.LifecycleConnectFailureData) -> None:
            if not outcome.done():
                outcome.set_exception(ConnectFailed(data.connack_packet, data.exception))

        def on_disconnection(data: mqtt5.LifecycleDisconnectData) -> None:
            if (this := me()) is not None:
                this._lose(data.disconnect_packet, data.exception)

        def on_stopped(_: mqtt5.LifecycleStoppedData) -> None:
            if not stopped.done():
                stopped.set_result(None)

        def on_publish(data: mqtt5.PublishReceivedData) -> None:
            this = me()
            packet = data.publish_packet
            if this is not None and (handler := this._handler_for(packet.topic)) is not None:
                handler(packet.topic, packet.payload)

        self._client = mqtt5.Client(
            mqtt5.ClientOptions(
                host_name=host,
                port=port,
                bootstrap=bootstrap,
                socket_options=socket_options,
                tls_ctx=tls,
                connect_options=mqtt5.ConnectPacket(
                    client_id=client_id, keep_alive_interval_sec=keep_alive_s
                ),
                session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
                # Nothing waits in an offline queue: an operation on a lost connection fails its step.
                offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
                min_reconnect_delay_ms=RECONNECT_DELAY_MS[0],
                max_reconnect_delay_ms=RECONNECT_DELAY_MS[1],
                ping_timeout_ms=ping_timeout_ms,
                connack_timeout_ms=int(timeout_s * 1000),
                ack_timeout_sec=max(1, math.ceil(timeout_s)),
                on_publish_callback_fn=on_publish,
                on_lifecycle_event_connection_success_fn=on_success,
                on_lifecycle_event_connection_failure_fn=on_failure,
                on_lifecycle_event_disconnection_fn=on_disconnection,
                on_lifecycle_event_stopped_fn=on_stopped,
            )
        )

    @property
    def protocol_client(self) -> mqtt5.Client:
        """What the SDK's service clients (`IotIdentityClientV2`) are built on."""
        return self._client

    def _lose(self, packet: mqtt5.DisconnectPacket | None, error: BaseException | None) -> None:
        """On awscrt's thread: the connection went away. Fails what waits on it, unless we stopped it."""
        if self._stopping:
            return
        self.interrupted = True
        self._disconnect = (packet, error)
        loop, lost = self._loop, self._lost
        if loop is not None and lost is not None:
            try:
                loop.call_soon_threadsafe(_set_once, lost)
            except RuntimeError:  # the event loop is closed: the run is over
                pass

    async def connect(self, step: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._lost = self._loop.create_future()
        self._started = True
        self._client.start()
        try:
            await wait(self._outcome, self.timeout_s)
        except BaseException as exc:
            self._stop()
            raise connect_failure(exc, step) from None

    async def disconnect(self) -> None:
        if not self._started:
            return
        self._stop()
        try:
            await wait(self._stopped, self.timeout_s)
        except Exception:  # noqa: BLE001 - a connection that is already gone is what we wanted
            pass

    def _stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            # With a DISCONNECT, as a device that ends its session on purpose: without one the client just
            # closes the socket, which AWS IoT reports as CONNECTION_LOST in the lifecycle events.
            self._client.stop(
                mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.NORMAL_DISCONNECTION)
            )

    async def _wait(self, future: Future[T] | asyncio.Future[T], timeout_s: float, step: str) -> T:
        try:
            return await wait(future, timeout_s, self._lost)
        except ConnectionLost:
            raise disconnect_failure(*self._disconnect, step) from None

    async def publish(self, topic: str, payload: bytes, step: str) -> None:
        """Publish QoS 1 and wait for a successful PUBACK."""
        future = self._client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=QOS1))
        try:
            completion = await self._wait(future, self.timeout_s, step)
        except BaseException as exc:
            raise classify(exc, step) from None
        if completion.puback is not None and int(completion.puback.reason_code) >= 0x80:
            raise puback_failure(completion.puback, topic, step)

    async def subscribe(self, topics: Sequence[str], on_message: MessageHandler | None, step: str) -> None:
        """One SUBSCRIBE for every topic (QoS 1); a refusal in the SUBACK raises DeviceFailure
        `subscribe_refused` naming the topic and the reason code."""
        if on_message is not None:
            self._handlers.update(dict.fromkeys(topics, on_message))
        packet = mqtt5.SubscribePacket([mqtt5.Subscription(t, QOS1) for t in topics])
        try:
            suback = await self._wait(self._client.subscribe(packet), self.timeout_s, step)
        except BaseException as exc:
            raise classify(exc, step) from None
        for topic, code in zip(topics, suback.reason_codes, strict=False):
            if int(code) >= 0x80:
                raise DeviceFailure(
                    "subscribe_refused",
                    f"{step}: the endpoint refused the subscription {topic} "
                    f"(SUBACK {reason(int(code), mqtt5.SubackReasonCode)})",
                    step=step,
                )

    def _handler_for(self, topic: str) -> MessageHandler | None:
        """The handler of the filter TOPIC matches: the mqtt5 client hands every PUBLISH to one callback,
        unlike the 3.1.1 client, which calls the subscription's own."""
        handler = self._handlers.get(topic)
        if handler is None:
            handler = next((h for f, h in self._handlers.items() if _matches(f, topic)), None)
        return handler

    def unsubscribe(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._handlers.pop(topic, None)
        try:
            self._client.unsubscribe(mqtt5.UnsubscribePacket(list(topics)))
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass

    async def settle(self, future: Future[T] | asyncio.Future[T], timeout_s: float, step: str) -> T:
        """Wait for what an operation on this connection returned (a service client's future, a reply); a
        DISCONNECT ends the wait at once with `connection_closed`."""
        return await self._wait(future, timeout_s, step)


def _set_once(lost: asyncio.Future[None]) -> None:
    if not lost.done():
        lost.set_result(None)


def _matches(topic_filter: str, topic: str) -> bool:
    """MQTT's filter matching (`+` one level, `#` the rest); a `$` topic matches no leading wildcard."""
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    levels, wanted = topic.split("/"), topic_filter.split("/")
    for i, part in enumerate(wanted):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(levels) == len(wanted)
