"""awscrt seen from asyncio: `wait` for its futures, `classify` for what it raises, in either MQTT version.

A failure becomes a `DeviceFailure` with a report kind and whether a retry may help. The kinds are the
same whichever MQTT version the device speaks, so that reports of a 3.1.1 run and an MQTT 5 run count the
same event under the same name; `device_sim.connection5` turns MQTT 5's reason codes into these kinds.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import TypeVar

from awscrt import exceptions as crt_exceptions
from awscrt import mqtt

from device_sim.errors import DeviceFailure

T = TypeVar("T")

# awscrt error names -> (report kind, retryable). Hang-ups count as retryable: AWS IoT throttles CONNECT by
# closing the connection, and an overloaded broker does the same.
CRT_ERRORS: dict[str, tuple[str, bool]] = {
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
    # MQTT 5: a refusing CONNACK, and operations failed by a DISCONNECT. connection5 names the reason code
    # when it has the packet; these are for the rare failure that reaches us without it.
    "AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED": ("connect_refused", True),
    "AWS_ERROR_MQTT5_DISCONNECT_RECEIVED": ("connection_closed", True),
    "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY": ("connection_closed", True),
    "AWS_ERROR_MQTT5_USER_REQUESTED_STOP": ("connection_closed", True),
    "AWS_ERROR_MQTT_REQUEST_RESPONSE_PUBLISH_FAILURE": ("connection_closed", True),
}


def classify(exc: BaseException, step: str) -> DeviceFailure:
    """Turn whatever awscrt or asyncio raised during `step` into a DeviceFailure with a report kind."""
    if isinstance(exc, DeviceFailure):
        return exc
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return DeviceFailure("timeout", f"{step}: no answer in time", retryable=True, step=step)
    if isinstance(exc, crt_exceptions.AwsCrtError):
        kind, retryable = CRT_ERRORS.get(exc.name, (exc.name.lower().removeprefix("aws_"), False))
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


class ConnectionLost(Exception):
    """The connection a `wait` depended on went away first (connection5 says how)."""


async def wait(
    future: Future[T] | asyncio.Future[T], timeout_s: float, lost: asyncio.Future[None] | None = None
) -> T:
    """Await an awscrt (concurrent.futures) future, or an asyncio one, with a time-out; when LOST completes
    first, raise ConnectionLost at once instead of waiting for awscrt to give up on the operation.

    A time-out stops the waiting, not awscrt's operation: its future is never cancelled. awscrt completes
    it later from its own thread (a refused TLS handshake takes ~17 s to report), and `set_exception`
    on a cancelled future raises InvalidStateError there, printed as an ignored exception long after the
    device has failed. `asyncio.wrap_future` would cancel it; this relay only drops a late answer.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def settle(done: Future[T] | asyncio.Future[T]) -> None:
        if waiter.done():  # timed out (cancelled) or lost already: nobody wants the answer
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

    def cut(_: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ConnectionLost())

    if isinstance(future, asyncio.Future):
        future.add_done_callback(settle)
    else:
        future.add_done_callback(relay)
    if lost is not None:
        lost.add_done_callback(cut)
    try:
        return await asyncio.wait_for(waiter, timeout_s)
    finally:
        if lost is not None:
            lost.remove_done_callback(cut)
