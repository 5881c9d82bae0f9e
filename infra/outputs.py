"""Stack outputs: names, ids and ARNs only (never key material)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput
from constructs import Construct

from infra import constants as c
from infra.claims import ClaimCertificate
from infra.names import pascal


def add_outputs(
    scope: Construct,
    *,
    template_name: str,
    table_name: str,
    claims: Sequence[ClaimCertificate],
    rotation_template_name: str | None = None,
) -> None:
    CfnOutput(
        scope,
        c.OUT_TEMPLATE_NAME,
        value=template_name,
        description="Provisioning template name (devices publish to its provision topics)",
    )
    if rotation_template_name is not None:
        CfnOutput(
            scope,
            c.OUT_ROTATION_TEMPLATE_NAME,
            value=rotation_template_name,
            description="Certificate rotation template name (devices rotate through its provision topics)",
        )
    CfnOutput(
        scope,
        c.OUT_SERIAL_TABLE,
        value=table_name,
        description="Serial registry table (fleetctl registry --table)",
    )
    for claim in claims:
        CfnOutput(
            scope,
            c.OUT_CLAIM_CERT_PREFIX + pascal(claim.name),
            value=claim.certificate_id,
            description=f"Claim certificate id of '{claim.name}' (active: {str(claim.active).lower()})",
        )
        if claim.secret_arn is not None:
            CfnOutput(
                scope,
                c.OUT_CLAIM_SECRET_PREFIX + pascal(claim.name),
                value=claim.secret_arn,
                description=f"Secret holding the certificate and key of claim '{claim.name}' "
                f"(fleetctl claim export {claim.name})",
            )
