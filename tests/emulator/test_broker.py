"""The MQTT broker alone (fake gatekeeper, raw MQTT over real TLS on 127.0.0.1): AWS's refusal behaviour."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator.mqtt import codec
from emulator.mqtt.broker import Admission, Broker, Refused, Session
from emulator.mqtt.limits import Limits
from emulator.provisioning.ca import CertificateAuthority, IssuedCredential, write_private


class FakeGatekeeper:
    """Allows client ids starting with `ok`; publish/subscribe/receive only under `allowed/`."""

    async def admit(self, certificate_id: str, client_id: str) -> Admission:
        if not client_id.startswith("ok"):
            raise Refused("not allowed")
        return Admission(certificate_id, None, "test")

    def may_publish(self, session: Session, topic: str) -> bool:
        return topic.startswith(("allowed/", "$aws/certificates/"))

    def may_subscribe(self, session: Session, topic_filter: str) -> bool:
        return topic_filter.startswith(("allowed/", "$aws/certificates/"))

    def may_receive(self, session: Session, topic: str) -> bool:
        return topic.startswith(("allowed/", "$aws/certificates/"))


class EchoHandler:
    """Owns `$aws/certificates/...`: answers the publisher alone on `<topic>/accepted`."""

    def claims(self, topic: str) -> bool:
        return topic.startswith("$aws/certificates/")

    def handle(self, session: Session, message: codec.Publish) -> None:
        session.deliver(message.topic + "/accepted", message.payload)


def credential_files(tmp: Path, name: str, credential: IssuedCredential) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_text(credential.certificate_pem)
    write_private(key, credential.private_key_pem.encode())
    return cert, key


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def packet(self, timeout: float = 3) -> tuple[int, int, bytes]:
        return await asyncio.wait_for(codec.read_packet(self.reader, 1 << 20), timeout)

    async def rest(self, timeout: float = 3) -> bytes:
        """Everything the server sends until it closes the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, ssl.SSLError):
            return b""

    async def closed(self, timeout: float = 3) -> bool:
        """True once the server has closed the connection (whatever it sent before)."""
        try:
            await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, ssl.SSLError):
            pass
        return True


def connect_packet(client_id: str, level: int = 4, keep_alive: int = 30) -> bytes:
    body = (
        codec._string("MQTT")
        + bytes([level, 0x02])
        + keep_alive.to_bytes(2, "big")
        + codec._string(client_id)
    )
    return codec._packet(codec.CONNECT << 4, body)


def subscribe_packet(packet_id: int, *filters: str) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(codec._string(f) + b"\x01" for f in filters)
    return codec._packet((codec.SUBSCRIBE << 4) | 0x02, body)


async def broker_env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    authority = CertificateAuthority.create()
    server_cert, server_key = credential_files(tmp_path, "server", authority.issue_server_credential())
    client_cert, client_key = credential_files(tmp_path, "client", authority.issue_client_credential("c"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(server_cert, server_key)
    server_ctx.load_verify_locations(cadata=authority.certificate_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    # AWS holds keep-alive to 30 s at least (test_limits.py): lowered so that the timeout takes a second.
    broker = Broker(
        ssl_context=server_ctx,
        gatekeeper=FakeGatekeeper(),  # type: ignore[arg-type]
        handlers=[EchoHandler()],
        limits=Limits(keep_alive_min_s=1),
    )
    await broker.start()
    client_ctx = ssl.create_default_context(cadata=authority.certificate_pem)
    client_ctx.load_cert_chain(client_cert, client_key)

    async def open_client(client_id: str | None = None, **connect: Any) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", broker.port, ssl=client_ctx, server_hostname="127.0.0.1"
        )
        client = Client(reader, writer)
        if client_id is not None:
            await client.send(connect_packet(client_id, **connect))
        return client

    yield {"broker": broker, "open": open_client}
    await broker.stop()


async def _connected(env: dict[str, Any], client_id: str) -> Client:
    client = await env["open"](client_id)
    assert await client.packet() == (codec.CONNACK, 0, b"\x00\x00")
    return client


def test_broker_behaviour(tmp_path: Path) -> None:
    """One broker, every refusal AWS IoT makes (kept in one event loop for speed)."""

    async def scenario() -> None:
        gen = broker_env(tmp_path)
        env = await gen.__anext__()
        try:
            # A refused CONNECT is closed without CONNACK.
            refused = await env["open"]("nope")
            assert await refused.rest() == b""
            # MQTT 3.1 (level 3) clients get CONNACK 1.
            old = await env["open"]("ok-old", level=3)
            assert await old.packet() == (codec.CONNACK, 0, b"\x00\x01")

            asker = await _connected(env, "ok-asker")
            bystander = await _connected(env, "ok-bystander")
            # SUBSCRIBE: 0x80 for the filter the policy refuses, the others granted; still connected.
            await asker.send(subscribe_packet(1, "$aws/certificates/x/accepted", "#", "allowed/+"))
            assert await asker.packet() == (codec.SUBACK, 0, b"\x00\x01\x01\x80\x01")
            await bystander.send(subscribe_packet(2, "$aws/certificates/x/accepted", "allowed/#"))
            assert (await bystander.packet())[0] == codec.SUBACK
            # A request's reply reaches the requester alone.
            await asker.send(codec.publish("$aws/certificates/x", b"req", qos=1, packet_id=9))
            assert await asker.packet() == (codec.PUBACK, 0, b"\x00\x09")
            kind, flags, body = await asker.packet()
            assert codec.parse_publish(flags, body).topic == "$aws/certificates/x/accepted"
            with pytest.raises(TimeoutError):
                await bystander.packet(timeout=0.3)
            # Ordinary topics are routed to every subscriber allowed to receive them.
            await asker.send(codec.publish("allowed/a", b"hello"))
            kind, flags, body = await bystander.packet()
            assert codec.parse_publish(flags, body).payload == b"hello"
            # An unauthorised PUBLISH closes the connection (no PUBACK).
            await asker.send(codec.publish("forbidden/a", b"x", qos=1, packet_id=3))
            assert codec.puback(3) not in await asker.rest()
            # A second connection with a client id in use disconnects the first.
            await _connected(env, "ok-bystander")
            assert await bystander.closed()
            # Keep-alive: 1.5 x 1 s of silence ends the connection.
            sleepy = await env["open"]("ok-sleepy", keep_alive=1)
            assert (await sleepy.packet())[0] == codec.CONNACK
            assert await sleepy.closed(timeout=3)
            # Garbage instead of CONNECT is a protocol error: closed.
            garbage = await env["open"]()
            await garbage.send(b"\x30\x00")
            assert await garbage.closed()
        finally:
            await gen.aclose()

    asyncio.run(scenario())
