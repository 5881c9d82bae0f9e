"""The broker alone in this process, and raw MQTT clients of both versions over real TLS on 127.0.0.1.

The gatekeeper is a fake with AWS IoT's shape: client ids starting with `ok` may connect (`nope...` is
refused by "policy", `gone...` as an unknown certificate); topics and filters under `allowed/` and the
provisioning roots may be used, and tests may narrow that set between connections.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.mqtt import codec, codec5
from emulator.mqtt import properties as props
from emulator.mqtt.broker import Admission, Broker, Refused, Session, TopicHandler
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import Publish
from emulator.mqtt.wire import Reader, packet, string
from emulator.provisioning.ca import CertificateAuthority, write_private

MQTT5, MQTT311 = 5, 4


@dataclass
class FakeGatekeeper:
    allowed: tuple[str, ...] = ("allowed/", "$share/", "$aws/certificates/")

    async def admit(self, certificate_id: str, client_id: str) -> Admission:
        if client_id.startswith("gone"):
            raise Refused("certificate is not registered", hang_up=True)
        if not client_id.startswith("ok") and len(client_id) != 36:  # 36: a server-assigned id
            raise Refused("iot:Connect denied")
        return Admission(certificate_id, None, "test")

    def _allows(self, name: str) -> bool:
        return name.startswith(self.allowed)

    def may_publish(self, session: Session, topic: str) -> bool:
        return self._allows(topic)

    def may_subscribe(self, session: Session, topic_filter: str) -> bool:
        return self._allows(topic_filter)

    def may_receive(self, session: Session, topic: str) -> bool:
        return self._allows(topic)


class EchoHandler:
    """Owns `$aws/certificates/...`: answers the publisher alone on `<topic>/accepted`."""

    def claims(self, topic: str) -> bool:
        return topic.startswith("$aws/certificates/")

    def handle(self, session: Session, message: Publish) -> None:
        session.deliver(message.topic + "/accepted", message.payload)


# ------------------------------------------------------------------------------------ client packets
def connect_packet(
    client_id: str,
    version: int = MQTT5,
    *,
    clean: bool = True,
    keep_alive: int = 30,
    properties: Mapping[str, Any] | None = None,
    raw_properties: bytes | None = None,
) -> bytes:
    body = string("MQTT") + bytes([version, 0x02 if clean else 0x00]) + keep_alive.to_bytes(2, "big")
    if version == MQTT5:
        body += (
            raw_properties if raw_properties is not None else props.encode(properties or {}, props.CONNECT)
        )
    return packet(codec.CONNECT << 4, body + string(client_id))


def publish_packet(
    topic: str,
    payload: bytes,
    version: int = MQTT5,
    *,
    qos: int = 0,
    packet_id: int | None = None,
    properties: Mapping[str, Any] | None = None,
    raw_properties: bytes | None = None,
    retain: bool = False,
) -> bytes:
    if version == MQTT311:
        return codec.publish(topic, payload, qos, packet_id, retain)
    if raw_properties is None:
        return codec5.publish(topic, payload, qos, packet_id, retain, False, properties)
    body = (
        string(topic)
        + (packet_id.to_bytes(2, "big") if qos and packet_id else b"")
        + raw_properties
        + payload
    )
    return packet((codec.PUBLISH << 4) | (qos << 1) | int(retain), body)


def subscribe_packet(
    packet_id: int,
    *filters: str | tuple[str, int],
    version: int = MQTT5,
    properties: Mapping[str, Any] | None = None,
) -> bytes:
    """Each filter with its options byte (default 0x01: QoS 1)."""
    body = packet_id.to_bytes(2, "big")
    if version == MQTT5:
        body += props.encode(properties or {}, props.SUBSCRIBE)
    for item in filters:
        topic_filter, options = (item, 0x01) if isinstance(item, str) else item
        body += string(topic_filter) + bytes([options])
    return packet((codec.SUBSCRIBE << 4) | 0x02, body)


def puback_packet(packet_id: int) -> bytes:
    return bytes([codec.PUBACK << 4, 2]) + packet_id.to_bytes(2, "big")


def disconnect_packet(version: int = MQTT5, properties: Mapping[str, Any] | None = None) -> bytes:
    if version == MQTT311 or not properties:
        return bytes([codec.DISCONNECT << 4, 0])
    return packet(codec.DISCONNECT << 4, b"\x00" + props.encode(properties, props.DISCONNECT))


# ------------------------------------------------------------------------------------ the raw client
@dataclass
class Connack:
    session_present: bool
    reason_code: int
    properties: Mapping[str, Any] = field(default_factory=dict)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int) -> None:
        self.reader, self.writer, self.version = reader, writer, version

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def packet(self, timeout: float = 3) -> tuple[int, int, bytes]:
        return await asyncio.wait_for(codec.read_packet(self.reader, 1 << 20), timeout)

    async def expect(self, kind: int, timeout: float = 3) -> tuple[int, bytes]:
        got, flags, body = await self.packet(timeout)
        assert got == kind, f"expected packet type {kind}, got {got} ({body!r})"
        return flags, body

    async def connack(self) -> Connack:
        _, body = await self.expect(codec.CONNACK)
        if self.version == MQTT311:
            return Connack(bool(body[0] & 1), body[1])
        r = Reader(body, 2)
        return Connack(bool(body[0] & 1), body[1], dict(props.decode(r, props.CONNACK)))

    async def message(self, timeout: float = 3) -> Publish:
        flags, body = await self.expect(codec.PUBLISH, timeout)
        wire = codec5 if self.version == MQTT5 else codec
        return wire.parse_publish(flags, body)

    async def suback(self) -> list[int]:
        _, body = await self.expect(codec.SUBACK)
        return list(body[3:] if self.version == MQTT5 else body[2:])

    async def disconnected_with(self, timeout: float = 3) -> int | None:
        """The reason code of the DISCONNECT the server sends before closing (None: closed without one)."""
        try:
            kind, _, body = await self.packet(timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return None
        assert kind == codec.DISCONNECT, f"expected DISCONNECT, got packet type {kind}"
        assert await self.closed(), "the server sent DISCONNECT but kept the connection"
        return body[0] if body else 0

    async def closed(self, timeout: float = 3) -> bool:
        """True once the server has closed the connection (whatever it sent before)."""
        try:
            await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, ssl.SSLError):
            pass
        return True

    async def silent(self, timeout: float = 0.3) -> bool:
        try:
            await self.packet(timeout)
        except TimeoutError:
            return True
        return False


@dataclass
class Env:
    broker: Broker
    gatekeeper: FakeGatekeeper
    contexts: dict[str, ssl.SSLContext]
    certificate_ids: dict[str, str]

    async def open(
        self, client_id: str | None = None, version: int = MQTT5, *, cert: str = "a", port: int | None = None,
        alpn: list[str] | None = None, **connect: Any,
    ) -> Client:  # fmt: skip
        context = self.contexts[cert]
        if alpn is not None:
            context = _client_context(self._paths[cert], self._ca, alpn)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port or self.broker.port, ssl=context, server_hostname="127.0.0.1"
        )
        client = Client(reader, writer, version)
        if client_id is not None:
            await client.send(connect_packet(client_id, version, **connect))
        return client

    async def connected(self, client_id: str, version: int = MQTT5, **connect: Any) -> tuple[Client, Connack]:
        client = await self.open(client_id, version, **connect)
        connack = await client.connack()
        assert connack.reason_code == 0, connack
        return client, connack

    _paths: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    _ca: str = ""
    authority: CertificateAuthority | None = None  # signs the client certificates the broker trusts


def _client_context(paths: tuple[Path, Path], ca_pem: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.load_cert_chain(*paths)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


@asynccontextmanager
async def broker_env(
    tmp_path: Path,
    limits: Limits | None = None,
    extra_ports: tuple[int, ...] = (),
    handlers: Sequence[TopicHandler] | None = None,
) -> AsyncIterator[Env]:
    """A broker on an ephemeral port with the emulator's own TLS context (ALPN included), two client
    certificates ("a", "b"); `handlers` replace the EchoHandler."""
    from emulator.serving import server_ssl_context

    authority = CertificateAuthority.create()
    server = authority.issue_server_credential()
    (tmp_path / "server.pem").write_text(server.certificate_pem)
    write_private(tmp_path / "server.key", server.private_key_pem.encode())
    paths, ids = {}, {}
    for name in ("a", "b"):
        credential = authority.issue_client_credential(f"client {name}")
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        cert.write_text(credential.certificate_pem)
        write_private(key, credential.private_key_pem.encode())
        paths[name], ids[name] = (cert, key), credential.certificate_id
    gatekeeper = FakeGatekeeper()
    broker = Broker(
        ssl_context=server_ssl_context(tmp_path, authority),
        gatekeeper=gatekeeper,
        handlers=[EchoHandler()] if handlers is None else list(handlers),
        limits=limits or Limits(),
        extra_ports=extra_ports,
    )
    await broker.start()
    contexts = {name: _client_context(p, authority.certificate_pem) for name, p in paths.items()}
    env = Env(broker, gatekeeper, contexts, ids, paths, authority.certificate_pem, authority)
    try:
        yield env
    finally:
        await broker.stop()
