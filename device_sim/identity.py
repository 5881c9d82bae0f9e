"""The three fleet-provisioning operations over one claim connection, in JSON or in CBOR, over MQTT 3.1.1
or MQTT 5 alike (device_sim/transport.py's `Connection`).

JSON goes through the AWS SDK's `IotIdentityClientV2` (request-response client, QoS 1), built on the
connection's awscrt client (`mqtt.Connection` or `mqtt5.Client`). The SDK has no CBOR, so `CborIdentity`
does what the Renesas RX and FreeRTOS devices do over the same connection: subscribe to `/accepted` and
`/rejected`, wait for the SUBACK, publish the cbor2 request (QoS 1), read the reply.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import cbor2
from awscrt import mqtt_request_response
from awsiot import V2ServiceException, iotidentity

from device_sim.crt import classify
from device_sim.errors import DeviceFailure, Rejected

if TYPE_CHECKING:
    from device_sim.transport import Connection

# What the request-response client reports for a refused SUBACK and for a subscription cut off by a lost
# connection alike; `JsonIdentity._subscription_refused` tells the two apart.
SUBSCRIBE_FAILURE = "AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE"
PROBE_TIMEOUT_S = 5.0

CREATE_FROM_CSR = "CreateCertificateFromCsr"
CREATE_KEYS = "CreateKeysAndCertificate"
REGISTER_THING = "RegisterThing"


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_id: str
    certificate_pem: str
    ownership_token: str
    private_key_pem: str | None = None  # CreateKeysAndCertificate only


@dataclass(frozen=True)
class Registration:
    thing_name: str
    device_configuration: dict[str, str] = field(default_factory=dict)


class IdentityClient(Protocol):
    async def create_certificate_from_csr(self, csr_pem: str) -> IssuedCertificate: ...

    async def create_keys_and_certificate(self) -> IssuedCertificate: ...

    async def register_thing(
        self, template_name: str, ownership_token: str, parameters: dict[str, str]
    ) -> Registration: ...


def _topics(fmt: str, template_name: str = "") -> dict[str, str]:
    return {
        CREATE_FROM_CSR: f"$aws/certificates/create-from-csr/{fmt}",
        CREATE_KEYS: f"$aws/certificates/create/{fmt}",
        REGISTER_THING: f"$aws/provisioning-templates/{template_name}/provision/{fmt}",
    }


def _issued(operation: str, reply: dict[str, Any]) -> IssuedCertificate:
    try:
        issued = IssuedCertificate(
            certificate_id=str(reply["certificateId"]),
            certificate_pem=str(reply["certificatePem"]),
            ownership_token=str(reply["certificateOwnershipToken"]),
            private_key_pem=None if reply.get("privateKey") is None else str(reply["privateKey"]),
        )
    except (KeyError, TypeError) as exc:
        raise DeviceFailure("malformed_reply", f"{operation}: the accepted reply lacks {exc}") from None
    if operation == CREATE_KEYS and not issued.private_key_pem:
        raise DeviceFailure("malformed_reply", f"{operation}: the accepted reply has no privateKey")
    return issued


def _registration(reply: dict[str, Any]) -> Registration:
    thing_name = reply.get("thingName")
    if not isinstance(thing_name, str) or not thing_name:
        raise DeviceFailure("malformed_reply", f"{REGISTER_THING}: the accepted reply has no thingName")
    config = reply.get("deviceConfiguration") or {}
    if not isinstance(config, dict):
        raise DeviceFailure("malformed_reply", f"{REGISTER_THING}: deviceConfiguration is not a map")
    return Registration(thing_name, {str(k): str(v) for k, v in config.items()})


class JsonIdentity:
    """`IotIdentityClientV2` over the claim connection."""

    def __init__(self, connection: Connection, timeout_s: float) -> None:
        self._connection = connection
        self._timeout_s = timeout_s
        options = mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=2,
            max_streaming_subscriptions=0,
            operation_timeout_in_seconds=max(1, int(timeout_s)),
        )
        self._client = iotidentity.IotIdentityClientV2(connection.protocol_client, options)

    async def _call(self, operation: str, future: Any, topic: str) -> Any:
        try:
            # The request-response client times out by itself; the outer wait is a backstop.
            return await self._connection.settle(future, self._timeout_s + 5, operation)
        except V2ServiceException as exc:
            error = exc.modeled_error
            if error is not None:
                raise Rejected(
                    operation, error.status_code, error.error_code or "", error.error_message or ""
                ) from None
            failure: BaseException = exc.inner_error or exc
        except BaseException as exc:
            failure = exc
        if (
            getattr(failure, "name", None) == SUBSCRIBE_FAILURE
            and not self._connection.interrupted  # a lost connection: a retry on a new one may work
            and (refusal := await self._subscription_refusal(f"{topic}/accepted", operation)) is not None
        ):
            raise refusal
        raise classify(failure, operation) from None

    async def _subscription_refusal(self, topic: str, operation: str) -> DeviceFailure | None:
        """The endpoint's refusal of TOPIC, if it refuses it: the request-response client's subscribe
        failed, and it does not say whether a SUBACK refused it (no template by that name, or a claim
        policy that does not allow the topic: retrying cannot help) or the connection dropped under it (a
        retry may). One plain SUBSCRIBE on the same connection asks the endpoint (its failure names the
        topic, and over MQTT 5 the reason code); anything but a refusal counts as a drop."""
        try:
            await asyncio.wait_for(self._connection.subscribe([topic], None, operation), PROBE_TIMEOUT_S)
        except DeviceFailure as exc:
            return exc if exc.kind == "subscribe_refused" else None
        except BaseException:  # noqa: BLE001 - not connected, timed out: not a refusal
            return None
        self._connection.unsubscribe([topic])
        return None

    async def create_certificate_from_csr(self, csr_pem: str) -> IssuedCertificate:
        request = iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr_pem)
        topic = _topics("json")[CREATE_FROM_CSR]
        response = await self._call(CREATE_FROM_CSR, self._client.create_certificate_from_csr(request), topic)
        return _issued(
            CREATE_FROM_CSR,
            {
                "certificateId": response.certificate_id,
                "certificatePem": response.certificate_pem,
                "certificateOwnershipToken": response.certificate_ownership_token,
            },
        )

    async def create_keys_and_certificate(self) -> IssuedCertificate:
        request = iotidentity.CreateKeysAndCertificateRequest()
        response = await self._call(
            CREATE_KEYS, self._client.create_keys_and_certificate(request), _topics("json")[CREATE_KEYS]
        )
        return _issued(
            CREATE_KEYS,
            {
                "certificateId": response.certificate_id,
                "certificatePem": response.certificate_pem,
                "certificateOwnershipToken": response.certificate_ownership_token,
                "privateKey": response.private_key,
            },
        )

    async def register_thing(
        self, template_name: str, ownership_token: str, parameters: dict[str, str]
    ) -> Registration:
        request = iotidentity.RegisterThingRequest(
            template_name=template_name, certificate_ownership_token=ownership_token, parameters=parameters
        )
        topic = _topics("json", template_name)[REGISTER_THING]
        response = await self._call(REGISTER_THING, self._client.register_thing(request), topic)
        return _registration(
            {"thingName": response.thing_name, "deviceConfiguration": response.device_configuration}
        )


class CborIdentity:
    """The same operations with cbor2 payloads on the `/cbor` topics, over the same connection."""

    def __init__(self, connection: Connection, timeout_s: float) -> None:
        self._connection = connection
        self._timeout_s = timeout_s

    async def _request(self, operation: str, topic: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[tuple[str, bytes]] = loop.create_future()

        def on_message(topic: str, payload: bytes) -> None:
            # awscrt calls back on its event-loop thread; hand the message to asyncio's thread.
            try:
                loop.call_soon_threadsafe(deliver, topic, payload)
            except RuntimeError:  # the event loop is closed: the run is over
                pass

        def deliver(topic: str, payload: bytes) -> None:
            if not reply.done():  # the first reply wins; a duplicate (QoS 1 redelivery) is dropped
                reply.set_result((topic, payload))

        accepted, rejected = f"{topic}/accepted", f"{topic}/rejected"
        try:
            await self._connection.subscribe((accepted, rejected), on_message, operation)
            body = b"" if payload is None else cbor2.dumps(payload)
            await self._connection.publish(topic, body, operation)
            reply_topic, reply_payload = await self._connection.settle(reply, self._timeout_s, operation)
        except (DeviceFailure, Rejected):
            raise
        except BaseException as exc:
            raise classify(exc, operation) from None
        finally:
            self._connection.unsubscribe((accepted, rejected))
        try:
            decoded = cbor2.loads(reply_payload) if reply_payload else {}
        except (cbor2.CBORDecodeError, ValueError) as exc:
            raise DeviceFailure("malformed_reply", f"{operation}: the reply is not CBOR ({exc})") from None
        if not isinstance(decoded, dict):
            raise DeviceFailure("malformed_reply", f"{operation}: the reply is not a CBOR map")
        if reply_topic == rejected:
            raise Rejected(
                operation,
                decoded.get("statusCode"),
                str(decoded.get("errorCode") or ""),
                str(decoded.get("errorMessage") or ""),
            )
        return decoded

    async def create_certificate_from_csr(self, csr_pem: str) -> IssuedCertificate:
        topic = _topics("cbor")[CREATE_FROM_CSR]
        reply = await self._request(CREATE_FROM_CSR, topic, {"certificateSigningRequest": csr_pem})
        return _issued(CREATE_FROM_CSR, reply)

    async def create_keys_and_certificate(self) -> IssuedCertificate:
        # The request payload is empty by the API; an empty CBOR map is what the embedded demos send.
        reply = await self._request(CREATE_KEYS, _topics("cbor")[CREATE_KEYS], {})
        return _issued(CREATE_KEYS, reply)

    async def register_thing(
        self, template_name: str, ownership_token: str, parameters: dict[str, str]
    ) -> Registration:
        topic = _topics("cbor", template_name)[REGISTER_THING]
        reply = await self._request(
            REGISTER_THING, topic, {"certificateOwnershipToken": ownership_token, "parameters": parameters}
        )
        return _registration(reply)


def identity_client(fmt: str, connection: Connection, timeout_s: float) -> IdentityClient:
    """The operations in FMT over CONNECTION (a claim connection, or a device's own for a rotation)."""
    if fmt == "json":
        return JsonIdentity(connection, timeout_s)
    if fmt == "cbor":
        return CborIdentity(connection, timeout_s)
    raise ValueError(fmt)


def telemetry_payload(serial: str, thing_name: str) -> bytes:
    return json.dumps({"serial": serial, "thing": thing_name, "event": "first-boot"}).encode()
