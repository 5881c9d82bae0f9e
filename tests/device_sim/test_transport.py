"""The simulator's TLS trusts the target's CA file and nothing else, however the system trust store is set,
over MQTT 3.1.1 and MQTT 5 alike.

`Transport` points SSL_CERT_FILE (what s2n's default system-store load reads for every new TLS context) at
the target's CA file, so that throw-away load parses one certificate instead of the whole system bundle.
These tests hold the two things that rests on: the variable names the CA file, and a certificate trusted
only through the system store (SSL_CERT_FILE as the user had it) is still refused, on claim and device
connections alike. Real sockets and real awscrt against a minimal mTLS MQTT endpoint; no emulator.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from awscrt import io as crt_io

from device_sim.errors import DeviceFailure
from device_sim.target import Target
from device_sim.transport import MQTT_VERSIONS, Transport, wait
from tests.device_sim.mini_broker import MiniBroker
from tests.device_sim.pki import Authority, Files, write_pki


def target_for(files: Files, port: int) -> Target:
    return Target(
        host="127.0.0.1",
        port=port,
        ca_file=files.ca_file,
        claim_cert_file=files.claim_cert_file,
        claim_key_file=files.claim_key_file,
        template_name="FleetProvisioningTemplate",
    )


def device_tls(files: Files) -> crt_io.TlsContextOptions:
    return crt_io.TlsContextOptions.create_client_with_mtls(
        files.claim_cert_file.read_bytes(), files.claim_key_file.read_bytes()
    )


async def connect_and_leave(transport: Transport, files: Files, client_id: str, device: bool) -> None:
    if device:
        connection = transport.device_connection(device_tls(files), client_id)
    else:
        connection = transport.claim_connection(client_id)
    await transport.connect(connection, "connect")
    await transport.disconnect(connection)


@pytest.fixture
def endpoint(tmp_path: Path):  # type: ignore[no-untyped-def]
    authority = Authority.create("endpoint CA")
    broker = MiniBroker(tmp_path, authority)
    yield authority, broker
    broker.close()


def test_ssl_cert_file_names_the_ca_file(tmp_path: Path, endpoint, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    authority, broker = endpoint
    files = write_pki(tmp_path / "pki", authority)
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.chdir(tmp_path)
    relative = Files(Path("pki/ca.pem"), files.claim_cert_file, files.claim_key_file)

    Transport(target_for(relative, broker.port), threads=1, timeout_s=5)

    assert os.environ["SSL_CERT_FILE"] == str(files.ca_file.resolve())


@pytest.mark.parametrize("version", MQTT_VERSIONS)
@pytest.mark.parametrize("device", [False, True], ids=["claim", "device"])
def test_the_ca_file_is_trusted(tmp_path: Path, endpoint, device: bool, version: str) -> None:  # type: ignore[no-untyped-def]
    authority, broker = endpoint
    files = write_pki(tmp_path / "pki", authority)
    transport = Transport(target_for(files, broker.port), mqtt_version=version, threads=1, timeout_s=5)

    asyncio.run(connect_and_leave(transport, files, "trusted-1", device))

    assert broker.client_ids == ["trusted-1"]
    assert broker.levels == [5 if version == "5" else 4]


@pytest.mark.parametrize("version", MQTT_VERSIONS)
@pytest.mark.parametrize("device", [False, True], ids=["claim", "device"])
def test_a_ca_only_in_the_system_store_is_not_trusted(  # type: ignore[no-untyped-def]
    tmp_path: Path, endpoint, monkeypatch, device: bool, version: str
) -> None:
    authority, broker = endpoint
    # The endpoint's CA is in the system store the user configured, but the target names another CA.
    right = write_pki(tmp_path / "right", authority)
    monkeypatch.setenv("SSL_CERT_FILE", str(right.ca_file))
    wrong = write_pki(tmp_path / "wrong", Authority.create("someone else"), client_authority=authority)
    transport = Transport(target_for(wrong, broker.port), mqtt_version=version, threads=1, timeout_s=2)

    # s2n refuses the server's certificate ("Certificate is untrusted"); awscrt 0.36 may then hold the
    # connect future until our time-out, so the failure is either kind. What matters is that no MQTT
    # CONNECT ever crossed: the trusted tests above show one arrives at once when TLS succeeds.
    with pytest.raises(DeviceFailure) as failure:
        asyncio.run(connect_and_leave(transport, wrong, "untrusted-1", device))

    assert failure.value.kind in ("tls_negotiation", "timeout"), failure.value
    assert broker.client_ids == []


# -- wait(): awaiting awscrt's concurrent futures from asyncio ------------------------------------------


def test_wait_returns_the_result_and_raises_the_exception() -> None:
    async def scenario() -> None:
        done: Future[str] = Future()
        threading.Timer(0.05, done.set_result, ["ok"]).start()  # awscrt answers from its own thread
        assert await wait(done, 5) == "ok"
        failed: Future[str] = Future()
        threading.Timer(0.05, failed.set_exception, [ValueError("refused")]).start()
        with pytest.raises(ValueError, match="refused"):
            await wait(failed, 5)

    asyncio.run(scenario())


def test_a_timed_out_wait_leaves_awscrts_future_to_awscrt(caplog: pytest.LogCaptureFixture) -> None:
    late: Future[str] = Future()
    after_close: Future[str] = Future()

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await wait(late, 0.05)
        assert not late.cancelled()  # what asyncio.wrap_future would have done
        late.set_exception(ValueError("answered after the time-out"))  # no InvalidStateError
        await asyncio.sleep(0.05)  # the relay runs, finds nobody waiting, drops it
        with pytest.raises(TimeoutError):
            await wait(after_close, 0.05)

    asyncio.run(scenario())
    after_close.set_result("answered after the event loop closed")  # no RuntimeError either
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_cancelled_awscrt_future_cancels_the_wait() -> None:
    async def scenario() -> None:
        cancelled: Future[str] = Future()
        threading.Timer(0.05, cancelled.cancel).start()
        with pytest.raises(asyncio.CancelledError):
            await wait(cancelled, 5)

    asyncio.run(scenario())


def test_an_mqtt5_connection_hands_a_message_to_the_filter_it_matches() -> None:
    """The mqtt5 client has one message callback: the connection finds the subscription's handler."""
    from device_sim.connection5 import _matches

    assert _matches("$aws/events/presence/connected/+", "$aws/events/presence/connected/device-1")
    assert not _matches("$aws/events/presence/connected/+", "$aws/events/presence/connected/a/b")
    assert _matches("a/#", "a") and _matches("a/#", "a/b/c") and _matches("a/b", "a/b")
    assert not _matches("a/b", "a/c") and not _matches("+/x", "$aws/x") and not _matches("#", "$aws/x")
