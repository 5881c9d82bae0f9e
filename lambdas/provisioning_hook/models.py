"""Typed boundary of the hook: the event AWS IoT sends, the response it expects, the reasons we log."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# AWS certificate ids are 64 hex digits (SHA-256 of the DER certificate); moto uses the same form.
CERTIFICATE_ID_PATTERN = r"^[0-9a-fA-F]{64}$"
MAX_CLIENT_ID = 128  # AWS IoT's MQTT client-id limit
MAX_TEMPLATE_ARN = 2048
MAX_PARAMETER_KEY = 2048  # RegisterThing's documented limits (the MQTT API's own are UNCONFIRMED)
MAX_PARAMETER_VALUE = 4096


class Reason(StrEnum):
    """Why the hook decided what it did: a metric dimension and a log field, so keep the set small."""

    ALLOWED_NEW = "ALLOWED_NEW"
    ALLOWED_RETRY = "ALLOWED_RETRY"  # the same certificate again (its earlier answer was lost)
    ALLOWED_SAME_KEY = "ALLOWED_SAME_KEY"  # a new certificate of the reservation's key: the same device
    ALLOWED_TAKEOVER = "ALLOWED_TAKEOVER"
    ALLOWED_ROTATION = "ALLOWED_ROTATION"  # a provisioned thing's new certificate (the rotation template)
    MALFORMED_EVENT = "MALFORMED_EVENT"
    BAD_SERIAL = "BAD_SERIAL"
    UNEXPECTED_PARAMETER = "UNEXPECTED_PARAMETER"  # a parameter a device may not set
    CLAIM_INACTIVE = "CLAIM_INACTIVE"
    UNKNOWN_SERIAL = "UNKNOWN_SERIAL"
    REVOKED = "REVOKED"
    CLAIM_NOT_BOUND = "CLAIM_NOT_BOUND"
    CN_MISMATCH = "CN_MISMATCH"
    KEY_REQUIRED = "KEY_REQUIRED"  # attestation is required and the registry holds no key for the serial
    KEY_MISMATCH = "KEY_MISMATCH"
    CERTIFICATE_HOLDS_SERIAL = "CERTIFICATE_HOLDS_SERIAL"  # this certificate reserved another serial
    TAKEN = "TAKEN"
    ROTATION_REFUSED = "ROTATION_REFUSED"  # not that thing's current, ACTIVE, attached certificate asking
    KEY_NOT_NEW = "KEY_NOT_NEW"  # a rotation must bring a key the thing has not had
    REGISTRY_ERROR = "REGISTRY_ERROR"
    CONFIG_ERROR = "CONFIG_ERROR"

    @property
    def allows(self) -> bool:
        return self.value.startswith("ALLOWED_")


class HookEvent(BaseModel):
    """The pre-provisioning hook event, payload version 2020-04-01.

    Strict: a field of the wrong type is a malformed event, never coerced. Unknown fields are ignored
    so that AWS adding one does not turn every request into a denial.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", populate_by_name=True)

    claim_certificate_id: str = Field(alias="claimCertificateId", pattern=CERTIFICATE_ID_PATTERN)
    certificate_id: str = Field(alias="certificateId", pattern=CERTIFICATE_ID_PATTERN)
    # The new device certificate (public). Kept out of repr and never logged.
    certificate_pem: str | None = Field(default=None, alias="certificatePem", repr=False, max_length=65536)
    template_arn: str = Field(alias="templateArn", min_length=1, max_length=MAX_TEMPLATE_ARN)
    client_id: str = Field(alias="clientId", min_length=1, max_length=MAX_CLIENT_ID)
    parameters: dict[str, str] = Field(default_factory=dict)


class HookResponse(BaseModel):
    """What the hook returns to AWS IoT; overrides are added to the template parameters."""

    model_config = ConfigDict(frozen=True)

    allowProvisioning: bool  # noqa: N815 - AWS's field name
    parameterOverrides: dict[str, str] = Field(default_factory=dict)  # noqa: N815

    @classmethod
    def deny(cls) -> HookResponse:
        return cls(allowProvisioning=False, parameterOverrides={})

    def to_dict(self) -> dict[str, object]:
        return {
            "allowProvisioning": self.allowProvisioning,
            "parameterOverrides": dict(self.parameterOverrides),
        }
