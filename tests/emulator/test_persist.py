"""`python -m emulator up --persist` across restarts and a crash, and the options that make it fit a user's
habits: a fixed `--aws-port`, `--host`, and `--san` names in the server certificate."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from awsiot import iotidentity
from cryptography import x509

from emulator import process as emulator_process
from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import (
    TIMEOUT_S,
    Endpoint,
    RawClient,
    connect,
    disconnect,
    identity_client,
    make_csr,
)
from tests.emulator.test_e2e import aws, new_serial, provision_json, seed

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("persist")]

ROLE = "arn:aws:iam::123456789012:role/provisioning-role"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serial_item(endpoint: Endpoint, serial: str) -> dict[str, Any]:
    table = aws(endpoint, "dynamodb")
    return dict(
        table.get_item(TableName=endpoint.serial_table, Key={"pk": {"S": f"serial#{serial}"}})["Item"]
    )


def device_round_trip(endpoint: Endpoint, thing_name: str, certificate_pem: str, key_pem: bytes) -> None:
    device = connect(endpoint, thing_name, cert_pem=certificate_pem.encode(), key_pem=key_pem)
    try:
        raw = RawClient(device)
        raw.subscribe(f"devices/{thing_name}/#")
        raw.publish(f"devices/{thing_name}/telemetry", b"{}").result(TIMEOUT_S)
        assert raw.wait_for(1) == [(f"devices/{thing_name}/telemetry", b"{}")]
    finally:
        disconnect(device)


def ownership_token(endpoint: Endpoint, serial: str) -> str:
    """A token from CreateCertificateFromCsr, not yet spent by a RegisterThing."""
    connection = connect(endpoint, f"prov-{serial}")
    try:
        request = iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr(serial)[1])
        client = identity_client(connection)  # kept referenced: a collected client shuts down
        return str(client.create_certificate_from_csr(request).result(TIMEOUT_S).certificate_ownership_token)
    finally:
        disconnect(connection)


def register_with(endpoint: Endpoint, serial: str, token: str) -> str:
    connection = connect(endpoint, f"prov-{serial}")
    try:
        request = iotidentity.RegisterThingRequest(
            template_name=endpoint.template_name,
            certificate_ownership_token=token,
            parameters={"SerialNumber": serial},
        )
        client = identity_client(connection)
        return str(client.register_thing(request).result(TIMEOUT_S).thing_name)
    finally:
        disconnect(connection)


def test_the_state_survives_a_restart_with_persist_and_not_without(
    cloud_assembly: Path, tmp_path: Path
) -> None:
    state, aws_port = tmp_path / "state", free_port()
    options = ("--persist", "--aws-port", str(aws_port))
    first = EmulatorProcess(cloud_assembly, state, *options)
    try:
        endpoint = first.endpoint
        assert endpoint.aws_endpoint_url == f"http://127.0.0.1:{aws_port}"
        provisioned, pending = new_serial("PA"), new_serial("PB")
        seed(endpoint, provisioned)
        seed(endpoint, pending)
        created, registered, key_pem = provision_json(endpoint, provisioned)
        token = ownership_token(endpoint, pending)
        iot = aws(endpoint, "iot")
        iot.create_provisioning_template(
            templateName="Persisted", templateBody=json.dumps({"Resources": {}}), provisioningRoleArn=ROLE
        )
        iot.update_provisioning_template(
            templateName=endpoint.template_name, description="changed by the API"
        )
        claim = iot.create_provisioning_claim(templateName=endpoint.template_name)
        claims_before = first.raw["claims"]
    finally:
        assert first.stop() == 0

    second = EmulatorProcess(cloud_assembly, state, *options)
    try:
        endpoint = second.endpoint
        assert endpoint.aws_endpoint_url == f"http://127.0.0.1:{aws_port}"  # a fixed endpoint for a profile
        assert "state: restored from" in second.log()
        assert second.raw["claims"] == claims_before  # the claim credential devices hold still works
        # The provisioned device reconnects as its thing; its serial is still reserved for it.
        device_round_trip(endpoint, registered.thing_name, created.certificate_pem, key_pem)
        item = serial_item(endpoint, provisioned)
        assert item["status"]["S"] == "RESERVED" and item["certificate_id"]["S"] == created.certificate_id
        # A token issued before the restart is still valid after it.
        assert register_with(endpoint, pending, token) == f"device-{pending}"
        iot = aws(endpoint, "iot")
        assert "Persisted" in [t["templateName"] for t in iot.list_provisioning_templates()["templates"]]
        stack = iot.describe_provisioning_template(templateName=endpoint.template_name)
        assert stack["description"] == "changed by the API"
        temporary = connect(
            endpoint,
            "trusted-app",
            cert_pem=claim["certificatePem"].encode(),
            key_pem=claim["keyPair"]["PrivateKey"].encode(),
        )
        disconnect(temporary)
        # The serial of the first device is still taken: a second device cannot have it.
        with pytest.raises(Exception):  # noqa: B017 - the hook's AccessDenied, through awsiotsdk
            provision_json(endpoint, provisioned, client_id=f"prov-{provisioned}-again")
    finally:
        assert second.stop() == 0

    fresh = EmulatorProcess(cloud_assembly, state)  # no --persist: today's fresh start
    try:
        iot = aws(fresh.endpoint, "iot")
        assert iot.list_things()["things"] == []
        assert "Persisted" not in [t["templateName"] for t in iot.list_provisioning_templates()["templates"]]
        assert "fresh start" in fresh.log()
    finally:
        fresh.stop()


def test_a_crash_loses_at_most_the_last_save_interval(cloud_assembly: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = EmulatorProcess(cloud_assembly, state, "--persist", "--persist-interval-s", "0.2")
    serial = new_serial("CR")
    try:
        seed(first.endpoint, serial)
        created, registered, key_pem = provision_json(first.endpoint, serial)
        saved_file = state / "emulator-state.pickle"
        provisioned_at = time.time()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the saver's next pass after the provisioning
            if saved_file.exists() and saved_file.stat().st_mtime > provisioned_at + 0.3:
                break
            time.sleep(0.1)
    finally:
        first.process.send_signal(signal.SIGKILL)  # no shutdown, no last save
        first.process.wait(10)
    second = EmulatorProcess(cloud_assembly, state, "--persist")
    try:
        device_round_trip(second.endpoint, registered.thing_name, created.certificate_pem, key_pem)
        assert serial_item(second.endpoint, serial)["certificate_id"]["S"] == created.certificate_id
    finally:
        second.stop()


def test_host_and_san_names_are_in_the_server_certificate(cloud_assembly: Path, tmp_path: Path) -> None:
    emulator = EmulatorProcess(
        cloud_assembly,
        tmp_path / "state",
        "--host",
        "127.0.0.1",
        "--san",
        "emulator.test",
        "--san",
        "10.9.8.7",
    )
    try:
        endpoint = emulator.endpoint
        server = x509.load_pem_x509_certificate((tmp_path / "state" / "server.pem").read_bytes())
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "emulator.test"}
        assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.9.8.7"}
        assert endpoint.host == "127.0.0.1"

        def handshake(server_name: str) -> None:
            context = ssl.create_default_context(cafile=endpoint.ca_file)
            context.load_cert_chain(endpoint.claim_cert_file, endpoint.claim_key_file)
            with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
                with context.wrap_socket(sock, server_hostname=server_name):
                    pass

        handshake("emulator.test")  # a device that knows the emulator by that name verifies it
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake("elsewhere.test")
    finally:
        emulator.stop()


def test_an_aws_port_in_use_is_one_line_and_exit_1(cloud_assembly: Path, tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = subprocess.run(
            emulator_process.command(cloud_assembly, tmp_path / "state", "--aws-port", str(port)),
            env=emulator_process.child_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("iot-emulator: cannot start:")
    assert "Traceback" not in result.stderr


def test_a_wildcard_bind_is_advertised_on_loopback_and_kept_out_of_the_certificate() -> None:
    from emulator.awsapi.control_plane import MqttAddress
    from emulator.runtime import EmulatorOptions

    wildcard = EmulatorOptions(host="0.0.0.0", server_names=("emulator.lan", "192.168.1.20", "localhost"))  # noqa: S104
    assert wildcard.advertised_host == "127.0.0.1"
    assert wildcard.certificate_names() == ("localhost", "127.0.0.1", "emulator.lan", "192.168.1.20")
    named = EmulatorOptions(host="emulator.lan")
    assert named.advertised_host == "emulator.lan" and "emulator.lan" in named.certificate_names()
    # DescribeEndpoint: a bare host, as AWS answers, only on AWS's MQTT port; otherwise host:port.
    assert MqttAddress("emulator.lan", 8883).endpoint_address() == "emulator.lan"
    assert MqttAddress("127.0.0.1", 41234).endpoint_address() == "127.0.0.1:41234"
