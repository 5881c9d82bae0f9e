"""The custom resource behind generated claim credentials, against moto's IoT, KMS and Secrets Manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from claim_credential import handler
from moto import mock_aws

POLICY = "Fleet-ClaimPolicy"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        iot = boto3.client("iot")
        iot.create_policy(
            policyName=POLICY,
            policyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
                }
            ),
        )
        key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        yield {"iot": iot, "secrets": boto3.client("secretsmanager"), "key_arn": key_arn}


def _props(aws: dict[str, Any], name: str = "line-a", status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "ServiceToken": "arn:token",
        "ClaimName": name,
        "Status": status,
        "SecretKmsKeyId": aws["key_arn"],
        "SecretName": f"Fleet/claim-credentials/{name}",
    }


def _create(aws: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return handler.on_event({"RequestType": "Create", "ResourceProperties": _props(aws, **kw)})


def _status(aws: dict[str, Any], certificate_id: str) -> str:
    return aws["iot"].describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]


def test_create_keeps_certificate_and_key_in_the_secret_and_returns_only_ids(aws: dict[str, Any]) -> None:
    result = _create(aws)
    data = result["Data"]
    assert set(data) == {"CertificateId", "CertificateArn", "SecretArn"}
    assert result["PhysicalResourceId"] == data["CertificateId"]
    assert "PRIVATE" not in json.dumps(result) and "CERTIFICATE" not in json.dumps(result)
    assert _status(aws, data["CertificateId"]) == "ACTIVE"
    secret = aws["secrets"].describe_secret(SecretId=data["SecretArn"])
    assert secret["Name"] == "Fleet/claim-credentials/line-a"
    assert secret["KmsKeyId"] == aws["key_arn"]
    value = json.loads(aws["secrets"].get_secret_value(SecretId=data["SecretArn"])["SecretString"])
    assert set(value) == {"claimName", "certificateId", "certificateArn", "certificatePem", "privateKey"}
    assert value["certificateId"] == data["CertificateId"] and value["claimName"] == "line-a"
    assert "BEGIN CERTIFICATE" in value["certificatePem"] and "PRIVATE KEY" in value["privateKey"]


def test_create_inactive_claim(aws: dict[str, Any]) -> None:
    result = _create(aws, status="INACTIVE")
    assert _status(aws, result["Data"]["CertificateId"]) == "INACTIVE"


def test_update_switches_status_and_keeps_the_same_credential(aws: dict[str, Any]) -> None:
    created = _create(aws)
    certificate_id = created["PhysicalResourceId"]
    for status in ("INACTIVE", "ACTIVE"):
        result = handler.on_event(
            {
                "RequestType": "Update",
                "PhysicalResourceId": certificate_id,
                "ResourceProperties": _props(aws, status=status),
                "OldResourceProperties": _props(aws),
            }
        )
        assert result == created
        assert _status(aws, certificate_id) == status


def test_update_with_a_new_name_makes_a_new_credential(aws: dict[str, Any]) -> None:
    created = _create(aws)
    result = handler.on_event(
        {
            "RequestType": "Update",
            "PhysicalResourceId": created["PhysicalResourceId"],
            "ResourceProperties": _props(aws, name="line-z"),
            "OldResourceProperties": _props(aws),
        }
    )
    assert result["PhysicalResourceId"] != created["PhysicalResourceId"]
    assert aws["secrets"].describe_secret(SecretId=result["Data"]["SecretArn"])["Name"].endswith("/line-z")


def test_delete_detaches_deactivates_and_deletes_certificate_and_secret(aws: dict[str, Any]) -> None:
    created = _create(aws)
    certificate_id, data = created["PhysicalResourceId"], created["Data"]
    aws["iot"].attach_policy(policyName=POLICY, target=data["CertificateArn"])
    handler.on_event(
        {"RequestType": "Delete", "PhysicalResourceId": certificate_id, "ResourceProperties": _props(aws)}
    )
    with pytest.raises(ClientError) as caught:
        aws["iot"].describe_certificate(certificateId=certificate_id)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert aws["iot"].list_targets_for_policy(policyName=POLICY)["targets"] == []
    with pytest.raises(ClientError):
        aws["secrets"].describe_secret(SecretId=data["SecretArn"])
    # Deleting twice (a retried stack deletion) is not an error.
    handler.on_event(
        {"RequestType": "Delete", "PhysicalResourceId": certificate_id, "ResourceProperties": _props(aws)}
    )


def test_delete_after_a_failed_create_has_nothing_to_delete(aws: dict[str, Any]) -> None:
    result = handler.on_event(
        {"RequestType": "Delete", "PhysicalResourceId": "a-request-id", "ResourceProperties": _props(aws)}
    )
    assert result == {"PhysicalResourceId": "a-request-id"}


def test_create_that_cannot_store_the_key_leaves_no_certificate(aws: dict[str, Any]) -> None:
    aws["secrets"].create_secret(Name="Fleet/claim-credentials/line-a", SecretString="taken")
    with pytest.raises(ClientError):
        _create(aws)
    assert aws["iot"].list_certificates()["certificates"] == []


@pytest.mark.parametrize("props", [{"Status": "REVOKED"}, {"SecretName": ""}, {"ClaimName": None}])
def test_bad_properties_fail_the_request(aws: dict[str, Any], props: dict[str, Any]) -> None:
    with pytest.raises(handler.ClaimCredentialError):
        handler.on_event({"RequestType": "Create", "ResourceProperties": {**_props(aws), **props}})
    assert aws["iot"].list_certificates()["certificates"] == []
