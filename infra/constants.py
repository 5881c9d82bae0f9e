"""Names shared by the CDK code, the emulator and the tests: construct ids, environment variables, outputs.

The hook reads its environment through `lambdas/provisioning_hook/settings.py`; a test checks that the
synthesized function's environment carries exactly the names below.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = REPO_ROOT / "lambdas"
HOOK_HANDLER = "provisioning_hook.handler.lambda_handler"
CLAIM_CR_HANDLER = "claim_credential.handler.on_event"
RETIRER_HANDLER = "certificate_retirer.handler.lambda_handler"

# Environment of the pre-provisioning hook.
ENV_SERIAL_TABLE = "SERIAL_TABLE_NAME"
ENV_SERIAL_PATTERN = "SERIAL_PATTERN"
ENV_THING_NAME_PREFIX = "THING_NAME_PREFIX"
ENV_RESERVATION_TIMEOUT = "RESERVATION_TIMEOUT_S"
ENV_TEMPLATE_ATTRIBUTES = "TEMPLATE_ATTRIBUTES"  # comma-separated attribute parameters the hook overrides
ENV_DEVICE_PARAMETERS = "DEVICE_PARAMETERS"  # comma-separated parameters a device may send: its serial
ENV_REQUIRE_DEVICE_KEY = "REQUIRE_DEVICE_KEY"  # "true": every serial needs its device key's fingerprint
ENV_REQUIRE_CN_MATCH = "REQUIRE_CN_MATCH"  # "true": the certificate's CN must be the serial
ENV_ROTATION_TEMPLATE = "ROTATION_TEMPLATE_NAME"  # requests to this template are rotations ("": none)
ENV_POWERTOOLS_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
HOOK_ENV_NAMES = frozenset(
    {
        ENV_SERIAL_TABLE,
        ENV_SERIAL_PATTERN,
        ENV_THING_NAME_PREFIX,
        ENV_RESERVATION_TIMEOUT,
        ENV_TEMPLATE_ATTRIBUTES,
        ENV_DEVICE_PARAMETERS,
        ENV_REQUIRE_DEVICE_KEY,
        ENV_REQUIRE_CN_MATCH,
        ENV_ROTATION_TEMPLATE,
        ENV_POWERTOOLS_SERVICE,
        ENV_POWERTOOLS_NAMESPACE,
        ENV_LOG_LEVEL,
    }
)

# Environment of the certificate retirer (lambdas/certificate_retirer/settings.py), besides the table,
# prefix and Powertools names above.
ENV_DEVICE_POLICY = "DEVICE_POLICY_NAME"
ENV_ROTATION_GRACE = "ROTATION_GRACE_S"
ENV_EXPIRING_DAYS = "EXPIRING_WITHIN_DAYS"
ENV_ROTATIONS_INDEX = "ROTATIONS_INDEX"
RETIRER_SERVICE_NAME = "certificate-retirer"
ROTATIONS_INDEX = "rotations"  # sparse index of the serials with a pending rotation
HOOK_SERVICE_NAME = "provisioning-hook"
HOOK_TIMEOUT_S = 4  # AWS gives the hook 5 s; the function's own clients give up well before this

# Template parameters.
PARAM_SERIAL = "SerialNumber"
PARAM_CERTIFICATE_ID = "AWS::IoT::Certificate::Id"
PARAM_BATCH = "Batch"  # overridden by the hook from the registry
DEVICE_PARAMETERS = (PARAM_SERIAL,)  # the only template parameters a device chooses

# Metrics the hook emits (CloudWatch EMF), read by the alarms.
METRIC_DECISIONS = "HookDecisions"  # dimensions: service, Decision, Reason
METRIC_ALLOWED = "HookAllowed"  # dimensions: service
METRIC_DENIED = "HookDenied"  # dimensions: service
METRIC_ALLOWED_BY_CLAIM = "ProvisioningAllowedByClaim"  # dimensions: service, ClaimCertificateId
METRIC_ROTATION_ALLOWED = "RotationAllowed"  # dimensions: service (the hook's, on the rotation template)
METRIC_ROTATION_DENIED = "RotationDenied"
METRIC_EXPIRING = "CertificatesExpiringSoon"  # dimensions: service=certificate-retirer
METRIC_RETIRED = "CertificatesRetired"
METRIC_ABANDONED = "RotationsAbandoned"

# Construct ids.
ID_REGISTRY = "SerialRegistry"
ID_HOOK = "PreProvisioningHook"
ID_ROLE = "ProvisioningRole"
ID_TEMPLATE = "ProvisioningTemplate"
ID_DEVICE_POLICY = "DevicePolicy"
ID_CLAIM_POLICY = "ClaimPolicy"
ID_CLAIMS = "ClaimCredentials"
ID_MONITORING = "Monitoring"
ID_ROTATION = "Rotation"

# Stack outputs.
OUT_TEMPLATE_NAME = "ProvisioningTemplateName"
OUT_ROTATION_TEMPLATE_NAME = "RotationTemplateName"  # only with rotation enabled
OUT_SERIAL_TABLE = "SerialTableName"
OUT_CLAIM_CERT_PREFIX = "ClaimCertificateId"  # + claim name in PascalCase
OUT_CLAIM_SECRET_PREFIX = "ClaimSecretArn"  # generated mode only

# Serial registry item model (docs/registry.md).
TABLE_PARTITION_KEY = "pk"
SERIAL_KEY_PREFIX = "serial#"
BATCH_KEY_PREFIX = "batch#"
CERTIFICATE_KEY_PREFIX = "cert#"  # one item per certificate a reservation named: the certificate history
