"""What the rotation tests do to devices: provision and rotate through the CLIs, connect with a given
identity, do a rotation's requests by hand (to stop half way), read the registries back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from device_sim.cli import app as device_sim
from device_sim.device_dir import DeviceIdentity, keep_new_certificate, keep_new_key, load_identity
from device_sim.errors import DeviceFailure
from device_sim.identity import IssuedCertificate, identity_client
from device_sim.keys import MemoryKey
from device_sim.target import load_endpoint_file
from device_sim.transport import Transport
from fleetctl.cli import app as fleetctl
from tests.device_sim.conftest import Emulator

runner = CliRunner()


def new_serials(emulator: Emulator, n: int, *, imported: bool = True) -> list[str]:
    tag = uuid.uuid4().hex[:8].upper()
    made = [f"R{tag}{i:03d}" for i in range(n)]
    if imported:
        emulator.import_serials(made)
    return made


def provision(emulator: Emulator, serial: str, out_dir: Path, *extra: str) -> Any:
    args = ["provision", "--endpoint-file", str(emulator.endpoint_file), "--serial", serial]
    return runner.invoke(device_sim, [*args, "--out-dir", str(out_dir), "--timeout-s", "20", *extra])


def provisioned(emulator: Emulator, tmp_path: Path, serial: str | None = None) -> Path:
    serial = serial or new_serials(emulator, 1)[0]
    result = provision(emulator, serial, tmp_path / serial)
    assert result.exit_code == 0, result.output
    return tmp_path / serial


def rotate(emulator: Emulator, device_dir: Path, *extra: str) -> Any:
    args = ["rotate", "--endpoint-file", str(emulator.endpoint_file), "--device-dir", str(device_dir)]
    return runner.invoke(device_sim, [*args, "--timeout-s", "20", *extra])


def fleetctl_json(emulator: Emulator, *args: str) -> Any:
    result = runner.invoke(fleetctl, [*args, "--endpoint-file", str(emulator.endpoint_file), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def identity_of(device_dir: Path) -> DeviceIdentity:
    return load_identity(device_dir, pkcs11_pin="1234")


def status(emulator: Emulator, certificate_id: str) -> str:
    description = emulator.client("iot").describe_certificate(certificateId=certificate_id)
    return str(description["certificateDescription"]["status"])


def attached(emulator: Emulator, thing_name: str) -> set[str]:
    principals = emulator.client("iot").list_thing_principals(thingName=thing_name)["principals"]
    return {arn.rsplit("/", 1)[-1] for arn in principals}


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.2)


def transport(emulator: Emulator, timeout_s: float = 10.0) -> Transport:
    return Transport(load_endpoint_file(emulator.endpoint_file), threads=1, timeout_s=timeout_s)


def connects(emulator: Emulator, certificate_pem: bytes, key_pem: bytes, client_id: str) -> bool:
    """Whether this certificate and key connect (and may publish as) `client_id`."""

    async def attempt() -> bool:
        via = transport(emulator, timeout_s=5.0)
        connection = via.device_connection(
            MemoryKey.from_pem(key_pem).tls_options(certificate_pem), client_id
        )
        try:
            await via.connect(connection, "connect")
        except DeviceFailure:
            return False
        await via.disconnect(connection)
        return True

    return asyncio.run(attempt())


def half_rotation(emulator: Emulator, identity: DeviceIdentity, *, wait_for_reply: bool) -> IssuedCertificate:
    """A rotation's requests over the device's own connection, as `rotate` makes them, kept in the device
    directory as `rotate` keeps them; then the device never connects with the new certificate. Without
    `wait_for_reply` the RegisterThing goes out and the connection closes at once: its reply is lost."""
    template = emulator.data["rotation_template_name"]

    async def run() -> IssuedCertificate:
        via = transport(emulator)
        key = MemoryKey()
        keep_new_key(identity, key)
        connection = via.device_connection(
            identity.key.tls_options(identity.certificate_pem), identity.thing_name
        )
        await via.connect(connection, "connect")
        try:
            client = identity_client("json", connection, via.timeout_s)
            issued = await client.create_certificate_from_csr(key.csr_pem(identity.serial))
            keep_new_certificate(identity, issued.certificate_pem)
            parameters = {"SerialNumber": identity.serial}
            if wait_for_reply:
                await client.register_thing(template, issued.ownership_token, parameters)
            else:
                request = {"certificateOwnershipToken": issued.ownership_token, "parameters": parameters}
                topic = f"$aws/provisioning-templates/{template}/provision/json"
                await via.publish(connection, topic, json.dumps(request).encode(), "register_thing")
        finally:
            await via.disconnect(connection)
        return issued

    return asyncio.run(run())


def serial_item(emulator: Emulator, serial: str) -> dict[str, Any]:
    item = emulator.serial_item(serial)
    assert item is not None
    return item


def certificate_item(emulator: Emulator, certificate_id: str) -> dict[str, Any]:
    item = (
        emulator.client("dynamodb")
        .get_item(TableName=emulator.data["serial_table"], Key={"pk": {"S": f"cert#{certificate_id}"}})
        .get("Item")
    )
    assert item is not None, certificate_id
    return {k: next(iter(v.values())) for k, v in item.items()}
