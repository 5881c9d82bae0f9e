"""The load test's container image, built by `cdk deploy` from infra/loadtest/Dockerfile (no Docker at synth).

The build context is the repository, of which only pyproject.toml, device_sim/ and the image's two files are
sent (Docker's ignore rules): no tests, no emulator, no keys of a developer's `.state/`.
"""

from __future__ import annotations

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecs as ecs

from infra.constants import REPO_ROOT

CONTEXT_INCLUDES = (
    "pyproject.toml",
    "device_sim",
    "infra/loadtest/Dockerfile",
    "infra/loadtest/image_requirements.py",
)
CONTEXT_EXCLUDES = ["*", *(f"!{path}" for path in CONTEXT_INCLUDES), "**/__pycache__", "**/*.pyc"]


def loadtest_image() -> ecs.ContainerImage:
    return ecs.ContainerImage.from_asset(
        str(REPO_ROOT),
        file="infra/loadtest/Dockerfile",
        exclude=CONTEXT_EXCLUDES,
        ignore_mode=IgnoreMode.DOCKER,
    )
