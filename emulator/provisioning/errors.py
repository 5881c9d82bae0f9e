"""Errors the provisioning service answers with: each carries AWS's status code and error code.

Like moto's `exceptions.py`: the MQTT adapter turns any of these (and any unexpected exception, as
InternalFailure) into the operation's `/rejected` reply. Only `InvalidCertificateOwnershipToken` and
`InvalidParameters` have been seen from the real service; the other codes are UNCONFIRMED and chosen
to read like AWS's control-plane errors, which is what a user would search for.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """A request the service refuses; `status_code`/`error_code` go into the rejected reply."""

    status_code = 400
    error_code = "InvalidRequest"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPayload(ProvisioningError):
    """Malformed JSON or CBOR, a missing field, a field of the wrong type."""

    error_code = "InvalidPayload"


class PayloadTooLarge(ProvisioningError):
    """Over AWS IoT's 128 KB message limit (AWS itself drops the connection; see docs/emulator.md)."""

    error_code = "PayloadTooLarge"


class InvalidCertificateSigningRequest(ProvisioningError):
    error_code = "InvalidCertificateSigningRequest"


class InvalidCertificateOwnershipToken(ProvisioningError):
    """Observed from AWS: 400 / InvalidCertificateOwnershipToken (aws-iot-device-sdk-js-v2#69)."""

    error_code = "InvalidCertificateOwnershipToken"


class InvalidParameters(ProvisioningError):
    """Observed from AWS for template evaluation failures ("Cannot resolve reference value: ...")."""

    error_code = "InvalidParameters"


class TemplateNotFound(ProvisioningError):
    status_code = 404
    error_code = "ResourceNotFound"


class TemplateDisabled(ProvisioningError):
    status_code = 400
    error_code = "InvalidRequest"


class AccessDenied(ProvisioningError):
    """The pre-provisioning hook denied, failed or timed out ("ACCESS_DENIED" in AWS's docs)."""

    status_code = 403
    error_code = "AccessDenied"


class ResourceConflict(ProvisioningError):
    """OverrideSettings FAIL met an existing resource (AWS: ResourceConflictsException)."""

    status_code = 409
    error_code = "ResourceConflictsException"


class InternalFailure(ProvisioningError):
    status_code = 500
    error_code = "InternalFailure"


def as_provisioning_error(exc: BaseException) -> ProvisioningError:
    """Any exception as a rejection: ours as is, others with status_code/error_code (the template and
    policy engines' errors) keep theirs, everything else becomes InternalFailure."""
    if isinstance(exc, ProvisioningError):
        return exc
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    if isinstance(status, int) and isinstance(code, str):
        err = ProvisioningError(str(getattr(exc, "message", None) or exc))
        err.status_code = status
        err.error_code = code
        return err
    return InternalFailure("An internal error occurred")
