"""Claim credentials, several at once (one per factory line or batch), each can be set inactive."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CustomResource
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from constructs import Construct, IConstruct

from infra import names
from infra.claim_provider import ClaimCredentialProvider
from infra.config import ClaimCredential, FleetConfig

CLAIM_RESOURCE_TYPE = "Custom::ClaimCredential"


@dataclass(frozen=True)
class ClaimCertificate:
    """What the rest of the stack knows of a claim credential: ids and ARNs, never key material."""

    name: str
    active: bool
    certificate_id: str
    certificate_arn: str
    secret_arn: str | None  # generated mode: certificate + key in Secrets Manager


class ClaimCredentials(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FleetConfig,
        key: kms.IKey,
        claim_policy_name: str,
        claim_policy: IConstruct,
    ) -> None:
        super().__init__(scope, construct_id)
        generated = [claim for claim in config.claim_credentials if claim.mode == "generated"]
        self.provider: ClaimCredentialProvider | None = None
        if generated:
            self.provider = ClaimCredentialProvider(
                self,
                "Provider",
                config=config,
                key=key,
                claim_policy_name=claim_policy_name,
                secret_names=[names.claim_secret_name(config, claim.name) for claim in generated],
            )
        self.certificates: list[ClaimCertificate] = []
        for claim in config.claim_credentials:
            scope_ = Construct(self, names.pascal(claim.name))
            if claim.mode == "csr":
                certificate = self._from_csr(scope_, claim)
            else:
                assert self.provider is not None
                certificate = self._generated(scope_, claim, config, key, self.provider)
            attachment = iot.CfnPolicyPrincipalAttachment(
                scope_,
                "ClaimPolicyAttachment",
                policy_name=claim_policy_name,
                principal=certificate.certificate_arn,
            )
            attachment.node.add_dependency(claim_policy)
            self.certificates.append(certificate)

    @staticmethod
    def _from_csr(scope: Construct, claim: ClaimCredential) -> ClaimCertificate:
        # The key stays in the factory HSM: AWS only ever sees the CSR.
        cert = iot.CfnCertificate(
            scope, "Certificate", certificate_signing_request=claim.csr_pem(), status=_status(claim)
        )
        return ClaimCertificate(
            name=claim.name,
            active=claim.active,
            certificate_id=cert.attr_id,
            certificate_arn=cert.attr_arn,
            secret_arn=None,
        )

    @staticmethod
    def _generated(
        scope: Construct,
        claim: ClaimCredential,
        config: FleetConfig,
        key: kms.IKey,
        provider: ClaimCredentialProvider,
    ) -> ClaimCertificate:
        resource = CustomResource(
            scope,
            "Credential",
            service_token=provider.service_token,
            resource_type=CLAIM_RESOURCE_TYPE,
            properties={
                "ClaimName": claim.name,
                "Status": _status(claim),
                "SecretKmsKeyId": key.key_arn,
                "SecretName": names.claim_secret_name(config, claim.name),
            },
        )
        return ClaimCertificate(
            name=claim.name,
            active=claim.active,
            certificate_id=resource.get_att_string("CertificateId"),
            certificate_arn=resource.get_att_string("CertificateArn"),
            secret_arn=resource.get_att_string("SecretArn"),
        )


def _status(claim: ClaimCredential) -> str:
    return "ACTIVE" if claim.active else "INACTIVE"
