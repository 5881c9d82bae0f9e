"""Every bad input is one line on stderr and a non-zero exit, never a traceback (no emulator needed)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from tests.device_sim.mini_broker import MiniBroker
from tests.device_sim.pki import Authority, write_pki

runner = CliRunner()


def one_line_error(result, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    """The one stderr line of a usage error (2), or of a refusal (1: the endpoint was tried and said no)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def endpoint_file(tmp_path: Path, port: int, files, **overrides) -> Path:  # type: ignore[no-untyped-def]
    data = {
        "host": "127.0.0.1",
        "port": port,
        "ca_file": str(files.ca_file),
        "claim_cert_file": str(files.claim_cert_file),
        "claim_key_file": str(files.claim_key_file),
        "template_name": "FleetProvisioningTemplate",
        "region": "us-east-1",
        "claim_client_id_pattern": "prov-*",
        **overrides,
    }
    path = tmp_path / "endpoint.json"
    path.write_text(json.dumps(data))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pki(tmp_path: Path):  # type: ignore[no-untyped-def]
    authority = Authority.create()
    return authority, write_pki(tmp_path / "pki", authority)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"host": "127.0.0.1"}', 'has no valid "claim_cert_file"'),
        (
            '{"host": "127.0.0.1", "port": "8883", "ca_file": "a", "claim_cert_file": "b", '
            '"claim_key_file": "c", '
            '"template_name": "t"}',
            'has no valid "port"',
        ),
        (
            '{"host": "127.0.0.1", "port": 70000, "ca_file": "a", "claim_cert_file": "b", '
            '"claim_key_file": "c", '
            '"template_name": "t"}',
            'invalid "port"',
        ),
    ],
)
def test_malformed_endpoint_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "endpoint.json"
    path.write_text(content)
    for command in (["provision", "--serial", "A001"], ["fleet", "--devices", "2"]):
        line = one_line_error(runner.invoke(app, [*command, "--endpoint-file", str(path)]))
        assert message in line and line.startswith("device-sim: ")


def test_missing_endpoint_file(tmp_path: Path) -> None:
    line = one_line_error(
        runner.invoke(app, ["provision", "--serial", "A001", "--endpoint-file", str(tmp_path / "nope.json")])
    )
    assert "cannot read the endpoint file" in line


def test_unreachable_endpoint(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    _, files = pki
    path = endpoint_file(tmp_path, free_port(), files)
    line = one_line_error(
        runner.invoke(app, ["provision", "--serial", "A001", "--endpoint-file", str(path)]), code=1
    )
    assert "cannot reach 127.0.0.1:" in line and "refused" in line


def test_wrong_ca(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    authority, files = pki
    broker = MiniBroker(tmp_path, authority)
    stranger = Authority.create("someone else")
    wrong = write_pki(tmp_path / "wrong", stranger, client_authority=authority)
    path = endpoint_file(tmp_path, broker.port, files, ca_file=str(wrong.ca_file))
    try:
        line = one_line_error(
            runner.invoke(app, ["provision", "--serial", "A001", "--endpoint-file", str(path)]), code=1
        )
    finally:
        broker.close()
    assert "is not trusted by the CA file" in line
    assert broker.client_ids == []


def test_refused_claim_certificate(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    authority, files = pki
    broker = MiniBroker(tmp_path, authority)
    foreign = write_pki(tmp_path / "foreign", authority, client_authority=Authority.create("another factory"))
    path = endpoint_file(
        tmp_path,
        broker.port,
        files,
        claim_cert_file=str(foreign.claim_cert_file),
        claim_key_file=str(foreign.claim_key_file),
    )
    try:
        line = one_line_error(
            runner.invoke(
                app,
                [
                    "fleet",
                    "--devices",
                    "3",
                    "--endpoint-file",
                    str(path),
                    "--report",
                    str(tmp_path / "r.json"),
                ],
            ),
            code=1,
        )
    finally:
        broker.close()
    assert "refused the claim certificate" in line
    assert not (tmp_path / "r.json").exists()


def test_claim_key_that_is_not_a_key(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    authority, files = pki
    broker = MiniBroker(tmp_path, authority)
    files.claim_key_file.write_text("not a key\n")
    path = endpoint_file(tmp_path, broker.port, files)
    try:
        line = one_line_error(
            runner.invoke(app, ["provision", "--serial", "A001", "--endpoint-file", str(path)])
        )
    finally:
        broker.close()
    assert "are not a usable PEM pair" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["provision", "--serial", "A001"], "give --endpoint-file (emulator) or --endpoint"),
        (["provision", "--serial", "A001", "--endpoint", "example.com"], "--endpoint also needs --ca-file"),
        (["provision", "--serial", "A001", "--endpoint-file", "e.json", "--endpoint", "h"], "not both"),
        (
            ["provision", "--serial", "A001", "--endpoint-file", "e.json", "--param", "novalue"],
            "--param must be k=v",
        ),
        (
            [
                "provision",
                "--serial",
                "A001",
                "--endpoint-file",
                "e.json",
                "--flow",
                "keys",
                "--key-store",
                "pkcs11",
            ],
            "--flow keys cannot use --key-store pkcs11",
        ),
        (["provision"], "Missing option '--serial'"),
        (["provision", "--serial", "A", "--format", "xml"], "Invalid value for '--format'"),
        (["provision", "--serial", "A", "--mqtt", "3.1"], "Invalid value for '--mqtt'"),
        (["fleet", "--devices", "4", "--mqtt", "4"], "Invalid value for '--mqtt'"),
        (["locust", "--devices", "4", "--mqtt", "v5"], "Invalid value for '--mqtt'"),
        (["fleet", "--endpoint-file", "e.json"], "give --devices N"),
        (["fleet", "--endpoint-file", "e.json", "--devices", "4", "--shard", "5/4"], "--shard 5/4"),
        (["fleet", "--endpoint-file", "e.json", "--devices", "4", "--ramp-s", "3"], "--ramp-s needs --rate"),
        (["fleet", "--devices", "0"], "Invalid value for '--devices'"),
        (["report", "merge", "--out", "x.json"], "Missing argument"),
    ],
)
def test_usage_errors(tmp_path: Path, pki, monkeypatch, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    _, files = pki
    monkeypatch.chdir(tmp_path)
    endpoint_file(tmp_path, free_port(), files).rename(tmp_path / "e.json")
    line = one_line_error(runner.invoke(app, args))
    assert message in line


def test_serials_file_shorter_than_devices(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    _, files = pki
    serials = tmp_path / "serials.txt"
    serials.write_text("A001\nA002\n")
    path = endpoint_file(tmp_path, free_port(), files)
    line = one_line_error(
        runner.invoke(
            app, ["fleet", "--endpoint-file", str(path), "--serials", str(serials), "--devices", "5"]
        )
    )
    assert "holds only 2 serials" in line


def test_a_template_the_endpoint_does_not_know_names_the_option() -> None:
    """A claim policy that allows any template's topics lets the request through: AWS answers 404."""
    from device_sim.errors import Rejected
    from device_sim.provision_cli import rejection_line

    missing = Rejected("RegisterThing", 404, "ResourceNotFound", "Template Wrong does not exist")
    assert rejection_line(missing, "Wrong") == (
        "rejected: RegisterThing: ResourceNotFound (404): Template Wrong does not exist; the endpoint has no "
        "template 'Wrong': check --template-name (or the endpoint file's template_name)"
    )
    denied = Rejected("RegisterThing", 403, "AccessDenied", "Pre-provisioning hook returned false")
    assert (
        rejection_line(denied, "T")
        == "rejected: RegisterThing: AccessDenied (403): Pre-provisioning hook returned false"
    )


def test_a_hang_up_on_every_register_thing_points_at_the_template_and_policy(tmp_path: Path) -> None:
    """Endpoints that close the connection on a refused topic (older AWS IoT): after the retries, the hint."""
    from device_sim.errors import DeviceFailure
    from device_sim.provision_cli import failure_line
    from device_sim.target import Target

    target = Target("h", 8883, tmp_path, tmp_path, tmp_path, "FleetProvisioningTemplate")
    closed = DeviceFailure(
        "connection_closed", "RegisterThing: AWS_ERROR_MQTT_UNEXPECTED_HANGUP", step="RegisterThing"
    )
    line = failure_line(closed, target, "SN-1", 3)
    assert line.startswith(
        "failed (connection_closed) (after 3 retries): RegisterThing: AWS_ERROR_MQTT_UNEXPECTED"
    )
    assert "check --template-name ('FleetProvisioningTemplate') and the claim policy" in line
    refused = DeviceFailure(
        "subscribe_refused",
        "CreateCertificateFromCsr: the endpoint refused the subscription "
        "$aws/certificates/create-from-csr/json/accepted",
        step="CreateCertificateFromCsr",
    )
    assert failure_line(refused, target, "SN-1", 0).startswith(
        "failed: the endpoint refused the subscription to the certificate topics: the claim policy does not "
        "allow $aws/certificates/create-from-csr/*"
    )
