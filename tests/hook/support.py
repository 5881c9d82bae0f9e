"""Helpers shared by the hook and fleetctl tests: the table, seeding, events, a serial moto server."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
TABLE = "fleet-serials"
REGION = "us-east-1"
CLAIM_ID = "0b1d2a5c7e3f4a6b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d"
OTHER_CLAIM_ID = "c" * 64
PEM_PLACEHOLDER = "GENERATED_AT_TEST_TIME"
HOOK_ENV = {
    "SERIAL_TABLE_NAME": TABLE,
    "SERIAL_PATTERN": r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$",
    "THING_NAME_PREFIX": "device-",
    "RESERVATION_TIMEOUT_S": "900",
    "TEMPLATE_ATTRIBUTES": "model,hw_rev",
    "POWERTOOLS_SERVICE_NAME": "provisioning-hook",
    "POWERTOOLS_METRICS_NAMESPACE": "FleetProvisioningTest",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@cache
def device_key(label: str) -> ec.EllipticCurvePrivateKey:
    """One key per label (by default a certificate id: different certificates, different keys)."""
    return ec.generate_private_key(ec.SECP256R1())


def key_sha256(label: str) -> str:
    """The registry's fingerprint of a label's key: SHA-256 of its DER SubjectPublicKeyInfo."""
    der = (
        device_key(label)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(der).hexdigest()


@cache
def device_certificate_pem(common_name: str = "SN-000001", key_label: str = "device") -> str:
    """A throwaway self-signed device certificate (public part only leaves this function)."""
    key = device_key(key_label)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_event(
    name: str,
    *,
    serial: str | None = None,
    certificate_id: str | None = None,
    claim_id: str | None = None,
    key: str | None = None,
    common_name: str | None = None,
) -> dict[str, Any]:
    """A captured event by name. Its certificate is made at test time with CN = the event's serial (or
    `common_name`) and the key named `key` (default: one key per certificate id)."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    if serial is not None:
        event["parameters"]["SerialNumber"] = serial
        event["clientId"] = f"prov-{serial}"
    if certificate_id is not None:
        event["certificateId"] = certificate_id
        if "AWS::IoT::Certificate::Id" in event["parameters"]:
            event["parameters"]["AWS::IoT::Certificate::Id"] = certificate_id
    if claim_id is not None:
        event["claimCertificateId"] = claim_id
    if event.get("certificatePem") == PEM_PLACEHOLDER:
        cn = common_name or str(event.get("parameters", {}).get("SerialNumber", "SN-000001"))
        if not 0 < len(cn.encode()) <= 64:  # X.509 caps a CN at 64; such serials are refused before the CN
            cn = "SN-not-a-serial"
        label = key or str(event.get("certificateId"))
        event["certificatePem"] = device_certificate_pem(cn, label)
    return event


def register_claim(iot: Any, certificate_id: str = CLAIM_ID, *, status: str = "ACTIVE") -> str:
    """A claim certificate in moto's IoT under the id the captured events carry.

    moto derives a certificate's id from its PEM; the captured events name a fixed claim id, so the
    certificate is registered and then filed under that id in moto's backend (tests only).
    """
    from moto.iot.models import iot_backends

    pem = device_certificate_pem(f"claim {certificate_id[:8]}", f"claim-{certificate_id}")
    registered = iot.register_certificate_without_ca(certificatePem=pem, status=status)["certificateId"]
    backend = iot_backends["123456789012"][REGION]
    certificate = backend.certificates.pop(registered)
    certificate.certificate_id = certificate_id
    certificate.arn = f"arn:aws:iot:{REGION}:123456789012:cert/{certificate_id}"
    backend.certificates[certificate_id] = certificate
    return certificate_id


def cert_id(n: int) -> str:
    return f"{n:064x}"


def create_table(dynamodb: Any, name: str = TABLE) -> None:
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )


def put_serial(
    dynamodb: Any,
    serial: str,
    *,
    status: str = "AVAILABLE",
    batch: str | None = None,
    attributes: dict[str, str] | None = None,
    certificate_id: str | None = None,
    reserved_at: int | None = None,
    public_key_sha256: str | None = None,
    table: str = TABLE,
) -> None:
    item: dict[str, Any] = {
        "pk": {"S": f"serial#{serial}"},
        "serial": {"S": serial},
        "status": {"S": status},
        "attributes": {"M": {k: {"S": v} for k, v in (attributes or {}).items()}},
        "imported_at": {"S": "2026-01-01T00:00:00+00:00"},
    }
    if batch is not None:
        item["batch"] = {"S": batch}
    if certificate_id is not None:
        item["certificate_id"] = {"S": certificate_id}
    if reserved_at is not None:
        item["reserved_at"] = {"N": str(reserved_at)}
    if public_key_sha256 is not None:
        item["public_key_sha256"] = {"S": public_key_sha256}
    dynamodb.put_item(TableName=table, Item=item)


def put_batch(
    dynamodb: Any,
    batch: str,
    claim_ids: list[str] | None,
    *,
    require_device_key: bool | None = None,
    table: str = TABLE,
) -> None:
    item: dict[str, Any] = {"pk": {"S": f"batch#{batch}"}, "batch": {"S": batch}}
    if claim_ids:
        item["claim_certificate_ids"] = {"SS": claim_ids}
    if require_device_key is not None:
        item["require_device_key"] = {"BOOL": require_device_key}
    dynamodb.put_item(TableName=table, Item=item)


def get_serial_item(dynamodb: Any, serial: str, table: str = TABLE) -> dict[str, Any] | None:
    return dynamodb.get_item(
        TableName=table,
        Key={"pk": {"S": f"serial#{serial}"}},  # type: ignore[no-any-return]
        ConsistentRead=True,
    ).get("Item")


def get_certificate_item(dynamodb: Any, certificate_id: str, table: str = TABLE) -> dict[str, Any] | None:
    return dynamodb.get_item(
        TableName=table,
        Key={"pk": {"S": f"cert#{certificate_id}"}},  # type: ignore[no-any-return]
        ConsistentRead=True,
    ).get("Item")


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    # Threads share stdout: print() writes text and newline separately, so a line may be torn.
    parsed = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


def decision_log(stdout: str) -> list[dict[str, Any]]:
    """The hook's decision log lines from captured stdout."""
    return [line for line in _json_lines(stdout) if line.get("message") == "provisioning decision"]


def metric_lines(stdout: str) -> list[dict[str, Any]]:
    return [line for line in _json_lines(stdout) if "_aws" in line]


@contextmanager
def serial_moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (ephemeral port) that handles ONE request at a time.

    moto's in-process backends are not atomic under threads (update_item reads, checks the
    condition, then writes, with no lock), and ThreadedMotoServer serves each request on its own
    thread. Real DynamoDB serializes conditional writes per item; a single-threaded server is the
    faithful stand-in. Werkzeug speaks HTTP/1.0 when single-threaded, so each request is its own
    connection and none can hog the server.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    # The server's backends are moto's process-wide ones: start and leave them empty.
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    try:
        yield url
    finally:
        urllib.request.urlopen(reset, timeout=10).close()
        server.shutdown()
        thread.join(5)
        server.server_close()


@contextmanager
def hung_endpoint() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)  # held open, never read, never answered
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


def run_hook(event: Any, capsys: Any) -> tuple[dict[str, Any], str]:
    """Invoke the handler and return its answer and everything it printed (log line, EMF metrics)."""
    import logging
    import sys

    from provisioning_hook.handler import lambda_handler, logger

    capsys.readouterr()
    # Powertools binds its stream handler to the sys.stdout of import time; aim it at capsys's.
    for h in logger._logger.handlers:
        if isinstance(h, logging.StreamHandler):
            h.stream = sys.stdout  # assignment, not setStream: that would flush a stream pytest closed
    response = lambda_handler(event, None)
    return response, capsys.readouterr().out
