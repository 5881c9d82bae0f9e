"""What a connection may hold at each stage, in the broker alone (real sockets and TLS on 127.0.0.1): idle
sockets, TLS handshakes that stall, half-sent packets, provisioning bursts and clients that never read.
The real emulator under the same attacks, at scale and measured in RSS: tests/load/test_abuse.py."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from emulator.mqtt import codec, reasons
from emulator.mqtt.broker import Session
from emulator.mqtt.limits import Limits
from emulator.mqtt.listener import _TlsProtocol, shared_buffer_supported
from emulator.mqtt.packets import Publish
from tests.emulator.mqtt_harness import (
    MQTT5,
    MQTT311,
    Client,
    Env,
    broker_env,
    connect_packet,
    publish_packet,
    subscribe_packet,
)


def run(
    tmp_path: Path, scenario: Callable[[Env], Awaitable[None]], limits: Limits, **options: object
) -> None:
    async def main() -> None:
        async with broker_env(tmp_path, limits=limits, **options) as env:  # type: ignore[arg-type]
            await scenario(env)

    asyncio.run(main())


async def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed `sock` (it reads EOF or a reset), False if it is still open."""
    loop = asyncio.get_running_loop()
    try:
        data = await asyncio.wait_for(loop.sock_recv(sock, 1), timeout)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


def raw_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def test_the_shared_tls_buffer_is_in_use() -> None:
    """If a Python upgrade renamed what `_TlsProtocol` relies on, this fails (the listener would fall back
    to asyncio's own 256 KiB per connection, correct but large)."""
    assert shared_buffer_supported()
    assert _TlsProtocol.max_size == 16 * 1024


def test_idle_sockets_are_capped_and_timed_and_cost_no_tls(tmp_path: Path) -> None:
    limits = Limits(waiting_connections_per_peer=4, connect_timeout_s=1.0)

    async def scenario(env: Env) -> None:
        idle = [raw_socket(env.broker.port) for _ in range(8)]
        await asyncio.sleep(0.2)
        # Past the per-peer cap the oldest waiting connections were closed, the newest kept.
        closed = await asyncio.gather(*(closed_by_server(s, 0.3) for s in idle))
        assert closed == [True] * 4 + [False] * 4
        assert env.broker.listener.counts() == {"waiting": 4, "ready": 0, "connecting": 0}
        # A client that speaks something other than TLS is closed at once, without a handshake.
        http = raw_socket(env.broker.port)
        await asyncio.get_running_loop().sock_sendall(http, b"GET / HTTP/1.1\r\n\r\n")
        assert await closed_by_server(http, 0.5)
        # A real client still connects while they are held (it is the newest, and it speaks at once).
        await env.connected("ok-good")
        # Nothing reaches CONNACK after connect_timeout_s: the rest are closed.
        assert await asyncio.gather(*(closed_by_server(s, 1.5) for s in idle[4:])) == [True] * 4
        assert env.broker.listener.counts()["waiting"] == 0
        for sock in [*idle, http]:
            sock.close()

    run(tmp_path, scenario, limits)


def test_stalled_handshakes_hold_a_slot_only_until_their_deadline(tmp_path: Path) -> None:
    limits = Limits(connecting=1, connecting_per_peer=1, connect_timeout_s=1.5)

    async def scenario(env: Env) -> None:
        # TLS done, no CONNECT: it holds the one connecting slot.
        stalled = await env.open(None)
        await asyncio.sleep(0.5)  # the next one's own deadline is then well after the stalled one's
        started = time.monotonic()
        waiting = asyncio.create_task(env.connected("ok-next"))
        await asyncio.sleep(0.4)
        assert not waiting.done() and env.broker.listener.counts()["ready"] == 1
        # The stalled one is closed at its deadline; the next client is served then.
        await asyncio.wait_for(waiting, 3)
        assert 0.5 < time.monotonic() - started < 2.5
        assert await stalled.closed()

    run(tmp_path, scenario, limits)


def test_a_stalled_packet_is_cut_at_the_read_deadline_and_keep_alive_is_not(tmp_path: Path) -> None:
    limits = Limits(packet_read_timeout_s=0.5)

    async def scenario(env: Env) -> None:
        quiet, _ = await env.connected("ok-quiet", keep_alive=30)
        clients = {}
        for version in (MQTT5, MQTT311):
            client, _ = await env.connected(f"ok-stall-{version}", version)
            whole = publish_packet("allowed/a", b"x" * 1000, version)
            await client.send(whole[:100])  # the header announces 1,000 bytes; 100 came
            clients[version] = client
        started = time.monotonic()
        assert await clients[MQTT5].disconnected_with(timeout=2) == reasons.KEEP_ALIVE_TIMEOUT
        assert await clients[MQTT311].disconnected_with(timeout=2) is None
        assert time.monotonic() - started < 1.5
        assert await quiet.silent(0.3)  # silent but within its keep-alive: still connected
        assert "ok-quiet" in env.broker.sessions

    run(tmp_path, scenario, limits)


class HeldRequests:
    """A topic handler whose requests stay under way until the test lets them finish."""

    def __init__(self) -> None:
        self.under_way: list[tuple[Session, Publish]] = []

    def claims(self, topic: str) -> bool:
        return topic.startswith("$aws/certificates/")

    def handle(self, session: Session, message: Publish) -> None:
        session.request_started()
        self.under_way.append((session, message))

    def finish_one(self) -> None:
        session, message = self.under_way.pop(0)
        session.request_finished()
        session.deliver(message.topic + "/accepted", message.payload)


def test_a_burst_of_requests_is_held_back_by_tcp_not_queued(tmp_path: Path) -> None:
    handler = HeldRequests()

    async def scenario(env: Env) -> None:
        client, _ = await env.connected("ok-burst")
        await client.send(subscribe_packet(1, "$aws/certificates/#"))
        await client.suback()
        for i in range(5):
            client.writer.write(publish_packet(f"$aws/certificates/{i}", b"r"))
        client.writer.write(bytes([codec.PINGREQ << 4, 0]))
        await client.writer.drain()
        await asyncio.sleep(0.3)
        # Two under way: the broker reads nothing more from this client, not even its PINGREQ.
        assert len(handler.under_way) == 2 and await client.silent(0.2)
        handler.finish_one()
        assert (await client.message()).topic == "$aws/certificates/0/accepted"
        await asyncio.sleep(0.1)
        assert [m.topic for _, m in handler.under_way] == ["$aws/certificates/1", "$aws/certificates/2"]
        while handler.under_way:
            handler.finish_one()
            await asyncio.sleep(0.05)
        kinds = [(await client.packet())[0] for _ in range(5)]
        assert kinds.count(codec.PUBLISH) == 4 and kinds.count(codec.PINGRESP) == 1

    run(tmp_path, scenario, Limits(requests_per_connection=2), handlers=[handler])


def test_a_client_that_never_reads_is_dropped_at_the_high_water_mark(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits(write_buffer_high_water=256 * 1024)

    async def scenario(env: Env) -> None:
        # A small receive buffer, so that the kernel does not absorb megabytes first.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", env.broker.port))
        context = env.contexts["a"]
        reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname="127.0.0.1")
        slow = Client(reader, writer, MQTT5)
        await slow.send(connect_packet("ok-slow"))
        await slow.connack()
        await slow.send(subscribe_packet(1, ("allowed/flood", 0)))
        await slow.suback()
        # From here on it reads nothing.
        publisher, _ = await env.connected("ok-flood")
        sent = 0
        while "ok-slow" in env.broker.sessions and sent < 400:  # 40 MB at most
            await publisher.send(publish_packet("allowed/flood", bytes(100_000)))
            sent += 1
        assert "ok-slow" not in env.broker.sessions, "the slow reader is still connected"
        writer.transport.abort()

    with caplog.at_level(logging.INFO, logger="emulator.mqtt"):
        run(tmp_path, scenario, limits)
    assert any("slow reader" in r.getMessage() for r in caplog.records)


def test_the_tls_stage_still_refuses_what_tls_refuses(tmp_path: Path) -> None:
    """Starting TLS late changes nothing for a client: no certificate, no connection."""

    async def scenario(env: Env) -> None:
        context = ssl.create_default_context(cadata=env._ca)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", env.broker.port, ssl=context, server_hostname="127.0.0.1"
            )
            writer.write(codec.CONNECT.to_bytes(1, "big"))
            await writer.drain()
            await reader.read()
            raise ConnectionError("closed")  # TLS 1.3 reports the refusal on the first read
        await env.connected("ok-after")

    run(tmp_path, scenario, Limits())
