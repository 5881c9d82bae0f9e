"""Physical names and construct ids of this app that are not shared with other parts.

Shared names live in `infra.constants` (which only the foundation edits); these are local to the CDK app.
"""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from infra.config import FleetConfig

# Construct ids beside those in infra.constants.
ID_THINGS = "ThingGrouping"
ID_KEY = "StackKey"
ID_IOT_LOGGING = "IotLogging"

# Logical names of the resources inside the provisioning template body.
TEMPLATE_THING = "thing"
TEMPLATE_CERTIFICATE = "certificate"
TEMPLATE_POLICY = "policy"

# Template parameters the hook may override get this default, so a template evaluated without the
# hook's override still yields a valid (non-empty) attribute value.
ATTRIBUTE_DEFAULT = "unknown"
BATCH_DEFAULT = "none"
BATCH_ATTRIBUTE = "batch"

HOOK_PAYLOAD_VERSION = "2020-04-01"
IOT_PRINCIPAL = "iot.amazonaws.com"
THINGS_REGISTRATION_POLICY = "service-role/AWSIoTThingsRegistration"
IOT_LOGGING_POLICY = "service-role/AWSIoTLogging"


def device_policy_name(config: FleetConfig) -> str:
    """Fixed, so the template body (a string checked for size at synth) can name it."""
    return f"{config.stack_name}-DevicePolicy"


def claim_policy_name(config: FleetConfig) -> str:
    return f"{config.stack_name}-ClaimPolicy"


def claim_secret_name(config: FleetConfig, claim_name: str) -> str:
    """Secrets Manager name of a generated claim credential (fleetctl claim export reads it)."""
    return f"{config.stack_name}/claim-credentials/{claim_name}"


def pascal(name: str) -> str:
    """`line-a` -> `LineA`, for output names and construct ids."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


def iot_arn(scope: Construct, resource: str, name: str) -> str:
    """arn:<partition>:iot:<region>:<account>:<resource>/<name> in the stack of `scope` (policy resources)."""
    return Stack.of(scope).format_arn(service="iot", resource=resource, resource_name=name)
