"""MQTT 3.1.1 over mTLS with awscrt: one event-loop group, host resolver and bootstrap for every device.

All claim connections of a run share one TLS context and one `mqtt.Client` (they all present the same claim
certificate); a device's own connection needs its own TLS context, built from the shared CA bytes.
awscrt's futures are awaited from asyncio, so one thread drives any number of devices.

Every context trusts the target's CA file and nothing else (`override_default_trust_store`). awscrt
0.36's s2n backend still builds each context with `s2n_config_new`, which first parses the system CA bundle
(about 10 ms of CPU for Debian's 140 certificates) and then wipes it for the override: two thirds of a
simulated device's CPU. `Transport` therefore points `SSL_CERT_FILE`, which that system load reads, at the
CA file it trusts anyway, so the throw-away load parses one certificate. What is trusted does not change.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import Awaitable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from awscrt import exceptions as crt_exceptions
from awscrt import io as crt_io
from awscrt import mqtt

from device_sim.errors import DeviceFailure, UserError
from device_sim.target import Target

T = TypeVar("T")
KEEP_ALIVE_S = 60
PING_TIMEOUT_MS = 3000

# awscrt error names -> (report kind, retryable). Hang-ups count as retryable: AWS IoT throttles CONNECT by
# closing the connection, and an overloaded broker does the same.
_CONNECT_ERRORS: dict[str, tuple[str, bool]] = {
    "AWS_IO_SOCKET_CONNECTION_REFUSED": ("connection_refused", False),
    "AWS_IO_SOCKET_NO_ROUTE_TO_HOST": ("unreachable", False),
    "AWS_IO_SOCKET_NETWORK_DOWN": ("unreachable", False),
    "AWS_IO_DNS_INVALID_NAME": ("dns", False),
    "AWS_IO_DNS_QUERY_FAILED": ("dns", False),
    "AWS_IO_SOCKET_TIMEOUT": ("connect_timeout", True),
    "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE": ("tls_negotiation", False),
    "AWS_IO_TLS_ERROR_READ_FAILURE": ("connection_closed", True),
    "AWS_IO_SOCKET_CLOSED": ("connection_closed", True),
    "AWS_ERROR_MQTT_UNEXPECTED_HANGUP": ("connection_closed", True),
    "AWS_IO_BROKEN_PIPE": ("connection_closed", True),
    "AWS_ERROR_MQTT_TIMEOUT": ("timeout", True),
    "AWS_ERROR_MQTT_PROTOCOL_ERROR": ("connect_refused", True),  # what awscrt makes of a refusing CONNACK
    # The connection was lost or taken over mid-request (clean session): the request never got its answer.
    "AWS_ERROR_MQTT_CANCELLED_FOR_CLEAN_SESSION": ("connection_closed", True),
    "AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE": ("connection_closed", True),
}


def classify(exc: BaseException, step: str) -> DeviceFailure:
    """Turn whatever awscrt or asyncio raised during `step` into a DeviceFailure with a report kind."""
    if isinstance(exc, DeviceFailure):
        return exc
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return DeviceFailure("timeout", f"{step}: no answer in time", retryable=True, step=step)
    if isinstance(exc, crt_exceptions.AwsCrtError):
        kind, retryable = _CONNECT_ERRORS.get(exc.name, (exc.name.lower().removeprefix("aws_"), False))
        if "TIMEOUT" in exc.name:
            kind, retryable = "timeout", True
        return DeviceFailure(kind, f"{step}: {exc.name}: {exc.message}", retryable=retryable, step=step)
    if isinstance(exc, mqtt.SubscribeError):
        return DeviceFailure(
            "subscribe_refused", f"{step}: the endpoint refused the subscription {exc}", step=step
        )
    if exc.args and isinstance(exc.args[0], mqtt.ConnectReturnCode):
        code = exc.args[0]
        retryable = code == mqtt.ConnectReturnCode.SERVER_UNAVAILABLE
        return DeviceFailure(
            f"connack_{code.name.lower()}", f"{step}: CONNACK {code.name}", retryable=retryable, step=step
        )
    return DeviceFailure("error", f"{step}: {type(exc).__name__}: {exc}", step=step)


async def wait(future: Future[T], timeout_s: float) -> T:
    """Await an awscrt (concurrent.futures) future from asyncio, with a time-out.

    A time-out stops the waiting, not awscrt's operation: its future is never cancelled. awscrt completes
    it later from its own thread (a refused TLS handshake takes ~17 s to report), and `set_exception`
    on a cancelled future raises InvalidStateError there, printed as an ignored exception long after the
    device has failed. `asyncio.wrap_future` would cancel it; this relay only drops a late answer.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def settle(done: Future[T]) -> None:
        if waiter.done():  # timed out (cancelled) already: nobody wants the answer
            return
        if done.cancelled():
            waiter.cancel()
        elif (exc := done.exception()) is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(done.result())

    def relay(done: Future[T]) -> None:
        try:
            loop.call_soon_threadsafe(settle, done)
        except RuntimeError:  # the event loop is closed: the run is over
            pass

    future.add_done_callback(relay)
    return await asyncio.wait_for(waiter, timeout_s)


class Transport:
    """The shared CRT resources for a run (one device or a fleet), bound to one target."""

    def __init__(self, target: Target, *, threads: int = 0, timeout_s: float = 10.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.ca = target.read_ca()
        _load_only_the_ca_as_system_trust(target.ca_file)
        claim_cert, claim_key = target.read_claim()
        # Connections awscrt reported lost at least once (it then reconnects on its own): identity.py must not
        # mistake what a lost connection did to a request for the endpoint's refusal.
        self._interrupted: weakref.WeakSet[mqtt.Connection] = weakref.WeakSet()
        self.event_loop_group = crt_io.EventLoopGroup(threads)
        self.host_resolver = crt_io.DefaultHostResolver(self.event_loop_group)
        self.bootstrap = crt_io.ClientBootstrap(self.event_loop_group, self.host_resolver)
        try:
            options = crt_io.TlsContextOptions.create_client_with_mtls(claim_cert, claim_key)
            options.override_default_trust_store(self.ca)
            self.claim_client = mqtt.Client(self.bootstrap, crt_io.ClientTlsContext(options))
        except crt_exceptions.AwsCrtError as exc:
            raise UserError(
                f"cannot use the claim certificate {target.claim_cert_file} with its key "
                f"{target.claim_key_file} and the CA {target.ca_file}: {exc.name}"
            ) from None

    def socket_options(self) -> crt_io.SocketOptions:
        options = crt_io.SocketOptions()
        options.connect_timeout_ms = int(min(self.timeout_s, 30) * 1000)
        return options

    def claim_connection(self, client_id: str, **callbacks: Any) -> mqtt.Connection:
        return self._connection(self.claim_client, client_id, **callbacks)

    def device_connection(
        self, tls_options: crt_io.TlsContextOptions, client_id: str, **callbacks: Any
    ) -> mqtt.Connection:
        tls_options.override_default_trust_store(self.ca)
        client = mqtt.Client(self.bootstrap, crt_io.ClientTlsContext(tls_options))
        return self._connection(client, client_id, **callbacks)

    def was_interrupted(self, connection: mqtt.Connection) -> bool:
        return connection in self._interrupted

    def _connection(self, client: mqtt.Client, client_id: str, **callbacks: Any) -> mqtt.Connection:
        given = callbacks.pop("on_connection_interrupted", None)

        def interrupted(connection: mqtt.Connection, error: Exception, **kwargs: Any) -> None:
            self._interrupted.add(connection)
            if given is not None:
                given(connection=connection, error=error, **kwargs)

        return mqtt.Connection(
            client=client,
            host_name=self.target.host,
            port=self.target.port,
            client_id=client_id,
            socket_options=self.socket_options(),
            clean_session=True,
            keep_alive_secs=KEEP_ALIVE_S,
            ping_timeout_ms=PING_TIMEOUT_MS,
            protocol_operation_timeout_ms=int(self.timeout_s * 1000),
            # A lost connection is a failed (and maybe retried) step, not something to resume silently.
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=2,
            on_connection_interrupted=interrupted,
            **callbacks,
        )

    async def connect(self, connection: mqtt.Connection, step: str) -> None:
        try:
            await wait(connection.connect(), self.timeout_s)
        except BaseException as exc:
            # Stop awscrt's own reconnect loop before giving up on this connection.
            _quietly_disconnect(connection)
            raise classify(exc, step) from None

    async def disconnect(self, connection: mqtt.Connection) -> None:
        try:
            await wait(connection.disconnect(), self.timeout_s)
        except Exception:  # noqa: BLE001 - a connection that is already gone is what we wanted
            pass

    async def publish(self, connection: mqtt.Connection, topic: str, payload: bytes, step: str) -> None:
        """Publish QoS 1 and wait for the PUBACK."""
        future, _packet_id = connection.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        try:
            await wait(future, self.timeout_s)
        except BaseException as exc:
            raise classify(exc, step) from None


def _load_only_the_ca_as_system_trust(ca_file: Path) -> None:
    """Point the system trust-store load that s2n_config_new makes for every TLS context at CA_FILE.

    Set before any context exists and before the event loop's threads could read the environment. Every
    context here overrides its trust store with the same CA, so the system store is discarded either way;
    this only makes the discarded load cheap. Python's `ssl` in preflight loads the CA file explicitly.
    """
    path = str(ca_file.resolve())
    if os.environ.get("SSL_CERT_FILE") != path:
        os.environ["SSL_CERT_FILE"] = path


def _quietly_disconnect(connection: mqtt.Connection) -> None:
    try:
        connection.disconnect()
    except Exception:  # noqa: BLE001
        pass


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await awaitable
    return result, (time.perf_counter() - started) * 1000
