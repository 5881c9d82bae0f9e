"""Issue 11's attacks, each by a holder of the leaked claim credential, against the emulator with the stack's
real hook: each fails for the attacker, and the genuine device provisions afterwards.

The rows of docs/security.md's table name these tests.

One file over 400 lines: one emulator serves every attack, and docs/security.md cites them here.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.provisioning.ca import CertificateAuthority
from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import Endpoint, RawClient, connect, disconnect
from tests.emulator.test_e2e import (
    CSR_TOPIC,
    aws,
    certificate_status,
    new_serial,
    provision_json,
    seed,
    template_topic,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("emulator-e2e")]

DENIED = ("rejected", 403, "AccessDenied")


class Device:
    """A device (or an attacker posing as one): its own key, CSRs with any CN, raw JSON requests."""

    def __init__(self, endpoint: Endpoint, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.endpoint = endpoint
        self.key = key or ec.generate_private_key(ec.SECP256R1())

    @property
    def key_sha256(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def csr(self, common_name: str) -> str:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(self.key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def certificate(self, client: RawClient, common_name: str) -> dict[str, Any]:
        kind, body = client.request(
            f"{CSR_TOPIC}/json", json.dumps({"certificateSigningRequest": self.csr(common_name)}).encode()
        )
        assert kind == "accepted", body
        return body  # type: ignore[no-any-return]

    def register(self, client: RawClient, token: str, serial: str, **extra: str) -> tuple[str, Any]:
        request = {"certificateOwnershipToken": token, "parameters": {"SerialNumber": serial, **extra}}
        return client.request(template_topic(self.endpoint, "json"), json.dumps(request).encode())

    def provision(self, serial: str) -> tuple[str, Any, dict[str, Any]]:
        """The whole claim-side flow on one connection: (reply kind, reply body, certificate reply)."""
        connection = connect(self.endpoint, f"prov-{serial}")
        try:
            client = RawClient(connection)
            issued = self.certificate(client, serial)
            kind, body = self.register(client, issued["certificateOwnershipToken"], serial)
            return kind, body, issued
        finally:
            disconnect(connection)


def denial(reply: tuple[str, Any]) -> tuple[str, int, str]:
    kind, body = reply
    return kind, body.get("statusCode"), body.get("errorCode")


def hook_reasons(emulator: EmulatorProcess, serial: str) -> list[str]:
    """The hook's own reasons for SERIAL, from its structured log lines in the emulator's output."""
    reasons = []
    for line in emulator.log().splitlines():
        if '"provisioning decision"' not in line or serial not in line:
            continue
        try:
            record = json.loads(line[line.index("{") :])
        except ValueError:
            continue
        if record.get("serial") == serial:
            reasons.append(record["reason"])
    return reasons


def serial_item(endpoint: Endpoint, serial: str) -> dict[str, Any]:
    item = aws(endpoint, "dynamodb").get_item(
        TableName=endpoint.serial_table, Key={"pk": {"S": f"serial#{serial}"}}, ConsistentRead=True
    )["Item"]
    return item  # type: ignore[no-any-return]


def wait_for(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# ------------------------------------------------------------------------------------------------- attacks


def test_one_certificate_cannot_lock_many_serials(emulator: EmulatorProcess) -> None:
    """Was: the hook reserved a serial, the template then failed on a device-chosen `model`, the token was
    not spent, and one certificate locked serial after serial."""
    endpoint = emulator.endpoint
    serials = [new_serial("LOCK") for _ in range(6)]
    for serial in serials:
        seed(endpoint, serial, model="m1")
    attacker = Device(endpoint)
    connection = connect(endpoint, f"prov-{serials[0]}")
    try:
        client = RawClient(connection)
        token = attacker.certificate(client, serials[0])["certificateOwnershipToken"]
        for serial in serials[:5]:
            assert denial(attacker.register(client, token, serial, model="bad value!")) == DENIED
        for serial in serials[1:]:  # its certificate's CN names one serial only
            assert denial(attacker.register(client, token, serial)) == DENIED
    finally:
        disconnect(connection)
    for serial in serials:
        assert serial_item(endpoint, serial)["status"]["S"] == "AVAILABLE"
    assert hook_reasons(emulator, serials[1]) == ["UNEXPECTED_PARAMETER", "CN_MISMATCH"]
    for serial in serials:  # every genuine device provisions afterwards
        kind, body, _ = Device(endpoint).provision(serial)
        assert (kind, body["thingName"]) == ("accepted", f"device-{serial}")
    attributes = aws(endpoint, "iot").describe_thing(thingName=f"device-{serials[0]}")["attributes"]
    assert attributes["model"] == "m1"  # the registry's, not the device's


def test_a_device_chooses_only_its_serial(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    serial = new_serial("PARAM")
    seed(endpoint, serial)  # the registry has no model: the template's default applies, not the device's
    for extra in ({"model": "m9"}, {"hw_rev": "9"}, {"Batch": "B-other"}, {"Location": "x"}):
        device = Device(endpoint)
        connection = connect(endpoint, f"prov-{serial}")
        try:
            client = RawClient(connection)
            token = device.certificate(client, serial)["certificateOwnershipToken"]
            assert denial(device.register(client, token, serial, **extra)) == DENIED, extra
        finally:
            disconnect(connection)
    assert set(hook_reasons(emulator, serial)) == {"UNEXPECTED_PARAMETER"}
    kind, _, _ = Device(endpoint).provision(serial)
    assert kind == "accepted"
    attributes = aws(endpoint, "iot").describe_thing(thingName=f"device-{serial}")["attributes"]
    assert attributes.get("model") != "m9" and attributes.get("hw_rev") != "9"


def test_every_refusal_is_the_same_answer(emulator: EmulatorProcess) -> None:
    """Was: a template failure answered 400 where an unknown serial answered 403, telling available serials
    from unknown ones. Unknown, taken, revoked, key mismatch, CN mismatch, bad parameter: one answer."""
    endpoint = emulator.endpoint
    dynamodb = aws(endpoint, "dynamodb")
    available, taken, revoked, attested = (new_serial(p) for p in ("AV", "TK", "RV", "AT"))
    for serial in (available, taken, revoked):
        seed(endpoint, serial)
    seed(endpoint, attested)
    dynamodb.update_item(
        TableName=endpoint.serial_table,
        Key={"pk": {"S": f"serial#{attested}"}},
        UpdateExpression="SET public_key_sha256 = :k",
        ExpressionAttributeValues={":k": {"S": Device(endpoint).key_sha256}},
    )
    assert Device(endpoint).provision(taken)[0] == "accepted"
    dynamodb.update_item(
        TableName=endpoint.serial_table,
        Key={"pk": {"S": f"serial#{revoked}"}},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "REVOKED"}},
    )
    attacker = Device(endpoint)
    answers = {}
    cases = {
        "unknown": (new_serial("UN"), None, {}),
        "taken": (taken, None, {}),
        "revoked": (revoked, None, {}),
        "key mismatch": (attested, None, {}),
        "cn mismatch": (available, "SOMEONE-ELSE", {}),
        "bad parameter": (available, None, {"model": "bad value!"}),
    }
    for case, (serial, common_name, extra) in cases.items():
        connection = connect(endpoint, f"prov-{serial}")
        try:
            client = RawClient(connection)
            token = attacker.certificate(client, common_name or serial)["certificateOwnershipToken"]
            answers[case] = attacker.register(client, token, serial, **extra)
        finally:
            disconnect(connection)
    assert {case: denial(reply) for case, reply in answers.items()} == dict.fromkeys(cases, DENIED)
    assert len({json.dumps(reply[1], sort_keys=True) for reply in answers.values()}) == 1, answers
    # The reason is in the hook's log (and metric), not in the answer.
    assert hook_reasons(emulator, attested)[-1] == "KEY_MISMATCH"
    assert hook_reasons(emulator, taken)[-1] == "TAKEN"
    assert serial_item(endpoint, available)["status"]["S"] == "AVAILABLE"


def test_a_certificate_named_for_one_serial_cannot_become_another(emulator: EmulatorProcess) -> None:
    endpoint = emulator.endpoint
    mine, other = new_serial("CN"), new_serial("CN")
    seed(endpoint, other)
    attacker = Device(endpoint)
    connection = connect(endpoint, f"prov-{other}")
    try:
        client = RawClient(connection)
        token = attacker.certificate(client, mine)["certificateOwnershipToken"]
        assert denial(attacker.register(client, token, other)) == DENIED
    finally:
        disconnect(connection)
    assert hook_reasons(emulator, other) == ["CN_MISMATCH"]
    assert Device(endpoint).provision(other)[0] == "accepted"


def test_with_attestation_a_leaked_claim_provisions_nothing(emulator: EmulatorProcess) -> None:
    """The factory published each device's public key with its serial, and the batch requires one: holding
    the claim (and the serial list) is not enough for any serial, with or without a recorded key."""
    endpoint = emulator.endpoint
    dynamodb = aws(endpoint, "dynamodb")
    batch = new_serial("BATCH")
    dynamodb.put_item(
        TableName=endpoint.serial_table,
        Item={"pk": {"S": f"batch#{batch}"}, "batch": {"S": batch}, "require_device_key": {"BOOL": True}},
    )
    genuine = {new_serial("ATT"): Device(endpoint) for _ in range(3)}
    for serial, device in genuine.items():
        seed(endpoint, serial)
        dynamodb.update_item(
            TableName=endpoint.serial_table,
            Key={"pk": {"S": f"serial#{serial}"}},
            UpdateExpression="SET public_key_sha256 = :k, #b = :b",
            ExpressionAttributeNames={"#b": "batch"},
            ExpressionAttributeValues={":k": {"S": device.key_sha256}, ":b": {"S": batch}},
        )
    unkeyed = new_serial("NOKEY")  # imported without a key, in a batch that requires one
    seed(endpoint, unkeyed)
    dynamodb.update_item(
        TableName=endpoint.serial_table,
        Key={"pk": {"S": f"serial#{unkeyed}"}},
        UpdateExpression="SET #b = :b",
        ExpressionAttributeNames={"#b": "batch"},
        ExpressionAttributeValues={":b": {"S": batch}},
    )
    for serial in [*genuine, unkeyed]:
        kind, body, _ = Device(endpoint).provision(serial)  # the attacker's own key, CN = the serial
        assert denial((kind, body)) == DENIED, serial
    assert [hook_reasons(emulator, s) for s in genuine] == [["KEY_MISMATCH"]] * len(genuine)
    assert hook_reasons(emulator, unkeyed) == ["KEY_REQUIRED"]
    assert not [t for t in aws(endpoint, "iot").list_things()["things"] if batch in json.dumps(t)]
    for serial, device in genuine.items():
        kind, body, _ = device.provision(serial)
        assert (kind, body["thingName"]) == ("accepted", f"device-{serial}")


# ----------------------------------------------------------------------------------------------- lifecycle


def _extra_claim(emulator: EmulatorProcess) -> tuple[bytes, bytes, str]:
    """A second claim credential of this template's claim policy, so the test can deactivate it."""
    endpoint = emulator.endpoint
    authority = CertificateAuthority.load_or_create(emulator.state_dir)
    issued = authority.issue_client_credential("claim line-test")
    iot = aws(endpoint, "iot")
    certificate_id = iot.register_certificate_without_ca(
        certificatePem=issued.certificate_pem, status="ACTIVE"
    )["certificateId"]
    arn = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["certificateArn"]
    claim_certificate_id = endpoint.raw["claims"]["line-a"]["certificate_id"]
    claim_arn = arn.rsplit("/", 1)[0] + "/" + claim_certificate_id
    for policy in iot.list_attached_policies(target=claim_arn)["policies"]:
        iot.attach_policy(policyName=policy["policyName"], target=arn)
    return issued.certificate_pem.encode(), issued.private_key_pem.encode(), certificate_id


def test_a_deactivated_claim_is_cut_off_and_cannot_come_back(emulator: EmulatorProcess) -> None:
    """Was: a claim made INACTIVE still provisioned over a connection opened before."""
    endpoint = emulator.endpoint
    cert_pem, key_pem, claim_id = _extra_claim(emulator)
    serial = new_serial("CLAIM")
    seed(endpoint, serial)
    dropped = threading.Event()
    connection = connect(endpoint, f"prov-{serial}", cert_pem=cert_pem, key_pem=key_pem, interrupted=dropped)
    try:
        aws(endpoint, "iot").update_certificate(certificateId=claim_id, newStatus="INACTIVE")
        assert dropped.wait(10), "the claim's open connection was not closed"
    finally:
        disconnect(connection)
    assert "AUTH_ERROR certificate INACTIVE" in emulator.log()
    with pytest.raises(Exception):  # noqa: B017 - refused at CONNECT, as any INACTIVE certificate
        disconnect(connect(endpoint, f"prov-{serial}", cert_pem=cert_pem, key_pem=key_pem))
    assert serial_item(endpoint, serial)["status"]["S"] == "AVAILABLE"


def test_a_device_certificate_an_operator_deactivates_is_cut_off_and_its_serial_kept(
    emulator: EmulatorProcess,
) -> None:
    """Was: its serial became takeable once the reservation timed out."""
    endpoint = emulator.endpoint
    serial = new_serial("OPS")
    seed(endpoint, serial)
    created, registered, key_pem = provision_json(endpoint, serial)
    dropped = threading.Event()
    device = connect(
        endpoint,
        registered.thing_name,
        cert_pem=created.certificate_pem.encode(),
        key_pem=key_pem,
        interrupted=dropped,
    )
    try:
        aws(endpoint, "iot").update_certificate(certificateId=created.certificate_id, newStatus="INACTIVE")
        assert dropped.wait(10), "the device's connection was not closed"
    finally:
        disconnect(device)
    # Its reservation grows old (an hour, well past reservation_timeout_s)...
    aws(endpoint, "dynamodb").update_item(
        TableName=endpoint.serial_table,
        Key={"pk": {"S": f"serial#{serial}"}},
        UpdateExpression="SET reserved_at = :old",
        ExpressionAttributeValues={":old": {"N": str(int(time.time() * 1000) - 3_600_000)}},
    )
    # ... and still nobody holding the claim can take the serial.
    kind, body, _ = Device(endpoint).provision(serial)
    assert denial((kind, body)) == DENIED
    assert hook_reasons(emulator, serial)[-1] == "TAKEN"
    assert serial_item(endpoint, serial)["certificate_id"]["S"] == created.certificate_id


# ------------------------------------------------------------------------------------------------ lost reply


def test_a_lost_reply_does_not_brick_the_device(emulator: EmulatorProcess) -> None:
    """Was: RegisterThing applied, its reply lost; the retry got InvalidCertificateOwnershipToken and every
    new CSR was TAKEN, forever. Now a new certificate for the same key is the same device."""
    endpoint = emulator.endpoint
    serial = new_serial("LOST")
    seed(endpoint, serial)
    device = Device(endpoint)
    connection = connect(endpoint, f"prov-{serial}")
    try:
        client = RawClient(connection)
        first = device.certificate(client, serial)
        for suffix in ("accepted", "rejected"):
            client.subscribe(f"{template_topic(endpoint, 'json')}/{suffix}")
        request = {
            "certificateOwnershipToken": first["certificateOwnershipToken"],
            "parameters": {"SerialNumber": serial},
        }
        client.publish(template_topic(endpoint, "json"), json.dumps(request).encode()).result(10)
    finally:
        disconnect(connection)  # the device loses power before the reply arrives
    assert wait_for(lambda: certificate_status(endpoint, first["certificateId"]) == "ACTIVE")

    retry = Device(endpoint, device.key)  # same key, reboots, asks again
    connection = connect(endpoint, f"prov-{serial}")
    try:
        client = RawClient(connection)
        spent = retry.register(client, first["certificateOwnershipToken"], serial)
        assert denial(spent) == ("rejected", 400, "InvalidCertificateOwnershipToken")
        second = retry.certificate(client, serial)
        kind, body = retry.register(client, second["certificateOwnershipToken"], serial)
    finally:
        disconnect(connection)
    assert (kind, body["thingName"]) == ("accepted", f"device-{serial}")
    assert hook_reasons(emulator, serial)[-1] == "ALLOWED_SAME_KEY"
    assert certificate_status(endpoint, first["certificateId"]) == "INACTIVE"
    assert certificate_status(endpoint, second["certificateId"]) == "ACTIVE"
    # The device connects as its thing with the new certificate; a clone with another key still cannot.
    disconnect(
        connect(
            endpoint, f"device-{serial}", cert_pem=second["certificatePem"].encode(), key_pem=device.key_pem
        )
    )
    assert denial(Device(endpoint).provision(serial)[:2]) == DENIED
