"""The functions' code: `lambdas/` with only the packages a function runs (no Docker, no build step)."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_

from infra import constants as c

PACKAGES = ("provisioning_hook", "certificate_retirer", "claim_credential")
NEVER = ["**/__pycache__", "*.pyc", ".pytest_cache", "**/tests"]


def lambda_code(*packages: str) -> lambda_.Code:
    """The asset of a function that imports `packages` (the retirer also reads the hook's registry names)."""
    unknown = set(packages) - set(PACKAGES)
    assert not unknown, f"no such package under lambdas/: {unknown}"
    others = [p for p in PACKAGES if p not in packages]
    return lambda_.Code.from_asset(str(c.LAMBDAS_DIR), exclude=[*others, *NEVER])
