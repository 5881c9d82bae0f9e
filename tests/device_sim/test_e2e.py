"""The simulator against the emulator over mTLS: each flow, the PKCS#11 key store, rejections,
bad targets, and a fleet whose report agrees with what the registry holds afterwards; over MQTT 3.1.1 and
MQTT 5 (`--mqtt`) wherever that costs a few connections, across both where one run can mix them."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from device_sim.mqtt_versions import MQTT_VERSIONS
from device_sim.pkcs11_store import find_softhsm
from tests.device_sim.conftest import REPO_ROOT, Emulator
from tests.device_sim.pki import Authority, cert_pem

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("device-sim-e2e")]
runner = CliRunner()
each_mqtt = pytest.mark.parametrize("mqtt", MQTT_VERSIONS)


def serials(emulator: Emulator, n: int, *, imported: bool = True) -> list[str]:
    tag = uuid.uuid4().hex[:8].upper()
    made = [f"T{tag}{i:03d}" for i in range(n)]
    if imported:
        emulator.import_serials(made)
    return made


def provision(emulator: Emulator, serial: str, out_dir: Path, *extra: str):  # type: ignore[no-untyped-def]
    return runner.invoke(
        app,
        [
            "provision",
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serial",
            serial,
            "--out-dir",
            str(out_dir),
            "--timeout-s",
            "20",
            *extra,
        ],
    )


def versions_seen(emulator: Emulator, client_id: str) -> set[str]:
    """The MQTT versions of the connections the emulator logged for CLIENT_ID."""
    pattern = re.compile(rf"connect client={re.escape(client_id)} .* mqtt=(\S+) ")
    return {m.group(1) for m in pattern.finditer(emulator.log_path.read_text())}


def assert_registered(emulator: Emulator, serial: str, thing_name: str, certificate_id: str) -> None:
    iot = emulator.client("iot")
    assert iot.describe_thing(thingName=thing_name)["thingName"] == thing_name
    certificate = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    assert certificate["status"] == "ACTIVE"
    assert certificate["certificateArn"] in iot.list_thing_principals(thingName=thing_name)["principals"]
    item = emulator.serial_item(serial)
    assert item is not None and item["status"] == "RESERVED" and item["certificate_id"] == certificate_id


@each_mqtt
@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_csr_flow(emulator: Emulator, tmp_path: Path, fmt: str, mqtt: str) -> None:
    (serial,) = serials(emulator, 1)
    out = tmp_path / serial
    result = provision(emulator, serial, out, "--format", fmt, "--mqtt", mqtt)
    assert result.exit_code == 0, result.output
    thing = result.stdout.strip()
    assert thing == emulator.data["thing_name_prefix"] + serial
    # The claim connection and the device's own (reconnect, first publish) both spoke --mqtt.
    assert versions_seen(emulator, f"prov-{serial}") == versions_seen(emulator, thing) == {mqtt}
    identity = json.loads((out / "identity.json").read_text())
    assert (out / "thing_name").read_text().strip() == thing
    assert stat.S_IMODE((out / "private.key").stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in (out / "identity.json").read_text() + (out / "certificate.pem").read_text()
    assert_registered(emulator, serial, thing, identity["certificate_id"])
    # The certificate certifies the device's own key, and its CSR carried CN = serial.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificate = x509.load_pem_x509_certificate((out / "certificate.pem").read_bytes())
    key = serialization.load_pem_private_key((out / "private.key").read_bytes(), None)
    assert certificate.public_key() == key.public_key()


def test_a_parameter_besides_the_serial_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    """The device chooses only its serial: the stack's hook refuses any other parameter, as AccessDenied."""
    (serial,) = serials(emulator, 1)
    result = provision(emulator, serial, tmp_path / serial, "--param", "model=m7")
    assert result.exit_code == 1 and "AccessDenied (403)" in result.output, result.output
    assert emulator.serial_item(serial)["status"] == "AVAILABLE"  # type: ignore[index]


@each_mqtt
def test_keys_flow_warns_that_the_key_crossed_the_network(
    emulator: Emulator, tmp_path: Path, mqtt: str
) -> None:
    (serial,) = serials(emulator, 1)
    result = provision(emulator, serial, tmp_path / serial, "--flow", "keys", "--mqtt", mqtt)
    assert result.exit_code == 0, result.output
    assert "crossed the network" in result.stderr or "sent it over the network" in result.stderr
    identity = json.loads((tmp_path / serial / "identity.json").read_text())
    assert_registered(emulator, serial, result.stdout.strip(), identity["certificate_id"])


@each_mqtt
@pytest.mark.skipif(find_softhsm() is None, reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_pkcs11_key_store(emulator: Emulator, tmp_path: Path, mqtt: str) -> None:
    (serial,) = serials(emulator, 1)
    out = tmp_path / serial
    # A subprocess: SoftHSM2 reads its configuration once per process.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "provision",
            "--endpoint-file",
            str(emulator.endpoint_file),
            "--serial",
            serial,
            "--out-dir",
            str(out),
            "--key-store",
            "pkcs11",
            "--format",
            "cbor",
            "--mqtt",
            mqtt,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    thing = result.stdout.strip()
    assert not (out / "private.key").exists()
    saved = json.loads((out / "pkcs11.json").read_text())
    assert set(saved) == {"module", "softhsm2_conf", "token_label", "key_label"}
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".pem", ""):
            assert b"PRIVATE KEY" not in path.read_bytes()
    identity = json.loads((out / "identity.json").read_text())
    assert_registered(emulator, serial, thing, identity["certificate_id"])


@each_mqtt
def test_unknown_serial_is_rejected_with_aws_error(emulator: Emulator, tmp_path: Path, mqtt: str) -> None:
    (serial,) = serials(emulator, 1, imported=False)
    result = provision(emulator, serial, tmp_path / serial, "--mqtt", mqtt)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("device-sim: rejected: RegisterThing: AccessDenied (403): ")
    assert result.stdout == ""


def test_cloned_serial_is_rejected(emulator: Emulator, tmp_path: Path) -> None:
    (serial,) = serials(emulator, 1)
    assert provision(emulator, serial, tmp_path / "original", "--mqtt", "3.1.1").exit_code == 0
    clone = provision(emulator, serial, tmp_path / "clone", "--format", "cbor", "--mqtt", "5")
    assert clone.exit_code == 1
    assert clone.stderr.strip().startswith("device-sim: rejected: RegisterThing: AccessDenied")


@each_mqtt
def test_inactive_claim_certificate_is_refused(emulator: Emulator, tmp_path: Path, mqtt: str) -> None:
    """AWS IoT hangs up on an inactive certificate without any CONNACK, in both versions."""
    (serial,) = serials(emulator, 1)
    result = provision(emulator, serial, tmp_path / serial, "--claim", "line-b", "--mqtt", mqtt)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("device-sim: failed: the endpoint closed the claim connection after CONNECT")
    assert "prov-" + serial in lines[0]
    assert emulator.serial_item(serial)["status"] == "AVAILABLE"  # type: ignore[index]


def test_a_claim_client_id_the_policy_refuses_gets_connack_0x87_over_mqtt5(
    emulator: Emulator, tmp_path: Path
) -> None:
    """MQTT 5 says why (3.1.1 gets the hang-up above): the line says the endpoint refused, with the code."""
    (serial,) = serials(emulator, 1)
    result = provision(emulator, serial, tmp_path / serial, "--client-id-pattern", "other-*", "--mqtt", "5")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("device-sim: failed: the endpoint refused the claim connection after CONNECT")
    assert f"client id 'other-{serial}'" in line and "CONNACK 0x87 NOT_AUTHORIZED" in line, line
    assert emulator.serial_item(serial)["status"] == "AVAILABLE"  # type: ignore[index]


def test_wrong_ca_against_the_emulator(emulator: Emulator, tmp_path: Path) -> None:
    data = dict(emulator.data)
    ca = tmp_path / "other-ca.pem"
    ca.write_bytes(cert_pem(Authority.create("not the emulator").cert))
    data["ca_file"] = str(ca)
    endpoint = tmp_path / "endpoint.json"
    endpoint.write_text(json.dumps(data))
    result = runner.invoke(app, ["provision", "--endpoint-file", str(endpoint), "--serial", "WRONGCA1"])
    assert result.exit_code == 1  # the endpoint was tried: a refusal, not a usage error
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is not trusted by the CA file" in result.stderr


@each_mqtt
@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_a_wrong_template_name_is_a_refused_subscription_not_retried(
    emulator: Emulator, tmp_path: Path, fmt: str, mqtt: str
) -> None:
    """The claim policy allows only the stack's template: the SUBACK refuses another name's reply topics.
    That is no dropped connection: said as such, with the option to check, and not tried again."""
    (serial,) = serials(emulator, 1)
    endpoint = tmp_path / "endpoint.json"
    endpoint.write_text(json.dumps({**emulator.data, "template_name": "NoSuchTemplate"}))
    result = runner.invoke(
        app,
        ["provision", "--endpoint-file", str(endpoint), "--serial", serial, "--format", fmt, "--mqtt", mqtt],
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "device-sim: failed: the endpoint refused the subscription to template 'NoSuchTemplate''s reply "
        "topics: it has no template by that name, or the claim policy does not allow "
        "$aws/provisioning-templates/NoSuchTemplate/provision/*; check --template-name and the claim policy "
        f"[RegisterThing: the endpoint refused the subscription $aws/provisioning-templates/NoSuchTemplate/"
        f"provision/{fmt}/accepted"
    ), line
    assert "retries" not in line
    assert ("(SUBACK 0x87 NOT_AUTHORIZED)" in line) == (mqtt == "5")  # MQTT 5 says why
    log = emulator.log_path.read_text()
    assert log.count(f"connect client=prov-{serial} ") == 1  # one claim connection: no retry
    assert f"subscribe refused client=prov-{serial} filter=$aws/provisioning-templates/NoSuchTemplate/" in log
    assert emulator.serial_item(serial)["status"] == "AVAILABLE"  # type: ignore[index]


def test_fleet_report_matches_the_registry(emulator: Emulator, tmp_path: Path) -> None:
    known = serials(emulator, 24)
    unknown = serials(emulator, 4, imported=False)
    serial_file = tmp_path / "serials.txt"
    serial_file.write_text("\n".join(known + unknown) + "\n")
    reports = []
    for shard in ("1/2", "2/2"):
        report = tmp_path / f"shard{shard[0]}.json"
        result = runner.invoke(
            app,
            [
                "fleet",
                "--endpoint-file",
                str(emulator.endpoint_file),
                "--serials",
                str(serial_file),
                "--shard",
                shard,
                "--concurrency",
                "8",
                "--format",
                "json" if shard == "1/2" else "cbor",
                "--mqtt",  # one merged report over both versions
                "3.1.1" if shard == "1/2" else "5",
                "--report",
                str(report),
                "--html",
                str(tmp_path / "r.html"),
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
        reports.append(str(report))
    merged_path = tmp_path / "merged.json"
    result = runner.invoke(app, ["report", "merge", *reports, "--out", str(merged_path)])
    assert result.exit_code == 0, result.output
    merged = json.loads(merged_path.read_text())
    assert (merged["run"]["format"], merged["run"]["mqtt"]) == ("json+cbor", "3.1.1+5")

    iot = emulator.client("iot")
    prefix = emulator.data["thing_name_prefix"]
    provisioned = []
    for serial in known + unknown:
        item = emulator.serial_item(serial)
        if item is None or item["status"] != "RESERVED":
            continue
        certificate = iot.describe_certificate(certificateId=item["certificate_id"])["certificateDescription"]
        if certificate["status"] == "ACTIVE":
            iot.describe_thing(thingName=prefix + serial)
            provisioned.append(serial)
    assert merged["devices"] == len(known) + len(unknown)
    assert merged["provisioned"] == len(provisioned) == len(known)
    assert merged["rejected"] == len(unknown) and merged["rejections"] == {"AccessDenied": len(unknown)}
    assert merged["failed"] == 0 and merged["failures"] == {}
    assert merged["latency_ms"]["total"]["p50"] > 0
    assert merged["histograms"]["register_thing"]["count"] == len(
        known
    )  # rejected RegisterThings are not timed
    assert merged["histograms"]["claim_connect"]["count"] >= len(known) + len(unknown)
    runs = [json.loads(Path(p).read_text())["run"] for p in reports]
    assert [(r["shard"], r["format"], r["mqtt"]) for r in runs] == [
        ("1/2", "json", "3.1.1"),
        ("2/2", "cbor", "5"),
    ]


def fleet_args(emulator: Emulator, serial_file: Path, report: Path, *extra: str) -> list[str]:
    return [
        "fleet",
        "--endpoint-file",
        str(emulator.endpoint_file),
        "--serials",
        str(serial_file),
        "--concurrency",
        "4",
        "--report",
        str(report),
        *extra,
    ]


def test_fleet_thresholds_set_the_exit_code(emulator: Emulator, tmp_path: Path) -> None:
    known = serials(emulator, 3)
    unknown = serials(emulator, 3, imported=False)
    rejected_only = tmp_path / "unknown.txt"
    rejected_only.write_text("\n".join(unknown) + "\n")
    result = runner.invoke(app, fleet_args(emulator, rejected_only, tmp_path / "r1.json", "--no-progress"))
    assert result.exit_code == 1  # every device rejected is not a pass
    assert "device-sim: threshold: none of the 3 devices that finished was provisioned" in result.stderr
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n".join(known[:2] + serials(emulator, 1, imported=False)) + "\n")
    strict = ("--max-rejected", "0", "--max-p99-ms", "0.001", "--no-progress")
    result = runner.invoke(app, fleet_args(emulator, mixed, tmp_path / "r2.json", *strict))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("device-sim: threshold: ")]
    assert [line.split()[-2] for line in lines] == ["--max-rejected", "--max-p99-ms"]
    ok = tmp_path / "ok.txt"
    ok.write_text(known[2] + "\n")
    result = runner.invoke(app, fleet_args(emulator, ok, tmp_path / "r3.json", "--max-p99-ms", "60000"))
    assert result.exit_code == 0, result.output
    assert "threshold:" not in result.stderr


def test_fleet_progress_lines_when_stderr_is_not_a_terminal(emulator: Emulator, tmp_path: Path) -> None:
    serial_file = tmp_path / "serials.txt"
    serial_file.write_text("\n".join(serials(emulator, 6)) + "\n")
    result = runner.invoke(
        app,
        fleet_args(emulator, serial_file, tmp_path / "r.json", "--rate", "10", "--progress-every-s", "0.2"),
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 2  # at least one during the run and the last one
    assert lines[-1].startswith("progress: 6/6 devices in ") and "provisioned 6," in lines[-1]


def test_fleet_ctrl_c_writes_the_html_and_counts_devices_in_flight_as_interrupted(
    emulator: Emulator, tmp_path: Path
) -> None:
    serial_file = tmp_path / "serials.txt"
    serial_file.write_text("\n".join(serials(emulator, 200)) + "\n")
    report, page = tmp_path / "r.json", tmp_path / "r.html"
    process = subprocess.Popen(
        [sys.executable, "-m", "device_sim", *fleet_args(emulator, serial_file, report, "--html", str(page))]
        # At most 20 arrivals a second: the run cannot end before the Ctrl-C however late this test gets
        # to send it on a loaded machine (200 devices take 10 s at least).
        + ["--concurrency", "20", "--rate", "20", "--progress-every-s", "0.2"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("progress: ") and not line.startswith("progress: 0/"):
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
    data = json.loads(report.read_text())
    assert data["run"]["interrupted"] is True
    assert data["failed"] == 0 and data["interrupted"] > 0
    assert data["devices"] == data["provisioned"] + data["rejected"] + data["interrupted"] < 200
    assert "interrupted" in page.read_text()
