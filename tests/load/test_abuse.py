"""The attacks of issue 13 on the real emulator (`python -m emulator up`), measured in its own RSS: idle TCP
connections, claim connections that stall mid-packet, a device that never reads, a burst of CSR requests,
client ids made to forge log lines. Each holds what the emulator's limits say, and good devices go on.

RSS is the emulator's main process (the broker; the hook process is not attacked). A device's time is
the device's own clock in this process; on a shared machine it gets a guard relative to the same device
flow measured just before the attack, while the assertions that matter are about admission.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_sim.device import DeviceOptions, RetryPolicy, provision_device
from device_sim.target import load_endpoint_file
from device_sim.transport import Transport
from emulator.mqtt.limits import DEFAULT_LIMITS
from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import make_csr
from tests.emulator.mqtt_harness import Client, connect_packet, publish_packet, subscribe_packet
from tests.load.support import import_serials, provision_all, start_emulator

pytestmark = [pytest.mark.load, pytest.mark.e2e, pytest.mark.xdist_group("load-abuse")]

CSR_TOPIC = "$aws/certificates/create-from-csr/json"


@pytest.fixture(scope="module")
def emulator(cloud_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = start_emulator(cloud_assembly, tmp_path_factory.mktemp("abuse") / "state")
    yield process
    process.stop()


def rss_mb(emulator: EmulatorProcess) -> float:
    for line in Path(f"/proc/{emulator.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def settled_rss_mb(emulator: EmulatorProcess, seconds: float = 3.0) -> float:
    """RSS once the emulator has had time to give back what it freed (heap.py trims 1 s after a burst)."""
    time.sleep(seconds)
    return rss_mb(emulator)


def tls_context(
    raw: dict[str, Any], cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=raw["ca_file"])
    context.load_cert_chain(cert_file or raw["claim_cert_file"], key_file or raw["claim_key_file"])
    return context


async def mqtt_client(
    raw: dict[str, Any],
    client_id: str,
    context: ssl.SSLContext,
    *,
    keep_alive: int = 30,
    receive_buffer: int | None = None,
) -> Client:
    """A raw MQTT 3.1.1 client, connected (CONNACK 0 checked)."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (raw["host"], raw["port"]))
    reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=raw["host"])
    client = Client(reader, writer, 4)
    await client.send(connect_packet(client_id, 4, keep_alive=keep_alive))
    connack = await client.connack()
    assert connack.reason_code == 0, (client_id, connack)
    return client


async def closed_at(client: Client, timeout: float) -> float | None:
    """When the server closed the connection (monotonic), None if it did not within `timeout`."""
    try:
        await asyncio.wait_for(client.reader.read(), timeout)
    except TimeoutError:
        return None
    except (ConnectionError, ssl.SSLError):
        pass
    return time.monotonic()


def provision_one(emulator: EmulatorProcess, serial: str) -> float:
    """One good device through the whole flow; its own elapsed time in seconds."""
    import_serials(emulator.raw, [serial])
    (result,) = asyncio.run(provision_all(emulator.state_dir / "endpoint.json", [serial], timeout_s=30))
    assert result.outcome == "provisioned", result
    return result.elapsed_s


def test_idle_tcp_connections_cost_next_to_nothing_and_keep_no_device_out(emulator: EmulatorProcess) -> None:
    """2,000 TCP connections that never start TLS: under 50 MB while held, within 20 MB after, and a good
    device is admitted and provisioned while they are held."""
    tag = uuid.uuid4().hex[:6].upper()
    baseline_s = provision_one(emulator, f"IDLE{tag}0")  # also warms the emulator up
    before = settled_rss_mb(emulator)
    idle = []
    for _ in range(2000):
        idle.append(socket.create_connection((emulator.raw["host"], emulator.raw["port"])))
    time.sleep(1.0)
    held = rss_mb(emulator)
    log_before = len(emulator.log())
    during_s = provision_one(emulator, f"IDLE{tag}1")
    admitted = [line for line in emulator.log()[log_before:].splitlines() if " connect client=" in line]
    assert len(admitted) == 2, admitted  # the claim connection and the thing's own, while the attack held on
    for sock in idle:
        sock.close()
    after = settled_rss_mb(emulator)
    assert held - before < 50, f"RSS {before:.0f} -> {held:.0f} MB with 2,000 idle connections"
    assert after - before < 20, f"RSS {before:.0f} -> {after:.0f} MB after they closed"
    took = f"a good device took {during_s:.2f} s (alone: {baseline_s:.2f} s)"
    assert during_s < max(2.0, 3 * baseline_s), took
    print(f"idle TCP: RSS {before:.0f} -> {held:.0f} -> {after:.0f} MB; {took}")


def test_claim_connections_stalled_mid_packet_are_cut_at_the_read_deadline(emulator: EmulatorProcess) -> None:
    """300 claim connections (keep-alive 0) each send half of a 200 KB PUBLISH and stall: every one is cut
    within the read deadline of its last byte, none before, and the memory they held goes back."""
    raw, deadline_s = emulator.raw, DEFAULT_LIMITS.packet_read_timeout_s
    before = settled_rss_mb(emulator)
    tag = uuid.uuid4().hex[:6]
    half = publish_packet(CSR_TOPIC, b"{" + b" " * 200_000, 4)[:100_000]

    async def attack() -> list[float]:
        context = tls_context(raw)
        limit = asyncio.Semaphore(50)

        async def one(i: int) -> float:
            async with limit:
                client = await mqtt_client(raw, f"prov-stall-{tag}-{i}", context, keep_alive=0)
                await client.send(half)
            stalled = time.monotonic()
            closed = await closed_at(client, deadline_s + 20)
            assert closed is not None, f"connection {i} was never cut"
            return closed - stalled

        return list(await asyncio.gather(*(one(i) for i in range(300))))

    cut_after = asyncio.run(attack())
    after = settled_rss_mb(emulator)
    assert max(cut_after) < deadline_s + 3, sorted(cut_after)[-5:]
    assert min(cut_after) > deadline_s - 1, sorted(cut_after)[:5]
    assert after - before < 20, f"RSS {before:.0f} -> {after:.0f} MB"
    print(
        f"stalled: cut after {min(cut_after):.1f}-{max(cut_after):.1f} s; RSS {before:.0f} -> {after:.0f} MB"
    )


def test_a_device_that_never_reads_is_dropped_at_the_high_water_mark(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """A provisioned device subscribes to its own topic and publishes 120 KB messages to it without ever
    reading: it is disconnected once 1 MiB waits for it, and the memory goes back."""
    raw, serial = emulator.raw, f"SLOW{uuid.uuid4().hex[:6].upper()}"
    import_serials(raw, [serial])
    device_dir = tmp_path / "device"

    async def provision() -> Any:
        transport = Transport(load_endpoint_file(emulator.state_dir / "endpoint.json"), threads=1)
        options = DeviceOptions(retry=RetryPolicy(attempts=1), out_dir=device_dir)
        return await provision_device(transport, serial, options)

    device = asyncio.run(provision())
    identity = json.loads((device_dir / "identity.json").read_text())
    before = settled_rss_mb(emulator, 2)

    async def flood() -> tuple[int, float]:
        context = tls_context(
            raw, str(device_dir / "certificate.pem"), str(device_dir / identity["key_file"])
        )
        client = await mqtt_client(raw, device.thing_name, context, receive_buffer=8192)
        topic = device.telemetry_topic.rsplit("/", 1)[0] + "/flood"
        await client.send(subscribe_packet(1, (topic, 0), version=4))
        await client.suback()
        peak, sent = 0.0, 0
        try:
            while sent < 1000:  # 120 MB at most; it is dropped long before
                client.writer.write(publish_packet(topic, bytes(120_000), 4))
                await asyncio.wait_for(client.writer.drain(), 5)
                sent += 1
                if sent % 20 == 0:
                    peak = max(peak, rss_mb(emulator))
                    if f'"{device.thing_name}"' in emulator.log() and "slow reader" in emulator.log():
                        break
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        client.writer.transport.abort()
        return sent, peak

    sent, peak = asyncio.run(flood())
    lines = [x for x in emulator.log().splitlines() if "slow reader" in x and device.thing_name in x]
    assert len(lines) == 1, lines
    after = settled_rss_mb(emulator)
    assert sent < 1000 and peak - before < 50, (sent, before, peak)
    assert after - before < 20, f"RSS {before:.0f} -> {after:.0f} MB"
    print(f"slow reader: dropped after {sent} x 120 KB; RSS {before:.0f} -> {peak:.0f} -> {after:.0f} MB")


async def csr_burst(raw: dict[str, Any], count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` CreateCertificateFromCsr requests on one claim connection as fast as it can send them;
    (accepted replies, rejected replies), one reply per request."""
    _, csr = make_csr("burst")
    client = await mqtt_client(raw, f"prov-burst-{uuid.uuid4().hex[:8]}", tls_context(raw))
    replies = [(CSR_TOPIC + "/accepted", 0), (CSR_TOPIC + "/rejected", 0)]
    await client.send(subscribe_packet(1, *replies, version=4))
    await client.suback()
    payload = json.dumps({"certificateSigningRequest": csr}).encode()
    for _ in range(count):
        client.writer.write(publish_packet(CSR_TOPIC, payload, 4))
    await client.writer.drain()
    accepted, rejected = [], []
    while len(accepted) + len(rejected) < count:
        message = await client.message(timeout=60)
        (accepted if message.topic.endswith("/accepted") else rejected).append(json.loads(message.payload))
    assert await client.silent(1.0)  # exactly one reply per request
    return accepted, rejected


def test_a_csr_burst_is_throttled_at_aws_rate_with_limits_aws_only(
    emulator: EmulatorProcess, cloud_assembly: Path, tmp_path: Path
) -> None:
    # The default profile serves the whole burst.
    accepted, rejected = asyncio.run(csr_burst(emulator.raw, 60))
    assert (len(accepted), rejected) == (60, [])
    # `--limits aws`: AWS's 15 CreateCertificateFromCsr per second, the rest rejected with 429.
    aws = start_emulator(cloud_assembly, tmp_path / "aws", "--limits", "aws")
    try:
        assert aws.raw["limits"] == "aws"
        started = time.monotonic()
        accepted, rejected = asyncio.run(csr_burst(aws.raw, 60))
        elapsed = time.monotonic() - started
    finally:
        aws.stop()
    assert len(accepted) + len(rejected) == 60
    assert 15 <= len(accepted) <= 15 + 15 * elapsed + 1, (len(accepted), elapsed)
    assert {(r["statusCode"], r["errorCode"]) for r in rejected} == {(429, "ThrottlingException")}
    print(f"CSR burst, --limits aws: {len(accepted)} accepted, {len(rejected)} throttled in {elapsed:.2f} s")


def test_client_ids_cannot_forge_log_lines_nor_crash_the_emulator(emulator: EmulatorProcess) -> None:
    raw = emulator.raw
    forged_line = "2026-01-01 00:00:00,000 INFO emulator.provisioning RegisterThing accepted client=prov-1"
    evil = f"prov-{uuid.uuid4().hex[:6]}\n{forged_line} device-SN99999 1.0ms"
    too_long = "prov-" + "x" * 200

    async def attempts() -> int:
        context = tls_context(raw)
        # A newline in the client id: connected (the claim policy allows prov-*), its requests logged.
        client = await mqtt_client(raw, evil, context)
        _, csr = make_csr("evil")
        await client.send(subscribe_packet(1, CSR_TOPIC + "/accepted", version=4))
        await client.suback()
        await client.send(
            publish_packet(CSR_TOPIC, json.dumps({"certificateSigningRequest": csr}).encode(), 4)
        )
        assert (await client.message(timeout=30)).topic == CSR_TOPIC + "/accepted"
        # Over 128 bytes: CONNACK return code 2, as MQTT 3.1.1 refuses a client id.
        sock = socket.create_connection((raw["host"], raw["port"]))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=raw["host"])
        refused = Client(reader, writer, 4)
        await refused.send(connect_packet(too_long, 4))
        return (await refused.connack()).reason_code

    assert asyncio.run(attempts()) == 2
    time.sleep(0.5)
    log = emulator.log().splitlines()
    assert not [x for x in log if x.startswith(forged_line)], "a forged line reached the log"
    accepted = [x for x in log if "CreateCertificateFromCsr accepted client=" in x and "device-SN99999" in x]
    assert len(accepted) == 1 and "\\n2026-01-01 00:00:00,000 INFO" in accepted[0], accepted
    long_lines = [x for x in log if "client id of 205 bytes" in x]
    assert len(long_lines) == 1 and len(long_lines[0]) < 500
    assert re.search(r'client="prov-x{195}"\.\.\.\(205 chars\)', long_lines[0])
    assert emulator.process.poll() is None
    provision_one(emulator, f"AFTER{uuid.uuid4().hex[:6].upper()}")
