"""MQTT 3.1.1 or MQTT 5 over mTLS with awscrt: one event-loop group, host resolver and bootstrap for every
device, and connections that look the same whichever version they speak.

The MQTT version is the transport's, chosen once per run (`--mqtt`); the flows (device_sim/device.py and
anything else that drives devices) get a `Connection` from it and never ask which version it speaks. The
versions live in `device_sim.connection3` (awscrt's `mqtt.Connection`) and `device_sim.connection5`
(awscrt's `mqtt5.Client`), which also turns MQTT 5's reason codes into the report's kinds.

All claim connections of a run share one TLS context (they all present the same claim certificate; over
3.1.1 they also share one `mqtt.Client`); a device's own connection needs its own TLS context, built from
the shared CA bytes. awscrt's futures are awaited from asyncio, so one thread drives any number of devices.

Every context trusts the target's CA file and nothing else (`override_default_trust_store`). awscrt
0.36's s2n backend still builds each context with `s2n_config_new`, which first parses the system CA bundle
(about 10 ms of CPU for Debian's 140 certificates) and then wipes it for the override: two thirds of a
simulated device's CPU. `Transport` therefore points `SSL_CERT_FILE`, which that system load reads, at the
CA file it trusts anyway, so the throw-away load parses one certificate. What is trusted does not change.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

from awscrt import exceptions as crt_exceptions
from awscrt import io as crt_io
from awscrt import mqtt

from device_sim.connection3 import Mqtt3Connection
from device_sim.connection5 import Mqtt5Connection
from device_sim.crt import classify, wait
from device_sim.errors import UserError
from device_sim.mqtt_versions import DEFAULT_MQTT, MQTT_VERSIONS, MqttVersion
from device_sim.target import Target

__all__ = ["DEFAULT_MQTT", "MQTT_VERSIONS", "Connection", "MqttVersion", "Transport", "classify", "wait"]

T = TypeVar("T")
KEEP_ALIVE_S = 60
PING_TIMEOUT_MS = 3000


class Connection(Protocol):
    """One device's MQTT connection, in either version (connection3, connection5)."""

    version: str
    client_id: str
    interrupted: bool  # it was up and went away: a failed request may be the drop's doing, not a refusal

    @property
    def protocol_client(self) -> Any:
        """What the SDK's service clients take: `mqtt.Connection` (3.1.1) or `mqtt5.Client` (5)."""

    async def connect(self, step: str) -> None: ...

    async def disconnect(self) -> None: ...

    async def publish(self, topic: str, payload: bytes, step: str) -> None:
        """QoS 1; returns once the endpoint acknowledged it."""

    async def subscribe(
        self, topics: Sequence[str], on_message: Callable[[str, bytes], None] | None, step: str
    ) -> None:
        """QoS 1, all at once; ON_MESSAGE runs on awscrt's thread. A refusal raises `subscribe_refused`."""

    def unsubscribe(self, topics: Sequence[str]) -> None: ...

    async def settle(self, future: Future[T] | asyncio.Future[T], timeout_s: float, step: str) -> T:
        """Wait for an operation over this connection (a service client's future, a reply)."""


class Transport:
    """The shared CRT resources of a run (one device or a fleet), bound to one target and one MQTT version."""

    def __init__(
        self,
        target: Target,
        *,
        mqtt_version: MqttVersion | str = DEFAULT_MQTT,
        threads: int = 0,
        timeout_s: float = 10.0,
    ) -> None:
        if mqtt_version not in MQTT_VERSIONS:
            raise ValueError(f"MQTT {mqtt_version}: not one of {', '.join(MQTT_VERSIONS)}")
        self.target = target
        self.mqtt_version: MqttVersion = "5" if mqtt_version == "5" else "3.1.1"
        self.timeout_s = timeout_s
        self.ca = target.read_ca()
        _load_only_the_ca_as_system_trust(target.ca_file)
        claim_cert, claim_key = target.read_claim()
        self.event_loop_group = crt_io.EventLoopGroup(threads)
        self.host_resolver = crt_io.DefaultHostResolver(self.event_loop_group)
        self.bootstrap = crt_io.ClientBootstrap(self.event_loop_group, self.host_resolver)
        try:
            options = crt_io.TlsContextOptions.create_client_with_mtls(claim_cert, claim_key)
            options.override_default_trust_store(self.ca)
            self.claim_tls = crt_io.ClientTlsContext(options)
        except crt_exceptions.AwsCrtError as exc:
            raise UserError(
                f"cannot use the claim certificate {target.claim_cert_file} with its key "
                f"{target.claim_key_file} and the CA {target.ca_file}: {exc.name}"
            ) from None
        self._claim_client = mqtt.Client(self.bootstrap, self.claim_tls) if mqtt_version == "3.1.1" else None

    def socket_options(self) -> crt_io.SocketOptions:
        options = crt_io.SocketOptions()
        options.connect_timeout_ms = int(min(self.timeout_s, 30) * 1000)
        return options

    def claim_connection(self, client_id: str) -> Connection:
        return self._connection(self.claim_tls, client_id, self._claim_client)

    def device_connection(self, tls_options: crt_io.TlsContextOptions, client_id: str) -> Connection:
        tls_options.override_default_trust_store(self.ca)
        return self._connection(crt_io.ClientTlsContext(tls_options), client_id)

    def _connection(
        self, tls: crt_io.ClientTlsContext, client_id: str, client: mqtt.Client | None = None
    ) -> Connection:
        common: dict[str, Any] = dict(
            host=self.target.host,
            port=self.target.port,
            client_id=client_id,
            socket_options=self.socket_options(),
            keep_alive_s=KEEP_ALIVE_S,
            ping_timeout_ms=PING_TIMEOUT_MS,
            timeout_s=self.timeout_s,
        )
        if self.mqtt_version == "5":
            return Mqtt5Connection(bootstrap=self.bootstrap, tls=tls, **common)
        return Mqtt3Connection(client or mqtt.Client(self.bootstrap, tls), **common)

    def was_interrupted(self, connection: Connection) -> bool:
        return connection.interrupted

    async def connect(self, connection: Connection, step: str) -> None:
        await connection.connect(step)

    async def disconnect(self, connection: Connection) -> None:
        await connection.disconnect()

    async def publish(self, connection: Connection, topic: str, payload: bytes, step: str) -> None:
        """Publish QoS 1 and wait for the endpoint's acknowledgement."""
        await connection.publish(topic, payload, step)


def _load_only_the_ca_as_system_trust(ca_file: Path) -> None:
    """Point the system trust-store load that s2n_config_new makes for every TLS context at CA_FILE.

    Set before any context exists and before the event loop's threads could read the environment. Every
    context here overrides its trust store with the same CA, so the system store is discarded either way;
    this only makes the discarded load cheap. Python's `ssl` in preflight loads the CA file explicitly.
    """
    path = str(ca_file.resolve())
    if os.environ.get("SSL_CERT_FILE") != path:
        os.environ["SSL_CERT_FILE"] = path
