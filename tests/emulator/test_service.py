"""The provisioning service without sockets: a fake registry and fake hooks, every operation and rejection."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from emulator.provisioning import hook as hooks
from emulator.provisioning.ca import CertificateAuthority, certificate_id
from emulator.provisioning.errors import (
    AccessDenied,
    InvalidCertificateOwnershipToken,
    InvalidCertificateSigningRequest,
    InvalidParameters,
    TemplateDisabled,
    TemplateNotFound,
)
from emulator.provisioning.payloads import CreateCertificateFromCsrRequest, RegisterThingRequest
from emulator.provisioning.service import ProvisioningService, ProvisioningTemplate, Requester
from emulator.provisioning.template_engine import ProvisioningPlan
from emulator.provisioning.template_errors import TemplateEngineError
from emulator.provisioning.tokens import TokenStore
from emulator.registry.store import CertificateRecord
from tests.emulator.device import make_csr

TEMPLATE_NAME = "Fleet"
TEMPLATE_ARN = f"arn:aws:iot:us-east-1:123456789012:provisioningtemplate/{TEMPLATE_NAME}"
BODY: dict[str, Any] = {
    "Parameters": {
        "SerialNumber": {"Type": "String"},
        "AWS::IoT::Certificate::Id": {"Type": "String"},
        "Batch": {"Type": "String", "Default": "none"},
    },
    "Resources": {
        "thing": {
            "Type": "AWS::IoT::Thing",
            "Properties": {
                "ThingName": {"Fn::Join": ["", ["device-", {"Ref": "SerialNumber"}]]},
                "AttributePayload": {"batch": {"Ref": "Batch"}},
                "ThingGroups": ["provisioned"],
            },
        },
        "certificate": {
            "Type": "AWS::IoT::Certificate",
            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"},
        },
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "DevicePolicy"}},
    },
    "DeviceConfiguration": {"topic_root": "devices"},
}
CLAIM = Requester(client_id="prov-SN1", certificate_id="c" * 64)


@dataclass
class FakeRegistry:
    certificates: dict[str, CertificateRecord] = field(default_factory=dict)
    applied: list[tuple[ProvisioningPlan, str]] = field(default_factory=list)
    fail_apply: Exception | None = None

    def register_certificate(self, certificate_pem: str, status: str) -> CertificateRecord:
        cid = certificate_id(certificate_pem)
        record = CertificateRecord(
            cid, f"arn:aws:iot:us-east-1:123456789012:cert/{cid}", certificate_pem, status
        )
        self.certificates[cid] = record
        return record

    def certificate(self, certificate_id: str) -> CertificateRecord | None:
        return self.certificates.get(certificate_id)

    def delete_certificate(self, certificate_id: str) -> None:
        self.certificates.pop(certificate_id, None)

    def apply_plan(self, plan: ProvisioningPlan, certificate_id: str) -> None:
        if self.fail_apply is not None:
            raise self.fail_apply
        self.applied.append((plan, certificate_id))


class FakeHook:
    """Records events; answers with `answer` (a dict, or an exception to raise)."""

    def __init__(self, answer: Any = None, delay_s: float = 0.0) -> None:
        self.answer = {"allowProvisioning": True} if answer is None else answer
        self.delay_s = delay_s
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_service(
    authority: CertificateAuthority,
    *,
    hook: FakeHook | None = None,
    enabled: bool = True,
    clock: Clock | None = None,
    hook_timeout_s: float = 5.0,
) -> tuple[ProvisioningService, FakeRegistry, TokenStore]:
    registry = FakeRegistry()
    tokens = TokenStore(3600, clock=clock or time.monotonic)
    runner = hooks.callable_hook(hook, timeout_s=hook_timeout_s, workers=2) if hook is not None else None
    template = ProvisioningTemplate(TEMPLATE_NAME, TEMPLATE_ARN, BODY, enabled, runner)
    service = ProvisioningService(
        registry=registry, authority=authority, tokens=tokens, templates={TEMPLATE_NAME: template}
    )
    return service, registry, tokens


def csr_certificate(service: ProvisioningService) -> tuple[str, str]:
    """(certificate id, ownership token) of a fresh CreateCertificateFromCsr."""
    _, csr = make_csr("SN1")
    accepted = service.create_certificate_from_csr(CLAIM, CreateCertificateFromCsrRequest(csr))
    return accepted.certificate_id, accepted.certificate_ownership_token


def register(
    service: ProvisioningService, token: str, serial: str = "SN1", template: str = TEMPLATE_NAME, **extra: str
) -> Any:
    return service.register_thing(
        CLAIM, template, RegisterThingRequest(token, {"SerialNumber": serial, **extra})
    )


# ------------------------------------------------------------------------------ certificates


def test_create_certificate_from_csr_signs_the_csr_key_and_registers_it_pending(
    authority: CertificateAuthority,
) -> None:
    service, registry, _ = make_service(authority)
    key_pem, csr = make_csr("SN1")
    accepted = service.create_certificate_from_csr(CLAIM, CreateCertificateFromCsrRequest(csr))
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(accepted.certificate_pem.encode())
    key = serialization.load_pem_private_key(key_pem, None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert accepted.certificate_id == certificate_id(accepted.certificate_pem)
    assert registry.certificates[accepted.certificate_id].status == "PENDING_ACTIVATION"
    assert len(accepted.certificate_ownership_token) > 64
    assert set(accepted.body()) == {"certificateOwnershipToken", "certificateId", "certificatePem"}


@pytest.mark.parametrize(
    "csr", ["not a csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"]
)
def test_create_certificate_from_csr_rejects_an_invalid_csr(
    authority: CertificateAuthority, csr: str
) -> None:
    service, registry, _ = make_service(authority)
    with pytest.raises(InvalidCertificateSigningRequest) as info:
        service.create_certificate_from_csr(CLAIM, CreateCertificateFromCsrRequest(csr))
    assert info.value.status_code == 400
    assert registry.certificates == {}


def test_create_certificate_from_csr_rejects_a_weak_rsa_key(authority: CertificateAuthority) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    service, _, _ = make_service(authority)
    with pytest.raises(InvalidCertificateSigningRequest, match="2048"):
        service.create_certificate_from_csr(CLAIM, CreateCertificateFromCsrRequest(csr.decode()))


def test_create_keys_and_certificate_returns_a_matching_key_pair(authority: CertificateAuthority) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    service, registry, _ = make_service(authority)
    accepted = service.create_keys_and_certificate(CLAIM)
    cert = x509.load_pem_x509_certificate(accepted.certificate_pem.encode())
    key = serialization.load_pem_private_key(accepted.private_key.encode(), None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert registry.certificates[accepted.certificate_id].status == "PENDING_ACTIVATION"
    assert set(accepted.body()) == {
        "certificateId",
        "certificatePem",
        "privateKey",
        "certificateOwnershipToken",
    }


# ------------------------------------------------------------------------------ RegisterThing


def test_register_thing_calls_the_hook_with_aws_event_and_applies_the_plan(
    authority: CertificateAuthority,
) -> None:
    hook = FakeHook({"allowProvisioning": True, "parameterOverrides": {"Batch": "b7"}})
    service, registry, tokens = make_service(authority, hook=hook)
    cert_id, token = csr_certificate(service)
    accepted = register(service, token)
    assert accepted.thing_name == "device-SN1"
    assert accepted.device_configuration == {"topic_root": "devices"}
    assert accepted.body() == {"deviceConfiguration": {"topic_root": "devices"}, "thingName": "device-SN1"}
    (event,) = hook.events
    assert event == {
        "claimCertificateId": CLAIM.certificate_id,
        "certificateId": cert_id,
        "certificatePem": registry.certificates[cert_id].certificate_pem,
        "templateArn": TEMPLATE_ARN,
        "clientId": CLAIM.client_id,
        "parameters": {"SerialNumber": "SN1"},
    }
    ((plan, applied_id),) = registry.applied
    assert applied_id == cert_id
    assert plan.thing is not None and plan.thing.attributes == {"batch": "b7"}  # the hook's override
    assert plan.certificate is not None and plan.certificate.certificate_id == cert_id
    assert len(tokens) == 0  # spent


def test_a_device_cannot_name_another_certificate(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(authority, hook=FakeHook())
    cert_id, token = csr_certificate(service)
    register(service, token, **{"AWS::IoT::Certificate::Id": "f" * 64})
    ((plan, _),) = registry.applied
    assert plan.certificate is not None and plan.certificate.certificate_id == cert_id


def test_register_thing_without_a_hook_still_evaluates_the_template(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(authority)
    _, token = csr_certificate(service)
    assert register(service, token).thing_name == "device-SN1"
    assert len(registry.applied) == 1


def test_unknown_template_is_404(authority: CertificateAuthority) -> None:
    service, _, _ = make_service(authority, hook=FakeHook())
    _, token = csr_certificate(service)
    with pytest.raises(TemplateNotFound) as info:
        register(service, token, template="Other")
    assert (info.value.status_code, info.value.error_code) == (404, "ResourceNotFound")


def test_disabled_template_is_rejected(authority: CertificateAuthority) -> None:
    service, _, _ = make_service(authority, enabled=False)
    _, token = csr_certificate(service)
    with pytest.raises(TemplateDisabled):
        register(service, token)


@pytest.mark.parametrize("token", ["nope", "x" * 128])
def test_an_unknown_token_is_rejected(authority: CertificateAuthority, token: str) -> None:
    hook = FakeHook()
    service, registry, _ = make_service(authority, hook=hook)
    with pytest.raises(InvalidCertificateOwnershipToken) as info:
        register(service, token)
    assert info.value.status_code == 400
    assert hook.events == [] and registry.applied == []


def test_a_token_is_spent_by_a_successful_register_thing(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(authority, hook=FakeHook())
    _, token = csr_certificate(service)
    register(service, token)
    with pytest.raises(InvalidCertificateOwnershipToken):
        register(service, token)
    assert len(registry.applied) == 1


def test_a_token_expires(authority: CertificateAuthority) -> None:
    clock = Clock()
    service, registry, _ = make_service(authority, hook=FakeHook(), clock=clock)
    cert_id, token = csr_certificate(service)
    clock.now += 3600
    with pytest.raises(InvalidCertificateOwnershipToken, match="expired"):
        register(service, token)
    deleted = service.expire_tokens(lambda cid: registry.certificates.pop(cid, None) is not None)
    assert deleted == [cert_id] and cert_id not in registry.certificates


def test_a_token_is_bound_to_its_certificate(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(authority, hook=FakeHook())
    first_id, first_token = csr_certificate(service)
    second_id, _ = csr_certificate(service)
    register(service, first_token)
    ((_, applied_id),) = registry.applied
    assert applied_id == first_id != second_id


@pytest.mark.parametrize(
    "answer",
    [
        {"allowProvisioning": False},
        {"allowProvisioning": "true"},  # only the JSON boolean true allows
        {},
        ["allowProvisioning", True],  # not an object
        RuntimeError("boom"),
    ],
)
def test_hook_denial_or_error_is_access_denied_and_nothing_is_written(
    authority: CertificateAuthority, answer: Any
) -> None:
    hook = FakeHook(answer)
    service, registry, tokens = make_service(authority, hook=hook)
    _, token = csr_certificate(service)
    with pytest.raises(AccessDenied) as info:
        register(service, token)
    assert (info.value.status_code, info.value.error_code) == (403, "AccessDenied")
    assert registry.applied == []
    assert len(tokens) == 1  # not spent: the device may retry


def test_hook_timeout_is_access_denied(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(authority, hook=FakeHook(delay_s=1.0), hook_timeout_s=0.2)
    _, token = csr_certificate(service)
    started = time.monotonic()
    with pytest.raises(AccessDenied, match="did not answer"):
        register(service, token)
    assert time.monotonic() - started < 0.9
    assert registry.applied == []


def test_hook_with_malformed_overrides_is_access_denied(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(
        authority, hook=FakeHook({"allowProvisioning": True, "parameterOverrides": {"Batch": 7}})
    )
    _, token = csr_certificate(service)
    with pytest.raises(AccessDenied):
        register(service, token)
    assert registry.applied == []


def test_template_evaluation_failure_is_invalid_parameters(authority: CertificateAuthority) -> None:
    service, registry, tokens = make_service(authority, hook=FakeHook())
    _, token = csr_certificate(service)
    with pytest.raises(TemplateEngineError) as info:
        service.register_thing(CLAIM, TEMPLATE_NAME, RegisterThingRequest(token, {}))
    assert getattr(info.value, "error_code", None) == "InvalidParameters"
    assert getattr(info.value, "status_code", None) == 400
    assert "SerialNumber" in str(info.value)
    assert registry.applied == [] and len(tokens) == 1


def test_a_failed_apply_keeps_the_token_for_a_retry(authority: CertificateAuthority) -> None:
    service, registry, tokens = make_service(authority, hook=FakeHook())
    _, token = csr_certificate(service)
    registry.fail_apply = InvalidParameters("Thing group provisioned does not exist")
    with pytest.raises(InvalidParameters):
        register(service, token)
    registry.fail_apply = None
    assert register(service, token).thing_name == "device-SN1"
    assert len(tokens) == 0


def test_a_token_whose_certificate_was_deleted_is_rejected(authority: CertificateAuthority) -> None:
    service, registry, _ = make_service(authority, hook=FakeHook())
    cert_id, token = csr_certificate(service)
    registry.delete_certificate(cert_id)
    with pytest.raises(InvalidParameters, match="no longer exists"):
        register(service, token)
