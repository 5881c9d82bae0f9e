"""Fleet provisioning by trusted user: CreateProvisioningClaim's temporary claim certificates.

AWS (provision-wo-cert.html, "Provisioning by trusted user"): the temporary claim certificate expires
after five minutes, the device must obtain its own certificate within them, and temporary claim
certificates do not appear in the account's certificate list. Here the claim is registered beside moto's
certificates (`Registry.add_temporary_claim`): CONNECT knows it, ListCertificates and
DescribeCertificate do not. After its expiry it cannot connect, and a connection opened before gets
no more requests served (`ProvisioningService`).

What the temporary claim may do is not documented. UNCONFIRMED choice: what AWS's own claim-policy
example allows (provision-wo-cert.html), for that one template: connect with any client id, and
publish, receive and subscribe on the certificate APIs' topics and on that template's RegisterThing
topics.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization

from emulator.awsapi.errors import AwsApiError
from emulator.logsafe import quoted
from emulator.provisioning.ca import CertificateAuthority
from emulator.provisioning.template_catalog import TemplateCatalog
from emulator.provisioning.template_records import FLEET_PROVISIONING
from emulator.registry.store import Registry

log = logging.getLogger("emulator.aws")

CLAIM_TTL_S = 300.0  # AWS: five minutes


def temporary_claim_policy(region: str, account_id: str, template_name: str) -> dict[str, Any]:
    arn = f"arn:aws:iot:{region}:{account_id}"
    topics = [
        "$aws/certificates/create/*",
        "$aws/certificates/create-from-csr/*",
        f"$aws/provisioning-templates/{template_name}/provision/*",
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/*"},
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": [f"{arn}:topic/{topic}" for topic in topics],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/{topic}" for topic in topics],
            },
        ],
    }


class TemporaryClaims:
    def __init__(
        self,
        *,
        authority: CertificateAuthority,
        registry: Registry,
        catalog: TemplateCatalog,
        ttl_s: float = CLAIM_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authority = authority
        self._registry = registry
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._clock = clock

    def create(self, template_name: str) -> dict[str, Any]:
        """CreateProvisioningClaim's answer: certificateId, certificatePem, keyPair, expiration."""
        template = self._catalog.get(template_name)
        if template is None:
            raise AwsApiError(404, "ResourceNotFoundException", f"Template {template_name} does not exist")
        if template.template_type != FLEET_PROVISIONING:
            raise AwsApiError(
                400,
                "InvalidRequestException",
                f"Template {template_name} is not a fleet provisioning template",
            )
        if not template.enabled:
            # UNCONFIRMED: AWS's answer for a disabled template. A claim that could never provision
            # would only fail later on the device; say it now.
            raise AwsApiError(400, "InvalidRequestException", f"Template {template_name} is disabled")
        issued = self._authority.create_keys_and_certificate()
        expires_at = self._clock() + self._ttl_s
        policy = temporary_claim_policy(self._registry.region, self._registry.account_id, template_name)
        record = self._registry.add_temporary_claim(
            issued.certificate_pem,
            template_name=template_name,
            policy_document=json.dumps(policy),
            expires_at=expires_at,
        )
        private_key = serialization.load_pem_private_key(issued.private_key_pem.encode(), password=None)
        public_key = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        log.info(
            "CreateProvisioningClaim template=%s certificate=%.12s valid %g s",
            quoted(template_name),
            record.certificate_id,
            self._ttl_s,
        )
        return {
            "certificateId": record.certificate_id,
            "certificatePem": issued.certificate_pem,
            "keyPair": {"PublicKey": public_key.decode(), "PrivateKey": issued.private_key_pem},
            "expiration": expires_at,
        }
