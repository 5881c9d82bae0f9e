"""Errors of provisioning-template evaluation; like moto's exceptions they carry AWS's status and code.

The service turns each into a RegisterThing `/rejected` reply: {"statusCode", "errorCode", "errorMessage"}.
"""

from __future__ import annotations


class TemplateEngineError(Exception):
    """Base of every error the template engine raises; `message` is what the device is told."""

    status_code: int = 400
    error_code: str = "InvalidParameters"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemplateError(TemplateEngineError):
    """The template cannot be evaluated with these parameters (bad template, missing parameter, bad value).

    UNCONFIRMED: AWS documents no error list for RegisterThing over MQTT. `InvalidParameters` with a
    message such as "Cannot resolve reference value: ..." is what devices report for a parameter the
    template cannot resolve (errors.py uses the same code); the emulator answers every template
    evaluation failure with it and puts the precise reason in the message.
    """

    status_code = 400
    error_code = "InvalidParameters"


class ResourceConflictError(TemplateEngineError):
    """An `OverrideSettings` value of FAIL met an existing resource that differs from the template.

    The code is the one the provisioning-template guide names (`ResourceConflictsException`); the status
    409 is UNCONFIRMED (AWS's conventional status for a conflict).
    """

    status_code = 409
    error_code = "ResourceConflictsException"
