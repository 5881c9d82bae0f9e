"""What a refusal becomes in the report, over MQTT 3.1.1 and MQTT 5: the same event is the same kind, retried
or not alike, and MQTT 5's reason code is named in the detail. Real awscrt clients (`mqtt.Connection`,
`mqtt5.Client`) over real TLS against a minimal endpoint that answers as each test scripts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from device_sim.errors import DeviceFailure
from device_sim.identity import CborIdentity
from device_sim.target import Target
from device_sim.transport import MQTT_VERSIONS, Connection, Transport
from tests.device_sim.mini_broker import MiniBroker
from tests.device_sim.pki import Authority, write_pki

TOPIC = "devices/device-1/telemetry"


def failure_of(tmp_path: Path, version: str, scenario: Any, **broker: Any) -> DeviceFailure:
    """Run SCENARIO(transport, connection) against a MiniBroker scripted by BROKER; what it raised."""
    authority = Authority.create()
    files = write_pki(tmp_path / "pki", authority)
    endpoint = MiniBroker(tmp_path, authority, **broker)
    target = Target(
        host="127.0.0.1",
        port=endpoint.port,
        ca_file=files.ca_file,
        claim_cert_file=files.claim_cert_file,
        claim_key_file=files.claim_key_file,
        template_name="t",
    )
    # A long time-out: a failure that waited for it would show as kind "timeout", not as the refusal.
    transport = Transport(target, mqtt_version=version, threads=1, timeout_s=20)

    async def run() -> None:
        connection = transport.claim_connection("prov-1")
        try:
            await scenario(transport, connection)
        finally:
            await transport.disconnect(connection)

    try:
        with pytest.raises(DeviceFailure) as raised:
            asyncio.run(run())
    finally:
        endpoint.close()
    return raised.value


async def connect(transport: Transport, connection: Connection) -> None:
    await transport.connect(connection, "claim_connect")


async def publish(transport: Transport, connection: Connection) -> None:
    await transport.connect(connection, "claim_connect")
    await transport.publish(connection, TOPIC, b"{}", "first_publish")


@pytest.mark.parametrize("version", MQTT_VERSIONS)
def test_a_refusing_connack_is_connect_refused_and_retried(tmp_path: Path, version: str) -> None:
    # 3.1.1 return code 5 (not authorized), MQTT 5 0x87 (what AWS IoT answers a claim policy that refuses
    # the client id): awscrt reports the first as a protocol error, which has always been connect_refused.
    failure = failure_of(tmp_path, version, connect, connack=0x87 if version == "5" else 5)
    assert (failure.kind, failure.retryable, failure.step) == ("connect_refused", True, "claim_connect")
    if version == "5":
        assert "CONNACK 0x87 NOT_AUTHORIZED" in failure.detail


@pytest.mark.parametrize(
    "version, code",
    [("3.1.1", None), ("5", 0x87), ("5", 0x8E), ("5", 0x97)],
    ids=["3.1.1-hang-up", "5-not-authorized", "5-session-taken-over", "5-quota-exceeded"],
)
def test_a_publish_answered_by_a_disconnect_is_connection_closed_and_retried(
    tmp_path: Path, version: str, code: int | None
) -> None:
    """A 3.1.1 endpoint can only hang up; MQTT 5 says why, and the report counts it under the same kind."""
    failure = failure_of(tmp_path, version, publish, on_publish=("disconnect", code or 0))
    assert (failure.kind, failure.retryable, failure.step) == ("connection_closed", True, "first_publish")
    if code is not None:
        assert f"DISCONNECT 0x{code:02X} " in failure.detail


@pytest.mark.parametrize("code, retried", [(0x97, True), (0x87, False), (0x99, False)])
def test_a_refusing_puback_is_publish_refused(tmp_path: Path, code: int, retried: bool) -> None:
    """MQTT 5 only: throttling (0x97 Quota exceeded) is worth another try, a refusal is not."""
    failure = failure_of(tmp_path, "5", publish, on_publish=("puback", code))
    assert (failure.kind, failure.retryable) == ("publish_refused", retried)
    assert f"PUBACK 0x{code:02X} " in failure.detail and TOPIC in failure.detail


@pytest.mark.parametrize("version", MQTT_VERSIONS)
def test_a_refused_subscription_is_subscribe_refused_naming_the_topic(tmp_path: Path, version: str) -> None:
    async def request(transport: Transport, connection: Connection) -> None:
        await transport.connect(connection, "claim_connect")
        await CborIdentity(connection, transport.timeout_s).register_thing(
            "T", "token", {"SerialNumber": "S"}
        )

    failure = failure_of(tmp_path, version, request, suback=0x87 if version == "5" else 0x80)
    assert (failure.kind, failure.retryable) == ("subscribe_refused", False)
    assert "the endpoint refused the subscription $aws/provisioning-templates/T/provision/cbor/accepted" in (
        failure.detail
    )


def test_a_disconnect_ends_the_wait_for_a_reply_at_once(tmp_path: Path) -> None:
    """A reply that can no longer come is not waited for until the time-out (20 s here: kind "timeout")."""

    async def wait_for_a_reply(transport: Transport, connection: Connection) -> None:
        await transport.connect(connection, "claim_connect")
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(connection.settle(reply, transport.timeout_s, "register_thing"))
        with pytest.raises(DeviceFailure):  # the publish that makes the endpoint disconnect
            await transport.publish(connection, TOPIC, b"{}", "register_thing")
        await waiting

    failure = failure_of(tmp_path, "5", wait_for_a_reply, on_publish=("disconnect", 0x8E))
    assert (failure.kind, failure.step) == ("connection_closed", "register_thing")
    assert "DISCONNECT 0x8E SESSION_TAKEN_OVER" in failure.detail
