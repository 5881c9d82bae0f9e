"""The registry on moto's in-process backends: RegisterThing applied all or nothing, connection identity."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from emulator.provisioning.ca import CertificateAuthority
from emulator.provisioning.errors import InvalidParameters
from emulator.provisioning.template_engine import evaluate_template
from emulator.provisioning.template_errors import ResourceConflictError
from emulator.registry.store import Registry
from tests.emulator.test_service import BODY

DEVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
}


@pytest.fixture()
def registry() -> Iterator[Registry]:
    from moto import settings

    config = settings.default_user_config.setdefault("iot", {})
    previous = config.get("use_valid_cert")
    config["use_valid_cert"] = True
    # A random account of its own: moto's backends are process-global.
    registry = Registry(region="eu-west-1", account_id=f"{random.randrange(10**11, 10**12)}")
    registry.iot.create_thing_group("provisioned", None, {})
    registry.iot.create_policy("DevicePolicy", json.dumps(DEVICE_POLICY))
    yield registry
    if previous is None:
        config.pop("use_valid_cert", None)
    else:
        config["use_valid_cert"] = previous


def pending_certificate(registry: Registry, authority: CertificateAuthority) -> str:
    credential = authority.issue_client_credential("device")
    return registry.register_certificate(credential.certificate_pem, "PENDING_ACTIVATION").certificate_id


def plan_for(certificate_id: str, serial: str = "SN1", body: dict | None = None, **parameters: str):  # noqa: ANN201
    return evaluate_template(
        body or BODY, {"SerialNumber": serial, **parameters}, certificate_id=certificate_id
    )


def test_apply_creates_thing_activates_and_attaches(
    registry: Registry, authority: CertificateAuthority
) -> None:
    cert_id = pending_certificate(registry, authority)
    registry.apply_plan(plan_for(cert_id, Batch="b1"), cert_id)
    thing = registry.iot.things[registry.thing_arn("device-SN1")]
    assert thing.attributes == {"batch": "b1"}
    group = registry.iot.describe_thing_group("provisioned")
    assert thing.arn in group.things
    assert registry.certificate(cert_id).status == "ACTIVE"  # type: ignore[union-attr]
    identity = registry.identity(cert_id, "device-SN1")
    assert identity is not None
    assert identity.thing_names == ("device-SN1",)
    assert [name for name, _ in identity.policy_documents] == ["DevicePolicy"]
    assert identity.thing_attributes == {"batch": "b1"}


def test_a_missing_policy_undoes_everything(registry: Registry, authority: CertificateAuthority) -> None:
    cert_id = pending_certificate(registry, authority)
    body = json.loads(json.dumps(BODY))
    body["Resources"]["policy"]["Properties"]["PolicyName"] = "NoSuchPolicy"
    with pytest.raises(InvalidParameters, match="NoSuchPolicy"):
        registry.apply_plan(plan_for(cert_id, body=body), cert_id)
    assert registry.thing_names() == []
    assert registry.certificate(cert_id).status == "PENDING_ACTIVATION"  # type: ignore[union-attr]
    assert registry.iot.describe_thing_group("provisioned").things == {}
    identity = registry.identity(cert_id)
    assert identity is not None and identity.policy_documents == () and identity.thing_names == ()


def test_a_missing_thing_group_is_refused_before_any_write(
    registry: Registry, authority: CertificateAuthority
) -> None:
    cert_id = pending_certificate(registry, authority)
    body = json.loads(json.dumps(BODY))
    body["Resources"]["thing"]["Properties"]["ThingGroups"] = ["absent"]
    with pytest.raises(InvalidParameters, match="absent"):
        registry.apply_plan(plan_for(cert_id, body=body), cert_id)
    assert registry.thing_names() == []


def test_an_existing_thing_is_restored_when_a_later_step_fails(
    registry: Registry, authority: CertificateAuthority
) -> None:
    body = json.loads(json.dumps(BODY))
    body["Resources"]["thing"]["OverrideSettings"] = {"AttributePayload": "REPLACE"}
    first = pending_certificate(registry, authority)
    registry.apply_plan(plan_for(first, body=body, Batch="old"), first)
    second = pending_certificate(registry, authority)
    body["Resources"]["policy"]["Properties"]["PolicyName"] = "NoSuchPolicy"
    with pytest.raises(InvalidParameters):
        registry.apply_plan(plan_for(second, body=body, Batch="new"), second)
    thing = registry.iot.things[registry.thing_arn("device-SN1")]
    assert thing.attributes == {"batch": "old"}
    assert registry.certificate(second).status == "PENDING_ACTIVATION"  # type: ignore[union-attr]


def test_override_fail_on_an_existing_thing_is_a_conflict(
    registry: Registry, authority: CertificateAuthority
) -> None:
    body = json.loads(json.dumps(BODY))
    body["Resources"]["thing"]["OverrideSettings"] = {"AttributePayload": "FAIL"}
    first = pending_certificate(registry, authority)
    registry.apply_plan(plan_for(first, body=body, Batch="a"), first)
    second = pending_certificate(registry, authority)
    with pytest.raises(ResourceConflictError):
        registry.apply_plan(plan_for(second, body=body, Batch="b"), second)
    assert registry.certificate(second).status == "PENDING_ACTIVATION"  # type: ignore[union-attr]


def test_token_expiry_deletes_only_unactivated_unattached_certificates(
    registry: Registry, authority: CertificateAuthority
) -> None:
    pending = pending_certificate(registry, authority)
    active = pending_certificate(registry, authority)
    registry.apply_plan(plan_for(active), active)
    assert registry.delete_unactivated_certificate(pending) is True
    assert registry.certificate(pending) is None
    assert registry.delete_unactivated_certificate(active) is False
    assert registry.certificate(active) is not None


def test_certificate_ids_are_sha256_of_der(registry: Registry, authority: CertificateAuthority) -> None:
    from emulator.provisioning.ca import certificate_id

    credential = authority.issue_client_credential("x")
    record = registry.register_certificate(credential.certificate_pem, "ACTIVE")
    assert record.certificate_id == certificate_id(credential.certificate_pem) == credential.certificate_id
