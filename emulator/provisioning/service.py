"""The fleet-provisioning service: CreateKeysAndCertificate, CreateCertificateFromCsr, RegisterThing.

It knows nothing of MQTT: a front end decodes the request, passes who asked (`Requester`), and sends
back the reply this returns or the ProvisioningError this raises. Blocking (moto, crypto, the hook):
call it from a worker thread, never from the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.provisioning import hook as hooks
from emulator.provisioning.ca import CertificateAuthority, IssuedCredential
from emulator.provisioning.errors import (
    AccessDenied,
    InvalidParameters,
    ProvisioningError,
    TemplateDisabled,
    TemplateNotFound,
)
from emulator.provisioning.payloads import (
    CreateCertificateFromCsrAccepted,
    CreateCertificateFromCsrRequest,
    CreateKeysAndCertificateAccepted,
    RegisterThingAccepted,
    RegisterThingRequest,
)
from emulator.provisioning.template_engine import (
    CERTIFICATE_ID_PARAMETER,
    ProvisioningPlan,
    evaluate_template,
)
from emulator.provisioning.tokens import TokenStore
from emulator.registry.store import PENDING_ACTIVATION, CertificateRecord

log = logging.getLogger("emulator.provisioning.service")


@dataclass(frozen=True)
class Requester:
    """Who sent the request: the MQTT client id and the certificate of its connection (the claim)."""

    client_id: str
    certificate_id: str


@dataclass(frozen=True)
class ProvisioningTemplate:
    """One template as a request sees it: its current default version's body and settings."""

    name: str
    arn: str
    body: Mapping[str, Any]  # parsed once, when its version was created
    enabled: bool = True
    hook: hooks.Hook | None = None
    template_type: str = "FLEET_PROVISIONING"
    # Set when the template names a hook that cannot run here: every request is refused rather than
    # provisioned without the hook the user asked for.
    hook_problem: str | None = None


class TemplateSource(Protocol):
    """Where the service reads templates, once per request (a dict, or the control plane's catalog)."""

    def get(self, name: str) -> ProvisioningTemplate | None: ...


class RegistryPort(Protocol):
    """What the service needs of the registry (emulator.registry.store.Registry; a fake in unit tests)."""

    def register_certificate(self, certificate_pem: str, status: str) -> CertificateRecord: ...
    def certificate(self, certificate_id: str) -> CertificateRecord | None: ...
    def delete_certificate(self, certificate_id: str) -> None: ...
    def apply_plan(self, plan: ProvisioningPlan, certificate_id: str) -> None: ...


RejectionObserver = Callable[[Requester, str, ProvisioningError], None]


class ProvisioningService:
    def __init__(
        self,
        *,
        registry: RegistryPort,
        authority: CertificateAuthority,
        tokens: TokenStore,
        templates: TemplateSource,
        claim_expired: Callable[[str], bool] = lambda _certificate_id: False,
        on_rejection: RejectionObserver | None = None,
    ) -> None:
        """`templates` is read on every request, so changes to it apply at once. `claim_expired(id)`
        says whether a connection's certificate is a temporary provisioning claim past its 5 minutes.
        `on_rejection(requester, operation, error)` sees every refusal (the hook's reason, for logs)."""
        self._registry = registry
        self._authority = authority
        self.tokens = tokens
        self._templates = templates
        self._claim_expired = claim_expired
        self._on_rejection = on_rejection

    # ---------------------------------------------------------------- certificates
    def create_keys_and_certificate(self, requester: Requester) -> CreateKeysAndCertificateAccepted:
        self._check_claim(requester)
        issued: IssuedCredential = self._authority.create_keys_and_certificate()
        record = self._registry.register_certificate(issued.certificate_pem, PENDING_ACTIVATION)
        token = self.tokens.issue(record.certificate_id)
        return CreateKeysAndCertificateAccepted(
            record.certificate_id, issued.certificate_pem, issued.private_key_pem, token
        )

    def create_certificate_from_csr(
        self, requester: Requester, request: CreateCertificateFromCsrRequest
    ) -> CreateCertificateFromCsrAccepted:
        self._check_claim(requester)
        pem, _ = self._authority.sign_csr(request.certificate_signing_request)
        record = self._registry.register_certificate(pem, PENDING_ACTIVATION)
        token = self.tokens.issue(record.certificate_id)
        return CreateCertificateFromCsrAccepted(record.certificate_id, pem, token)

    # ---------------------------------------------------------------- RegisterThing
    def register_thing(
        self, requester: Requester, template_name: str, request: RegisterThingRequest
    ) -> RegisterThingAccepted:
        try:
            self._check_claim(requester)
            template = self._templates.get(template_name)
            if template is None:
                raise TemplateNotFound(f"Template {template_name} does not exist")
            if not template.enabled:
                raise TemplateDisabled(f"Template {template_name} is disabled")
            if template.template_type != "FLEET_PROVISIONING":
                raise TemplateDisabled(f"Template {template_name} is a {template.template_type} template")
            if template.hook_problem is not None:
                # The template names a hook that cannot run here (see docs/emulator.md): never
                # provision without it.
                raise AccessDenied(f"The pre-provisioning hook of template {template_name} cannot run")
            grant = self.tokens.claim(request.certificate_ownership_token)
            try:
                accepted = self._register(requester, template, grant.certificate_id, request.parameters)
            except BaseException:
                self.tokens.release(grant)
                raise
        except ProvisioningError as exc:
            if self._on_rejection is not None:
                self._on_rejection(requester, "RegisterThing", exc)
            raise
        self.tokens.spend(grant)
        return accepted

    def _check_claim(self, requester: Requester) -> None:
        # AWS: a temporary claim's certificate must be obtained within its 5 minutes. A connection
        # opened before the claim expired gets no more than that (UNCONFIRMED: AWS's answer then).
        if self._claim_expired(requester.certificate_id):
            raise AccessDenied("The temporary provisioning claim has expired")

    def _register(
        self,
        requester: Requester,
        template: ProvisioningTemplate,
        certificate_id: str,
        parameters: Mapping[str, str],
    ) -> RegisterThingAccepted:
        certificate = self._registry.certificate(certificate_id)
        if certificate is None:
            # The token outlived its certificate (deleted through the registry API, say).
            raise InvalidParameters(f"Certificate {certificate_id} no longer exists")
        parameters = dict(parameters)
        if template.hook is not None:
            event = hooks.build_event(
                claim_certificate_id=requester.certificate_id,
                certificate_id=certificate_id,
                certificate_pem=certificate.certificate_pem,
                template_arn=template.arn,
                client_id=requester.client_id,
                parameters=parameters,
            )
            decision = template.hook.invoke(event)
            # The hook's overrides are added to the request's parameters (pre-provisioning-hook.html).
            parameters.update(decision.parameter_overrides)
        parameters.pop(CERTIFICATE_ID_PARAMETER, None)
        plan = evaluate_template(template.body, parameters, certificate_id=certificate_id)
        self._registry.apply_plan(plan, certificate_id)
        return RegisterThingAccepted(plan.thing.thing_name if plan.thing else None, plan.device_configuration)

    # ---------------------------------------------------------------- token expiry
    def expire_tokens(self, delete_unactivated: Callable[[str], bool]) -> list[str]:
        """Drop expired tokens; their certificates go too if never activated. Returns deleted ids."""
        deleted = []
        for certificate_id in self.tokens.expire():
            if delete_unactivated(certificate_id):
                deleted.append(certificate_id)
        return deleted
