"""A simulated device for the end-to-end tests: the real awsiotsdk client (MQTT 3.1.1, mTLS).

JSON requests go through `IotIdentityClientV2`; CBOR, which the Python SDK does not speak, is
encoded with cbor2 and published over the same awscrt connection (what the simulator does too).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from awscrt import mqtt, mqtt_request_response
from awsiot import iotidentity, mqtt_connection_builder
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TIMEOUT_S = 15


@dataclass
class Endpoint:
    host: str
    port: int
    ca_file: str
    claim_cert_file: str
    claim_key_file: str
    template_name: str
    aws_endpoint_url: str
    serial_table: str
    region: str
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Endpoint:
        raw = json.loads(path.read_text())
        return cls(
            raw["host"],
            raw["port"],
            raw["ca_file"],
            raw["claim_cert_file"],
            raw["claim_key_file"],
            raw["template_name"],
            raw["aws_endpoint_url"],
            raw["serial_table"],
            raw["region"],
            raw,
        )


def connect(
    endpoint: Endpoint,
    client_id: str,
    cert_file: str | None = None,
    key_file: str | None = None,
    *,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    interrupted: threading.Event | None = None,
) -> mqtt.Connection:
    """A connected MQTT 3.1.1 connection; raises if the broker refuses or hangs up.
    `interrupted` is set when the broker later drops the connection."""
    common: dict[str, Any] = dict(
        endpoint=endpoint.host,
        port=endpoint.port,
        ca_filepath=endpoint.ca_file,
        client_id=client_id,
        clean_session=True,
        keep_alive_secs=30,
        reconnect_min_timeout_secs=30,
        reconnect_max_timeout_secs=60,
        on_connection_interrupted=(lambda *_, **__: interrupted.set()) if interrupted is not None else None,
    )
    if cert_pem is not None and key_pem is not None:
        connection = mqtt_connection_builder.mtls_from_bytes(
            cert_bytes=cert_pem, pri_key_bytes=key_pem, **common
        )
    else:
        connection = mqtt_connection_builder.mtls_from_path(
            cert_filepath=cert_file or endpoint.claim_cert_file,
            pri_key_filepath=key_file or endpoint.claim_key_file,
            **common,
        )
    try:
        connection.connect().result(TIMEOUT_S)
    except BaseException:
        # Still release the native connection's resources.
        try:
            connection.disconnect().result(5)
        except Exception:
            pass
        raise
    return connection


def disconnect(connection: mqtt.Connection) -> None:
    try:
        connection.disconnect().result(TIMEOUT_S)
    except Exception:
        pass


def identity_client(connection: mqtt.Connection) -> iotidentity.IotIdentityClientV2:
    options = mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4, max_streaming_subscriptions=0, operation_timeout_in_seconds=20
    )
    return iotidentity.IotIdentityClientV2(connection, options)


def make_csr(common_name: str) -> tuple[bytes, str]:
    """(private key PEM, CSR PEM): an EC P-256 key, as the Renesas RX devices make in their secure element."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


class RawClient:
    """Publishes raw payloads and collects what arrives on subscribed topics (CBOR, malformed input)."""

    def __init__(self, connection: mqtt.Connection) -> None:
        self.connection = connection
        self.messages: list[tuple[str, bytes]] = []
        self._arrived = threading.Condition()

    def _on_message(self, topic: str, payload: bytes, **_: Any) -> None:
        with self._arrived:
            self.messages.append((topic, bytes(payload)))
            self._arrived.notify_all()

    def subscribe(self, topic_filter: str) -> mqtt.QoS | None:
        future, _ = self.connection.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE, self._on_message)
        return future.result(TIMEOUT_S)["qos"]

    def publish(self, topic: str, payload: bytes) -> Future[Any]:
        future, _ = self.connection.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        return future

    def wait_for(self, count: int, timeout: float = TIMEOUT_S) -> list[tuple[str, bytes]]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def request(self, topic: str, payload: bytes, timeout: float = TIMEOUT_S) -> tuple[str, Any]:
        """Subscribe to accepted/rejected, publish, wait for one reply: (accepted|rejected, decoded body)."""
        fmt = topic.rsplit("/", 1)[-1]
        for suffix in ("accepted", "rejected"):
            self.subscribe(f"{topic}/{suffix}")
        before = len(self.messages)
        self.publish(topic, payload).result(TIMEOUT_S)
        messages = self.wait_for(before + 1, timeout)
        if len(messages) <= before:
            raise TimeoutError(f"no reply on {topic}")
        reply_topic, body = messages[before]
        decoded = cbor2.loads(body) if fmt == "cbor" else json.loads(body)
        return reply_topic.rsplit("/", 1)[-1], decoded


def encode(body: dict[str, Any], fmt: str) -> bytes:
    return cbor2.dumps(body) if fmt == "cbor" else json.dumps(body).encode()
