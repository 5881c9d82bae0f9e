"""Create, (de)activate and delete one generated claim credential.

Create: iot:CreateKeysAndCertificate, then the certificate and its key go into one Secrets Manager secret
encrypted with the stack's KMS key. CloudFormation gets back only ids and ARNs (`Data`), so no key
material is ever in a template, an output or a log line. boto3 only: deploying needs no Docker.

Secret value (JSON, read by `fleetctl claim export`):
  {"claimName", "certificateId", "certificateArn", "certificatePem", "privateKey"}
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

CERTIFICATE_ID_RE = re.compile(r"^[0-9a-f]{64}$")
STATUSES = ("ACTIVE", "INACTIVE")


class ClaimCredentialError(Exception):
    """A request CloudFormation must see fail (the message becomes the stack event's reason)."""


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    request = event["RequestType"]
    props = _properties(event["ResourceProperties"])
    logger.info("%s claim credential %s (%s)", request, props["ClaimName"], props["Status"])
    if request == "Create":
        return create(props)
    certificate_id = event["PhysicalResourceId"]
    if request == "Update":
        old = event.get("OldResourceProperties", {})
        if old.get("ClaimName") != props["ClaimName"]:
            # A new name is a new credential; CloudFormation deletes the old one after this succeeds.
            return create(props)
        return update(certificate_id, props, old)
    if request == "Delete":
        delete(certificate_id, props)
        return {"PhysicalResourceId": certificate_id}
    raise ClaimCredentialError(f"unknown request type {request!r}")


def create(props: dict[str, str]) -> dict[str, Any]:
    iot, secrets = boto3.client("iot"), boto3.client("secretsmanager")
    created = iot.create_keys_and_certificate(setAsActive=props["Status"] == "ACTIVE")
    certificate_id, certificate_arn = created["certificateId"], created["certificateArn"]
    value = {
        "claimName": props["ClaimName"],
        "certificateId": certificate_id,
        "certificateArn": certificate_arn,
        "certificatePem": created["certificatePem"],
        "privateKey": created["keyPair"]["PrivateKey"],
    }
    try:
        secret = secrets.create_secret(
            Name=props["SecretName"],
            KmsKeyId=props["SecretKmsKeyId"],
            SecretString=json.dumps(value),
            Description=f"AWS IoT claim credential '{props['ClaimName']}': certificate and key",
        )
    except ClientError:
        # Nobody could ever read this key: do not leave a working certificate behind.
        _delete_certificate(iot, certificate_id, certificate_arn)
        raise
    return _result(certificate_id, certificate_arn, secret["ARN"])


def update(certificate_id: str, props: dict[str, str], old: dict[str, Any]) -> dict[str, Any]:
    iot, secrets = boto3.client("iot"), boto3.client("secretsmanager")
    iot.update_certificate(certificateId=certificate_id, newStatus=props["Status"])
    if old.get("SecretKmsKeyId") not in (None, props["SecretKmsKeyId"]):
        secrets.update_secret(SecretId=props["SecretName"], KmsKeyId=props["SecretKmsKeyId"])
    certificate_arn = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"][
        "certificateArn"
    ]
    secret_arn = secrets.describe_secret(SecretId=props["SecretName"])["ARN"]
    return _result(certificate_id, certificate_arn, secret_arn)


def delete(certificate_id: str, props: dict[str, str]) -> None:
    """Deactivate, detach and delete the certificate, then delete its secret; gone already is fine."""
    iot, secrets = boto3.client("iot"), boto3.client("secretsmanager")
    # A failed Create leaves CloudFormation a request id as physical id: nothing was made, nothing to delete.
    if CERTIFICATE_ID_RE.fullmatch(certificate_id):
        try:
            arn = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"][
                "certificateArn"
            ]
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
        else:
            _delete_certificate(iot, certificate_id, arn)
    try:
        # The certificate is deleted, so its key is worthless: no recovery window that would block
        # re-creating a credential of the same name.
        secrets.delete_secret(SecretId=props["SecretName"], ForceDeleteWithoutRecovery=True)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise


def _delete_certificate(iot: Any, certificate_id: str, certificate_arn: str) -> None:
    for policy in iot.list_attached_policies(target=certificate_arn).get("policies", []):
        iot.detach_policy(policyName=policy["policyName"], target=certificate_arn)
    iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
    iot.delete_certificate(certificateId=certificate_id, forceDelete=True)
    logger.info("deleted claim certificate %s", certificate_id)


def _result(certificate_id: str, certificate_arn: str, secret_arn: str) -> dict[str, Any]:
    return {
        "PhysicalResourceId": certificate_id,
        "Data": {"CertificateId": certificate_id, "CertificateArn": certificate_arn, "SecretArn": secret_arn},
    }


def _properties(raw: dict[str, Any]) -> dict[str, str]:
    props = {key: raw.get(key) for key in ("ClaimName", "Status", "SecretKmsKeyId", "SecretName")}
    missing = [key for key, value in props.items() if not isinstance(value, str) or not value]
    if missing:
        raise ClaimCredentialError(f"missing properties: {', '.join(missing)}")
    if props["Status"] not in STATUSES:
        raise ClaimCredentialError(f"Status must be one of {STATUSES}, not {props['Status']!r}")
    return props  # type: ignore[return-value]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
