"""One MQTT 3.1.1 connection (awscrt's `mqtt.Connection`) behind the simulator's version-neutral
`Connection` interface (device_sim/transport.py).

3.1.1 has no reason codes: a refusal is a closed connection or a SUBACK failure, classified by
`device_sim.crt.classify` from awscrt's error names.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from awscrt import io as crt_io
from awscrt import mqtt

from device_sim.crt import classify, wait

T = TypeVar("T")
MessageHandler = Callable[[str, bytes], None]


class Mqtt3Connection:
    version = "3.1.1"

    def __init__(
        self,
        client: mqtt.Client,
        *,
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
        # awscrt reported the connection lost at least once (it then reconnects on its own): identity.py must
        # not mistake what a lost connection did to a request for the endpoint's refusal.
        self.interrupted = False
        me = weakref.ref(self)  # awscrt keeps the callback; it must not keep this object alive

        def on_interrupted(connection: mqtt.Connection, error: Exception, **_: Any) -> None:
            if (this := me()) is not None:
                this.interrupted = True

        self._connection = mqtt.Connection(
            client=client,
            host_name=host,
            port=port,
            client_id=client_id,
            socket_options=socket_options,
            clean_session=True,
            keep_alive_secs=keep_alive_s,
            ping_timeout_ms=ping_timeout_ms,
            protocol_operation_timeout_ms=int(timeout_s * 1000),
            # A lost connection is a failed (and maybe retried) step, not something to resume silently.
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=2,
            on_connection_interrupted=on_interrupted,
        )

    @property
    def protocol_client(self) -> mqtt.Connection:
        """What the SDK's service clients (`IotIdentityClientV2`) are built on."""
        return self._connection

    async def connect(self, step: str) -> None:
        try:
            await wait(self._connection.connect(), self.timeout_s)
        except BaseException as exc:
            # Stop awscrt's own reconnect loop before giving up on this connection.
            self._quietly_disconnect()
            raise classify(exc, step) from None

    async def disconnect(self) -> None:
        try:
            await wait(self._connection.disconnect(), self.timeout_s)
        except Exception:  # noqa: BLE001 - a connection that is already gone is what we wanted
            pass

    async def publish(self, topic: str, payload: bytes, step: str) -> None:
        """Publish QoS 1 and wait for the PUBACK."""
        future, _packet_id = self._connection.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        try:
            await wait(future, self.timeout_s)
        except BaseException as exc:
            raise classify(exc, step) from None

    async def subscribe(self, topics: Sequence[str], on_message: MessageHandler | None, step: str) -> None:
        """Subscribe to every topic (QoS 1) at once and wait for each SUBACK; a refusal raises
        DeviceFailure `subscribe_refused`."""
        callback = None
        if on_message is not None:

            def callback(topic: str, payload: bytes, **_: Any) -> None:
                on_message(topic, payload)

        subacks = [self._connection.subscribe(t, mqtt.QoS.AT_LEAST_ONCE, callback)[0] for t in topics]
        try:
            for suback in subacks:
                await wait(suback, self.timeout_s)  # a refused subscription raises mqtt.SubscribeError
        except BaseException as exc:
            raise classify(exc, step) from None

    def unsubscribe(self, topics: Sequence[str]) -> None:
        for topic in topics:
            try:
                self._connection.unsubscribe(topic)
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass

    async def settle(self, future: Future[T] | asyncio.Future[T], timeout_s: float, step: str) -> T:
        """Wait for what an operation on this connection returned (a service client's future, a reply)."""
        return await wait(future, timeout_s)

    def _quietly_disconnect(self) -> None:
        try:
            self._connection.disconnect()
        except Exception:  # noqa: BLE001
            pass
