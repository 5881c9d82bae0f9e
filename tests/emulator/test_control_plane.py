"""The provisioning-template control plane and CreateProvisioningClaim with boto3 against `python -m emulator
up`, and what the next MQTT RegisterThing (the real awsiotsdk client) sees of each change.

One emulator of its own (it disables the stack's template), with temporary claims that live 10 s.

One file over 400 lines: one emulator process of its own serves all these tests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from awscrt import mqtt
from awsiot import V2ServiceException, iotidentity
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import TIMEOUT_S, Endpoint, connect, disconnect, identity_client, make_csr
from tests.emulator.test_e2e import new_serial, seed

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("control-plane")]

CLAIM_TTL_S = 10.0
ROLE = "arn:aws:iam::123456789012:role/provisioning-role"


@pytest.fixture(scope="module")
def control(cloud_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(
        cloud_assembly, tmp_path_factory.mktemp("control-state"), "--claim-ttl-s", str(CLAIM_TTL_S)
    )
    yield process
    process.stop()


def iot(endpoint: Endpoint, *, validate: bool = True) -> Any:
    import boto3

    return boto3.client(
        "iot",
        endpoint_url=endpoint.aws_endpoint_url,
        region_name=endpoint.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(parameter_validation=validate, retries={"mode": "standard", "max_attempts": 1}),
    )


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = raised.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def stack_body(endpoint: Endpoint) -> dict[str, Any]:
    return json.loads(
        iot(endpoint).describe_provisioning_template(templateName=endpoint.template_name)["templateBody"]
    )


def hook_arn(endpoint: Endpoint) -> str:
    return iot(endpoint).describe_provisioning_template(templateName=endpoint.template_name)[
        "preProvisioningHook"
    ]["targetArn"]


def provision(
    endpoint: Endpoint,
    serial: str,
    *,
    template: str | None = None,
    client_id: str | None = None,
    claim: dict[str, Any] | None = None,
) -> tuple[Any, Any, bytes]:
    """(RegisterThing response, CreateCertificateFromCsr response, device key) over one claim
    connection: the stack's claim, or a temporary claim from CreateProvisioningClaim."""
    credentials: dict[str, Any] = {}
    if claim is not None:
        credentials = {
            "cert_pem": claim["certificatePem"].encode(),
            "key_pem": claim["keyPair"]["PrivateKey"].encode(),
        }
    connection = connect(endpoint, client_id or f"prov-{serial}", **credentials)
    try:
        client = identity_client(connection)
        key_pem, csr = make_csr(serial)
        created = client.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr)
        ).result(TIMEOUT_S)
        registered = client.register_thing(
            iotidentity.RegisterThingRequest(
                template_name=template or endpoint.template_name,
                certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": serial},
            )
        ).result(TIMEOUT_S)
        return registered, created, key_pem
    finally:
        disconnect(connection)


def rejected(call: Any) -> tuple[int, str]:
    with pytest.raises(V2ServiceException) as info:
        call()
    error = info.value.modeled_error
    return error.status_code, error.error_code


# ------------------------------------------------------------------------------ the stack's template


def test_the_stacks_template_is_listed_with_its_hook_and_role(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    client = iot(endpoint)
    listed = {t["templateName"]: t for t in client.list_provisioning_templates()["templates"]}
    assert listed[endpoint.template_name]["enabled"] is True
    assert listed[endpoint.template_name]["type"] == "FLEET_PROVISIONING"
    described = client.describe_provisioning_template(templateName=endpoint.template_name)
    assert described["templateArn"].endswith(f":provisioningtemplate/{endpoint.template_name}")
    assert described["provisioningRoleArn"].startswith("arn:aws:iam::123456789012:role/")
    assert described["preProvisioningHook"]["payloadVersion"] == "2020-04-01"
    assert ":function:" in described["preProvisioningHook"]["targetArn"]
    assert described["defaultVersionId"] == 1
    assert stack_body(endpoint)["DeviceConfiguration"] == {
        "topic_root": "devices",
        "telemetry_interval_s": "60",
    }
    versions = client.list_provisioning_template_versions(templateName=endpoint.template_name)["versions"]
    assert [(v["versionId"], v["isDefaultVersion"]) for v in versions] == [(1, True)]


def test_disabling_the_template_refuses_the_next_register_thing(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    serial = new_serial("DIS")
    seed(endpoint, serial)
    client = iot(endpoint)
    connection = connect(endpoint, f"prov-{serial}")
    try:
        identity = identity_client(connection)
        created = identity.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr(serial)[1])
        ).result(TIMEOUT_S)
        request = iotidentity.RegisterThingRequest(
            template_name=endpoint.template_name,
            certificate_ownership_token=created.certificate_ownership_token,
            parameters={"SerialNumber": serial},
        )
        client.update_provisioning_template(templateName=endpoint.template_name, enabled=False)
        try:
            assert rejected(lambda: identity.register_thing(request).result(TIMEOUT_S)) == (
                400,
                "InvalidRequest",
            )
        finally:
            client.update_provisioning_template(templateName=endpoint.template_name, enabled=True)
        # The refused request did not spend the token: the same one works once enabled again.
        assert identity.register_thing(request).result(TIMEOUT_S).thing_name == f"device-{serial}"
    finally:
        disconnect(connection)


def test_a_new_default_version_is_the_one_evaluated(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    client = iot(endpoint)
    body = stack_body(endpoint)
    body["DeviceConfiguration"] = {"topic_root": "fleet-v2", "telemetry_interval_s": "30"}
    version = client.create_provisioning_template_version(
        templateName=endpoint.template_name, templateBody=json.dumps(body), setAsDefault=True
    )
    try:
        assert version["isDefaultVersion"] is True and version["versionId"] >= 2
        serial = new_serial("V2")
        seed(endpoint, serial)
        registered, _, _ = provision(endpoint, serial)
        assert registered.device_configuration == {"topic_root": "fleet-v2", "telemetry_interval_s": "30"}
    finally:
        client.update_provisioning_template(templateName=endpoint.template_name, defaultVersionId=1)
        client.delete_provisioning_template_version(
            templateName=endpoint.template_name, versionId=version["versionId"]
        )
    serial = new_serial("V1")
    seed(endpoint, serial)
    assert provision(endpoint, serial)[0].device_configuration["topic_root"] == "devices"


# ------------------------------------------------------------------------------ created templates


def test_create_describe_update_and_delete_a_template(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    client = iot(endpoint)
    name = f"Created-{uuid.uuid4().hex[:8]}"
    body = json.dumps(stack_body(endpoint))
    created = client.create_provisioning_template(
        templateName=name,
        description="made with boto3",
        templateBody=body,
        provisioningRoleArn=ROLE,
        preProvisioningHook={"targetArn": hook_arn(endpoint)},
        tags=[{"Key": "team", "Value": "factory"}],
    )
    assert (created["templateName"], created["defaultVersionId"]) == (name, 1)
    described = client.describe_provisioning_template(templateName=name)
    assert described["enabled"] is False and described["templateBody"] == body
    assert described["preProvisioningHook"] == {
        "targetArn": hook_arn(endpoint),
        "payloadVersion": "2020-04-01",
    }
    with pytest.raises(ClientError) as exists:
        client.create_provisioning_template(templateName=name, templateBody=body, provisioningRoleArn=ROLE)
    assert error_of(exists) == (409, "ResourceAlreadyExistsException")

    client.update_provisioning_template(
        templateName=name, description="updated", enabled=True, provisioningRoleArn=ROLE + "-2"
    )
    client.update_provisioning_template(templateName=name, removePreProvisioningHook=True)
    described = client.describe_provisioning_template(templateName=name)
    assert (described["description"], described["enabled"], described["provisioningRoleArn"]) == (
        "updated",
        True,
        ROLE + "-2",
    )
    assert "preProvisioningHook" not in described
    assert described["lastModifiedDate"] >= described["creationDate"]

    client.delete_provisioning_template(templateName=name)
    with pytest.raises(ClientError) as gone:
        client.describe_provisioning_template(templateName=name)
    assert error_of(gone) == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as gone_again:
        client.delete_provisioning_template(templateName=name)
    assert error_of(gone_again) == (404, "ResourceNotFoundException")


def test_invalid_requests_get_aws_errors(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    client = iot(endpoint, validate=False)  # what another SDK or a raw request could send
    body = json.dumps(stack_body(endpoint))
    cases = [
        {"templateName": "x" * 37, "templateBody": body, "provisioningRoleArn": ROLE},
        {"templateName": "no spaces", "templateBody": body, "provisioningRoleArn": ROLE},
        {"templateName": "BigBody", "templateBody": " " * 10_241, "provisioningRoleArn": ROLE},
        {"templateName": "NotJson", "templateBody": "{", "provisioningRoleArn": ROLE},
        {"templateName": "NoRole", "templateBody": body, "provisioningRoleArn": "arn:aws:iam::1:r"},
        {
            "templateName": "OtherHook",
            "templateBody": body,
            "provisioningRoleArn": ROLE,
            "preProvisioningHook": {"targetArn": "arn:aws:lambda:us-east-1:123456789012:function:elsewhere"},
        },
    ]
    for request in cases:
        with pytest.raises(ClientError) as raised:
            client.create_provisioning_template(**request)
        assert error_of(raised) == (400, "InvalidRequestException"), request["templateName"]
        if request["templateName"] == "OtherHook":
            assert "cannot be run by the emulator" in raised.value.response["Error"]["Message"]
    names = {t["templateName"] for t in client.list_provisioning_templates()["templates"]}
    assert not names & {c["templateName"] for c in cases}


def test_versions_limit_default_and_pagination(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    client = iot(endpoint)
    name = f"Versions-{uuid.uuid4().hex[:8]}"
    body = json.dumps(stack_body(endpoint))
    client.create_provisioning_template(templateName=name, templateBody=body, provisioningRoleArn=ROLE)
    for _ in range(4):
        client.create_provisioning_template_version(templateName=name, templateBody=body)
    with pytest.raises(ClientError) as limit:
        client.create_provisioning_template_version(templateName=name, templateBody=body)
    assert error_of(limit) == (409, "VersionsLimitExceededException")
    with pytest.raises(ClientError) as default:
        client.delete_provisioning_template_version(templateName=name, versionId=1)
    assert error_of(default) == (409, "DeleteConflictException")
    client.update_provisioning_template(templateName=name, defaultVersionId=5)
    client.delete_provisioning_template_version(templateName=name, versionId=1)
    version = client.describe_provisioning_template_version(templateName=name, versionId=5)
    assert version["isDefaultVersion"] is True and version["templateBody"] == body
    with pytest.raises(ClientError) as missing:
        client.describe_provisioning_template_version(templateName=name, versionId=1)
    assert error_of(missing) == (404, "ResourceNotFoundException")
    pages = client.get_paginator("list_provisioning_template_versions").paginate(
        templateName=name, PaginationConfig={"PageSize": 2}
    )
    assert [v["versionId"] for page in pages for v in page["versions"]] == [2, 3, 4, 5]
    listed = client.get_paginator("list_provisioning_templates").paginate(PaginationConfig={"PageSize": 1})
    assert name in [t["templateName"] for page in listed for t in page["templates"]]
    client.delete_provisioning_template(templateName=name)


# ------------------------------------------------------------------------------ trusted user


def test_a_temporary_claim_provisions_a_device_on_a_created_template_with_the_stack_hook(
    control: EmulatorProcess,
) -> None:
    endpoint = control.endpoint
    client = iot(endpoint)
    name = f"Trusted-{uuid.uuid4().hex[:8]}"
    client.create_provisioning_template(
        templateName=name,
        templateBody=json.dumps(stack_body(endpoint)),
        provisioningRoleArn=ROLE,
        enabled=True,
        preProvisioningHook={"targetArn": hook_arn(endpoint)},
    )
    claim = client.create_provisioning_claim(templateName=name)
    assert len(claim["certificateId"]) == 64 and "BEGIN PUBLIC KEY" in claim["keyPair"]["PublicKey"]
    assert 0 < claim["expiration"].timestamp() - time.time() <= CLAIM_TTL_S
    listed = [c["certificateId"] for c in client.list_certificates()["certificates"]]
    assert claim["certificateId"] not in listed  # AWS: not in the account's certificate list
    # Not listed, but described: the stack's hook asks whether a request's claim is ACTIVE (UNCONFIRMED).
    described = client.describe_certificate(certificateId=claim["certificateId"])["certificateDescription"]
    assert described["status"] == "ACTIVE"

    # The created template runs the stack's hook: an unknown serial is denied by it, a seeded one passes.
    unknown = new_serial("TU")
    assert rejected(
        lambda: provision(endpoint, unknown, template=name, client_id=f"app-{unknown}", claim=claim)
    ) == (403, "AccessDenied")
    serial = new_serial("TU")
    seed(endpoint, serial)
    registered, created, key_pem = provision(
        endpoint, serial, template=name, client_id=f"app-{serial}", claim=claim
    )
    assert registered.thing_name == f"device-{serial}"
    device = connect(
        endpoint, registered.thing_name, cert_pem=created.certificate_pem.encode(), key_pem=key_pem
    )
    disconnect(device)
    client.delete_provisioning_template(templateName=name)


def test_a_temporary_claim_stops_working_when_it_expires(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    client = iot(endpoint)
    claim = client.create_provisioning_claim(templateName=endpoint.template_name)
    credentials = {
        "cert_pem": claim["certificatePem"].encode(),
        "key_pem": claim["keyPair"]["PrivateKey"].encode(),
    }
    connection = connect(endpoint, f"trusted-{uuid.uuid4().hex[:8]}", **credentials)
    try:
        identity = identity_client(connection)
        csr = iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=make_csr("SN-T")[1])
        identity.create_certificate_from_csr(csr).result(TIMEOUT_S)  # within its 10 s
        time.sleep(max(0.0, claim["expiration"].timestamp() - time.time()) + 0.5)
        # AWS: the certificate must be obtained within the claim's lifetime; afterwards, even on a
        # connection opened before, nothing more is served.
        assert rejected(lambda: identity.create_certificate_from_csr(csr).result(TIMEOUT_S)) == (
            403,
            "AccessDenied",
        )
    finally:
        disconnect(connection)
    with pytest.raises(Exception):  # noqa: B017 - awscrt reports the hang-up as its own error type
        connect(endpoint, f"trusted-{uuid.uuid4().hex[:8]}", **credentials)
    assert "certificate is EXPIRED" in control.log()


def test_a_claim_for_a_missing_or_disabled_template_is_refused(control: EmulatorProcess) -> None:
    client = iot(control.endpoint)
    with pytest.raises(ClientError) as missing:
        client.create_provisioning_claim(templateName="NoSuchTemplate")
    assert error_of(missing) == (404, "ResourceNotFoundException")
    name = f"Off-{uuid.uuid4().hex[:8]}"
    client.create_provisioning_template(
        templateName=name, templateBody=json.dumps(stack_body(control.endpoint)), provisioningRoleArn=ROLE
    )
    with pytest.raises(ClientError) as disabled:
        client.create_provisioning_claim(templateName=name)
    assert error_of(disabled) == (400, "InvalidRequestException")
    client.delete_provisioning_template(templateName=name)


def test_the_rejection_line_names_the_hooks_reason_and_request_id(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    serial = new_serial("LOG")  # never seeded: the hook denies it
    client_id = f"prov-{serial}"
    assert rejected(lambda: provision(endpoint, serial, client_id=client_id)) == (403, "AccessDenied")
    deadline = time.monotonic() + 5
    line = ""
    while time.monotonic() < deadline and not line:
        line = next((x for x in control.log().splitlines() if f"rejected client={client_id} " in x), "")
        time.sleep(0.1)
    assert "code=AccessDenied " in line and " hook_reason=" in line, line
    request_id = line.rsplit("request_id=", 1)[1].split()[0].strip('"')
    # The same request id is in the hook's own decision line (stdout, as CloudWatch Logs would hold).
    decisions = [json.loads(x) for x in control.log().splitlines() if x.startswith("{") and request_id in x]
    decision = next(d for d in decisions if d.get("request_id") == request_id)
    assert line.endswith(f"hook_reason={decision['reason']} request_id={request_id}")


def test_the_claim_connection_subscribes_only_where_its_template_allows(control: EmulatorProcess) -> None:
    endpoint = control.endpoint
    claim = iot(endpoint).create_provisioning_claim(templateName=endpoint.template_name)
    connection = connect(
        endpoint,
        f"trusted-{uuid.uuid4().hex[:8]}",
        cert_pem=claim["certificatePem"].encode(),
        key_pem=claim["keyPair"]["PrivateKey"].encode(),
    )
    try:
        allowed = f"$aws/provisioning-templates/{endpoint.template_name}/provision/json/accepted"
        future, _ = connection.subscribe(allowed, mqtt.QoS.AT_LEAST_ONCE, lambda **_: None)
        assert future.result(TIMEOUT_S)["qos"] == mqtt.QoS.AT_LEAST_ONCE
        other, _ = connection.subscribe(
            "$aws/provisioning-templates/Other/provision/json/accepted",
            mqtt.QoS.AT_LEAST_ONCE,
            lambda **_: None,
        )
        with pytest.raises(mqtt.SubscribeError):
            other.result(TIMEOUT_S)
    finally:
        disconnect(connection)
