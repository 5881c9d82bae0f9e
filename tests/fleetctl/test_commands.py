"""show / revoke / reset / stats / batch bind, against moto (--table) and a moto server (--endpoint-file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from fleetctl.cli import app
from tests.hook.support import (
    REGION,
    TABLE,
    create_table,
    get_serial_item,
    put_batch,
    put_serial,
    serial_moto_server,
)

from .conftest import TARGET

runner = CliRunner()
CERT = "a" * 64


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def reserved(table: Any, serial: str = "SN-000001") -> None:
    put_serial(
        table,
        serial,
        status="RESERVED",
        batch="B1",
        attributes={"model": "X1"},
        certificate_id=CERT,
        reserved_at=1_800_000_000_000,
    )
    table.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"serial#{serial}"}},
        UpdateExpression="SET thing_name = :t, client_id = :c, claim_certificate_id = :k",
        ExpressionAttributeValues={
            ":t": {"S": f"device-{serial}"},
            ":c": {"S": f"prov-{serial}"},
            ":k": {"S": "c" * 64},
        },
    )


def test_show(table: Any) -> None:
    reserved(table)
    result = cli("registry", "show", "SN-000001", *TARGET, "--json")
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)
    assert (
        item["status"] == "RESERVED"
        and item["certificate_id"] == CERT
        and item["reserved_at"] == 1_800_000_000_000
    )
    assert item["attributes"] == {"model": "X1"} and "pk" not in item
    table_view = cli("registry", "show", "SN-000001", *TARGET)
    assert (
        table_view.exit_code == 0
        and "RESERVED" in table_view.stdout
        and "device-SN-000001" in table_view.stdout
    )


def test_show_unknown_is_one_line(table: Any) -> None:
    result = cli("registry", "show", "SN-NOPE", *TARGET)
    assert result.exit_code == 1 and result.stderr == "fleetctl: serial 'SN-NOPE' is not in the registry\n"


def test_revoke_then_reset(table: Any) -> None:
    reserved(table)
    result = cli("registry", "revoke", "SN-000001", *TARGET)
    assert result.exit_code == 0 and "RESERVED -> REVOKED" in result.stdout and CERT in result.stderr
    item = get_serial_item(table, "SN-000001")
    assert item is not None and item["status"]["S"] == "REVOKED" and "revoked_at" in item
    assert item["certificate_id"]["S"] == CERT  # kept for the record

    result = cli("registry", "reset", "SN-000001", *TARGET, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "serial": "SN-000001",
        "status": "AVAILABLE",
        "previous_status": "REVOKED",
        "previous_certificate_id": CERT,
        "retired": [  # the certificate is not in AWS IoT (moto): nothing to deactivate or detach
            {"certificate_id": CERT, "previous_status": None, "detached_things": [], "detached_policies": []}
        ],
    }
    item = get_serial_item(table, "SN-000001")
    assert item is not None and item["status"]["S"] == "AVAILABLE"
    for gone in (
        "certificate_id",
        "thing_name",
        "claim_certificate_id",
        "client_id",
        "reserved_at",
        "revoked_at",
    ):
        assert gone not in item
    assert item["batch"]["S"] == "B1" and item["attributes"]["M"] == {
        "model": {"S": "X1"}
    }  # registry data stays


def provisioned_in_iot(table: Any, serial: str = "SN-000001") -> tuple[Any, str, str]:
    """A serial provisioned as the template would: an ACTIVE certificate attached to its thing and the
    device policy, and an earlier certificate of the same serial (a lost reply) still ACTIVE too."""
    iot = boto3.client("iot", region_name=REGION)
    iot.create_policy(policyName="device-policy", policyDocument='{"Version": "2012-10-17", "Statement": []}')
    iot.create_thing(thingName=f"device-{serial}")
    current = iot.create_keys_and_certificate(setAsActive=True)
    earlier = iot.create_keys_and_certificate(setAsActive=True)
    for certificate in (current, earlier):
        iot.attach_thing_principal(thingName=f"device-{serial}", principal=certificate["certificateArn"])
        iot.attach_policy(policyName="device-policy", target=certificate["certificateArn"])
    put_serial(table, serial, status="RESERVED", certificate_id=current["certificateId"], reserved_at=1)
    table.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"serial#{serial}"}},
        UpdateExpression="SET thing_name = :t, certificate_ids = :ids",
        ExpressionAttributeValues={
            ":t": {"S": f"device-{serial}"},
            ":ids": {"SS": [current["certificateId"], earlier["certificateId"]]},
        },
    )
    return iot, current["certificateId"], earlier["certificateId"]


def test_reset_retires_every_certificate_the_serial_had(table: Any) -> None:
    """An RMA: the old certificates must neither work nor hold the thing (was: left attached and ACTIVE)."""
    iot, current, earlier = provisioned_in_iot(table)
    result = cli("registry", "reset", "SN-000001", *TARGET, "--json")
    assert result.exit_code == 0, result.output
    retired = {r["certificate_id"]: r for r in json.loads(result.stdout)["retired"]}
    assert set(retired) == {current, earlier}
    for certificate_id in (current, earlier):
        description = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
        assert description["status"] == "INACTIVE"
        assert iot.list_principal_things(principal=description["certificateArn"])["things"] == []
        assert iot.list_attached_policies(target=description["certificateArn"])["policies"] == []
        assert retired[certificate_id] == {
            "certificate_id": certificate_id,
            "previous_status": "ACTIVE",
            "detached_things": ["device-SN-000001"],
            "detached_policies": ["device-policy"],
        }
    item = get_serial_item(table, "SN-000001")
    assert item is not None and item["status"]["S"] == "AVAILABLE" and "certificate_id" not in item
    history = table.get_item(TableName=TABLE, Key={"pk": {"S": f"cert#{current}"}})["Item"]
    assert history["retired_reason"]["S"] == "reset"


def test_reset_keep_certificate_leaves_aws_iot_alone(table: Any) -> None:
    iot, current, _ = provisioned_in_iot(table)
    result = cli("registry", "reset", "SN-000001", *TARGET, "--keep-certificate")
    assert result.exit_code == 0, result.output
    assert "left as it is" in result.stderr
    assert iot.describe_certificate(certificateId=current)["certificateDescription"]["status"] == "ACTIVE"
    assert get_serial_item(table, "SN-000001")["status"]["S"] == "AVAILABLE"  # type: ignore[index]


def test_revoke_deactivate_cuts_the_device_off(table: Any) -> None:
    iot, current, earlier = provisioned_in_iot(table)
    result = cli("registry", "revoke", "SN-000001", *TARGET, "--deactivate")
    assert result.exit_code == 0, result.output
    assert f"certificate {current}: ACTIVE -> INACTIVE" in result.stdout
    for certificate_id in (current, earlier):
        description = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
        assert description["status"] == "INACTIVE"
        # Revoked, not reset: the thing keeps its (dead) certificate for the record.
        assert iot.list_principal_things(principal=description["certificateArn"])["things"] == [
            "device-SN-000001"
        ]
    assert get_serial_item(table, "SN-000001")["status"]["S"] == "REVOKED"  # type: ignore[index]


def test_show_lists_the_certificate_history(table: Any) -> None:
    iot, current, earlier = provisioned_in_iot(table)
    table.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"cert#{earlier}"},
            "certificate_id": {"S": earlier},
            "serial": {"S": "SN-000001"},
            "issued_at": {"N": "1000"},
            "issued_reason": {"S": "provisioned"},
            "retired_at": {"N": "2000"},
            "retired_reason": {"S": "superseded_same_key"},
        },
    )
    table.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"cert#{current}"},
            "certificate_id": {"S": current},
            "serial": {"S": "SN-000001"},
            "issued_at": {"N": "2000"},
            "issued_reason": {"S": "same_key"},
        },
    )
    result = cli("registry", "show", "SN-000001", *TARGET, "--json")
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout)["certificates"]
    assert [
        (h["certificate_id"], h["issued_reason"], h.get("retired_reason"), h["iot_status"]) for h in history
    ] == [
        (earlier, "provisioned", "superseded_same_key", "ACTIVE"),
        (current, "same_key", None, "ACTIVE"),
    ]
    text = cli("registry", "show", "SN-000001", *TARGET)
    assert "certificates (oldest first)" in text.stdout and "retired 1970-01-01T00:00:02+00:00" in text.stdout


def test_revoke_and_reset_unknown_serial(table: Any) -> None:
    for command in ("revoke", "reset"):
        result = cli("registry", command, "SN-NOPE", *TARGET)
        assert result.exit_code == 1 and "not in the registry" in result.stderr
    assert table.scan(TableName=TABLE)["Count"] == 0  # no item conjured up


def test_stats(table: Any) -> None:
    for n in range(3):
        put_serial(table, f"SN-A{n:05d}", batch="B1")
    reserved(table, "SN-R00001")
    put_serial(table, "SN-X00001", status="REVOKED")
    put_batch(table, "B1", ["c" * 64])
    result = cli("registry", "stats", *TARGET, "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["total"] == 5
    assert stats["by_status"] == {"AVAILABLE": 3, "RESERVED": 1, "REVOKED": 1}
    assert stats["by_batch"]["B1"] == {
        "total": 4,
        "AVAILABLE": 3,
        "RESERVED": 1,
        "REVOKED": 0,
        "bound_claims": 1,
        "with_public_key_sha256": 0,
        "require_device_key": False,
    }
    assert stats["by_batch"]["(none)"]["REVOKED"] == 1
    view = cli("registry", "stats", *TARGET)
    assert view.exit_code == 0 and "5 serials" in view.stdout and "any claim" in view.stdout


def test_batch_bind_is_additive(table: Any) -> None:
    one, two = "1" * 64, "2" * 64
    assert cli("batch", "bind", "B1", "--claim-certificate-id", one, *TARGET).exit_code == 0
    result = cli(
        "batch",
        "bind",
        "B1",
        "--claim-certificate-id",
        two,
        "--claim-certificate-id",
        one.upper(),
        *TARGET,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"batch": "B1", "claim_certificate_ids": [one, two]}
    item = table.get_item(TableName=TABLE, Key={"pk": {"S": "batch#B1"}})["Item"]
    assert set(item["claim_certificate_ids"]["SS"]) == {one, two} and item["batch"]["S"] == "B1"
    shown = cli("batch", "show", "B1", *TARGET, "--json")
    assert json.loads(shown.stdout)["claim_certificate_ids"] == [one, two]
    unbound = cli("batch", "show", "B9", *TARGET)
    assert "not bound" in unbound.stdout


def test_batch_bind_rejects_bad_ids(table: Any) -> None:
    result = cli("batch", "bind", "B1", "--claim-certificate-id", "not-an-id", *TARGET)
    assert result.exit_code == 2 and "64 hex digits" in result.stderr  # usage
    assert table.scan(TableName=TABLE)["Count"] == 0


# -- the emulator's endpoint file ------------------------------------------------------------------------


@pytest.fixture
def endpoint_file(aws_env: None, tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    with serial_moto_server() as url:
        client = boto3.client("dynamodb", region_name=REGION, endpoint_url=url)
        create_table(client, "emulated-serials")
        path = tmp_path / "endpoint.json"
        path.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": 8883,
                    "region": REGION,
                    "aws_endpoint_url": url,
                    "serial_table": "emulated-serials",
                    "thing_name_prefix": "device-",
                }
            )
        )
        yield path, client


def test_import_and_stats_through_the_endpoint_file(
    endpoint_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, client = endpoint_file
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # fleetctl supplies dummy credentials for the emulator
    csv_file = tmp_path / "s.csv"
    csv_file.write_text("serial,batch\nSN-000001,B1\nSN-000002,B1\n")
    result = cli("registry", "import", str(csv_file), "--endpoint-file", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == 2
    assert get_serial_item(client, "SN-000002", table="emulated-serials") is not None
    stats = json.loads(cli("registry", "stats", "--endpoint-file", str(path), "--json").stdout)
    assert stats["table"] == "emulated-serials" and stats["by_batch"]["B1"]["total"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        ("[]", "is not a JSON object"),
        ('{"region": "us-east-1"}', "lacks aws_endpoint_url, serial_table"),
    ],
)
def test_bad_endpoint_file_is_one_line(
    aws_env: None, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "endpoint.json"
    if content is not None:
        path.write_text(content)
    result = cli("registry", "stats", "--endpoint-file", str(path))
    assert result.exit_code == 2 and message in result.stderr  # a file the command line names: usage
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_unreachable_endpoint_is_one_line(aws_env: None, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "endpoint.json"
    path.write_text(
        json.dumps({"region": REGION, "aws_endpoint_url": f"http://127.0.0.1:{port}", "serial_table": "t"})
    )
    result = cli("registry", "show", "SN-000001", "--endpoint-file", str(path))
    assert result.exit_code == 1 and result.stderr.startswith("fleetctl: AWS call failed: Could not connect")
