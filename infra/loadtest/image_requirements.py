"""The requirement lines of pyproject.toml that device_sim and its locust extra need, for the image's pip.

Run inside the image build (`python image_requirements.py pyproject.toml`): one requirement per line, pins as
pyproject.toml has them, so the image and the project cannot drift apart.
"""

from __future__ import annotations

import re
import sys
import tomllib

NEEDED = ("awsiotsdk", "awscrt", "cbor2", "cryptography", "typer", "rich", "boto3")


def requirements(pyproject: dict) -> list[str]:  # type: ignore[type-arg]
    project = pyproject["project"]
    picked = [r for r in project["dependencies"] if re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] in NEEDED]
    return picked + list(project["optional-dependencies"]["locust"])


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as handle:
        print("\n".join(requirements(tomllib.load(handle))))
