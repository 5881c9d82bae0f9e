"""AWS IoT Core's per-connection limits and rate throttles in the broker (raw clients of both versions over
real TLS), each answered as AWS answers it, in the three profiles of `--limits`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emulator.cli import app
from emulator.mqtt import codec, reasons
from emulator.mqtt import properties as props
from emulator.mqtt.limits import Limits
from emulator.mqtt.throttle import PerKeyInterval, TokenBucket
from tests.emulator.mqtt_harness import (
    MQTT5,
    MQTT311,
    Client,
    Env,
    broker_env,
    publish_packet,
    subscribe_packet,
)

QUOTA_EXCEEDED = reasons.QUOTA_EXCEEDED  # 0x97


def run(tmp_path: Path, scenario: Callable[[Env], Awaitable[None]], limits: Limits | None = None) -> None:
    async def main() -> None:
        async with broker_env(tmp_path, limits=limits) as env:
            await scenario(env)

    asyncio.run(main())


async def still_connected(client: Client) -> bool:
    await client.send(bytes([codec.PINGREQ << 4, 0]))
    kind, _, _ = await client.packet()
    return kind == codec.PINGRESP


def puback_reason(body: bytes) -> int:
    return body[2] if len(body) > 2 else 0


def test_profiles() -> None:
    default, aws, off = (Limits.for_profile(p) for p in ("default", "aws", "off"))
    per_connection = ("client_id_max_bytes", "subscriptions_per_connection", "filters_per_subscribe")
    assert [getattr(default, f) for f in per_connection] == [128, 50, 8]
    assert [getattr(aws, f) for f in per_connection] == [128, 50, 8]
    assert [getattr(off, f) for f in per_connection] == [None, None, None]
    assert default.publishes_per_second is None and default.provisioning_rates() == {}
    assert aws.publishes_per_second == 100 and aws.connects_per_second_per_client_id == 1
    assert aws.provisioning_rates() == {
        "CreateCertificateFromCsr": 15,
        "CreateKeysAndCertificate": 10,
        "RegisterThing": 10,
    }
    assert off.provisioning_rates() == {} and off.outbound_in_flight is None
    # Keep-alive: 30-1200 s, 0 and anything over 1200 is 1200 (AWS); `off` takes what the client asks.
    assert [default.server_keep_alive(k) for k in (0, 1, 29, 30, 600, 1200, 1201, 65535)] == [
        1200, 30, 30, 30, 600, 1200, 1200, 1200,
    ]  # fmt: skip
    assert [off.server_keep_alive(k) for k in (0, 5, 5000)] == [0, 5, 5000]
    with pytest.raises(ValueError, match="default, aws, off"):
        Limits.for_profile("fast")


def test_rate_helpers_on_a_fake_clock() -> None:
    now = [0.0]
    bucket = TokenBucket(15, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(40)) == 15  # one second of burst
    now[0] += 0.2
    assert sum(bucket.take() for _ in range(40)) == 3
    per_client = PerKeyInterval(1, clock=lambda: now[0])
    assert per_client.allow("a") and per_client.allow("b") and not per_client.allow("a")
    now[0] += 1.0
    assert per_client.allow("a")
    for i in range(1000):
        per_client.allow(f"x{i}")
    now[0] += 1.0
    per_client.allow("y")
    assert len(per_client._last) == 1  # keys older than the interval are forgotten


def test_cli_rejects_an_unknown_profile_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path / "s"), "--limits", "fast"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--limits must be aws or off" in result.output


def test_the_51st_subscription_and_the_9th_filter_are_refused(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        for version in (MQTT5, MQTT311):
            client, _ = await env.connected(f"ok-subs-{version}", version)
            failure = QUOTA_EXCEEDED if version == MQTT5 else 0x80
            # Eight filters per SUBSCRIBE: a ninth refuses the whole request, nothing is subscribed.
            nine = [f"allowed/nine/{i}" for i in range(9)]
            await client.send(subscribe_packet(1, *nine, version=version))
            assert await client.suback() == [failure] * 9
            for batch in range(0, 50, 5):
                filters = [f"allowed/{i}" for i in range(batch, batch + 5)]
                await client.send(subscribe_packet(2, *filters, version=version))
                assert await client.suback() == [1] * 5
            # The 51st is refused; subscribing again to one it has is not a new subscription.
            await client.send(subscribe_packet(3, "allowed/50", "allowed/0", version=version))
            assert await client.suback() == [failure, 1]
            assert await still_connected(client)
            assert len(env.broker.sessions[f"ok-subs-{version}"].state.subscriptions) == 50
            # An UNSUBSCRIBE frees a place.
            unsubscribe = codec.UNSUBSCRIBE << 4 | 2
            body = (
                (4).to_bytes(2, "big") + (b"\x00" if version == MQTT5 else b"") + codec._string("allowed/0")
            )
            await client.send(codec._packet(unsubscribe, body))
            await client.expect(codec.UNSUBACK)
            await client.send(subscribe_packet(5, "allowed/50", version=version))
            assert await client.suback() == [1]

    run(tmp_path, scenario)


def test_limits_off_lets_a_client_subscribe_past_aws(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        client, _ = await env.connected("ok-many")
        await client.send(subscribe_packet(1, *[f"allowed/{i}" for i in range(60)]))
        assert await client.suback() == [1] * 60

    run(tmp_path, scenario, Limits.for_profile("off"))


def test_client_id_over_128_bytes_and_keep_alive_as_aws_holds_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_id = "ok" + "é" * 64  # 130 bytes in 66 characters: AWS counts bytes
    forged = "ok-x\n2026-01-01 00:00:00,000 INFO emulator.provisioning RegisterThing accepted client=prov-1"

    async def scenario(env: Env) -> None:
        refused5 = await env.open(long_id, MQTT5)
        assert (await refused5.connack()).reason_code == reasons.CLIENT_IDENTIFIER_NOT_VALID
        refused3 = await env.open(long_id, MQTT311)
        assert (await refused3.connack()).reason_code == 2  # identifier rejected
        await env.connected("ok" + "x" * 126)  # 128 bytes: accepted
        # Keep-alive: asked 0 -> 1200, 5 -> 30, 3000 -> 1200, told in Server Keep Alive (MQTT 5).
        for asked, held in ((0, 1200), (5, 30), (3000, 1200), (45, 45)):
            _, connack = await env.connected(f"ok-ka-{asked}", keep_alive=asked)
            assert connack.properties[props.SERVER_KEEP_ALIVE] == held
            await env.connected(f"ok-ka3-{asked}", MQTT311, keep_alive=asked)
            assert env.broker.sessions[f"ok-ka3-{asked}"].keep_alive == held
        # A newline in the client id: connected, logged quoted on one line.
        client, _ = await env.connected(forged)
        assert await still_connected(client)

    with caplog.at_level(logging.INFO, logger="emulator.mqtt"):
        run(tmp_path, scenario)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "\n" in m or "\r" in m]
    assert any(m.startswith('connect client="ok-x\\n2026-01-01 00:00:00,000 INFO') for m in messages)
    refused = [m for m in messages if "client id of 130 bytes" in m]
    assert len(refused) == 2 and all(len(m) < 400 for m in refused)


def test_aws_throttles_publishes_and_connects(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        # 100 publishes per second per connection: past it discarded; MQTT 5 QoS 1 gets PUBACK 0x97.
        client, _ = await env.connected("ok-burst")
        started = time.monotonic()
        for i in range(150):
            client.writer.write(publish_packet("allowed/t", b"x", qos=1, packet_id=i + 1))
        await client.writer.drain()
        codes = [puback_reason((await client.expect(codec.PUBACK))[1]) for _ in range(150)]
        elapsed = time.monotonic() - started
        assert codes.count(0) + codes.count(QUOTA_EXCEEDED) == 150
        assert codes.count(0) <= 100 + 100 * elapsed + 1 and codes.count(QUOTA_EXCEEDED) >= 20
        assert await still_connected(client)
        # 3.1.1: discarded without a PUBACK, still connected.
        old, _ = await env.connected("ok-burst3", MQTT311)
        for i in range(150):
            old.writer.write(publish_packet("allowed/t", b"x", MQTT311, qos=1, packet_id=i + 1))
        await old.writer.drain()
        acked = 0
        while not await old.silent(timeout=0.5):  # each PUBACK that arrives, until none comes
            acked += 1
        assert 100 <= acked < 150
        # One CONNECT per second per client id: the second is refused and the first stays connected.
        first, _ = await env.connected("ok-again")
        second = await env.open("ok-again")
        assert (await second.connack()).reason_code == QUOTA_EXCEEDED
        first3, _ = await env.connected("ok-again3", MQTT311)
        second3 = await env.open("ok-again3", MQTT311)
        assert await second3.disconnected_with() is None  # 3.1.1: closed without CONNACK
        assert await still_connected(first) and await still_connected(first3)

    run(tmp_path, scenario, Limits.for_profile("aws"))


def test_outbound_in_flight_is_held_to_100(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        lazy, _ = await env.connected("ok-lazy", MQTT311)
        await lazy.send(subscribe_packet(1, "allowed/q", version=MQTT311))
        await lazy.suback()
        publisher, _ = await env.connected("ok-pub")
        for i in range(130):
            await publisher.send(publish_packet("allowed/q", b"m", qos=1, packet_id=i + 1))
            await publisher.expect(codec.PUBACK)
        session = env.broker.sessions["ok-lazy"]
        assert (len(session.in_flight), len(session.pending)) == (100, 30)

    run(tmp_path, scenario)
