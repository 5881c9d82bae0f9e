"""Helpers for the CDK tests: a bare Stack per construct, CSRs made at test time, ARN rendering."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "14,16,18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "14,16,18,20")

from aws_cdk import App, Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from app import APP_CONTEXT, load_fleet_config  # noqa: E402
from infra.config import FleetConfig  # noqa: E402

REGION, ACCOUNT = "eu-west-1", "123456789012"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}


def make_config(**fleet: Any) -> FleetConfig:
    """A validated FleetConfig: cdk.json's `context.fleet`, the given keys replaced (as app.py merges)."""
    return load_fleet_config(None, fleet)


def bare_stack(outdir: Path) -> tuple[App, Stack]:
    app = App(outdir=str(outdir), analytics_reporting=False, context=APP_CONTEXT)
    return app, Stack(app, "Test")


def synth_construct(outdir: Path, build: Callable[[Stack], Any]) -> tuple[Template, Any]:
    """Build constructs on a bare Stack and synthesize it once."""
    app, stack = bare_stack(outdir)
    built = build(stack)
    return Template.from_stack(stack), built


def write_csr(path: Path, common_name: str = "claim-line-b") -> Path:
    """A CSR as a factory HSM would give it; the key never touches disk."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


def render(value: Any, refs: dict[str, str] | None = None) -> Any:
    """Resolve Fn::Join / Ref of pseudo parameters (and given logical ids) into plain strings."""
    names = {**PSEUDO, **(refs or {})}
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in names:
            return names[value["Ref"]]
        if set(value) == {"Fn::Join"}:
            sep, parts = value["Fn::Join"]
            return sep.join(str(render(p, refs)) for p in parts)
        return {k: render(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, refs) for v in value]
    return value


def resources(template: Template, type_: str) -> dict[str, dict[str, Any]]:
    return template.find_resources(type_)


def only(template: Template, type_: str) -> dict[str, Any]:
    found = list(resources(template, type_).values())
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


def statements(template: Template, role_logical_id_prefix: str) -> list[dict[str, Any]]:
    """The statements of the IAM::Policy attached to the role whose logical id starts with the prefix."""
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"]]
        if any(r.startswith(role_logical_id_prefix) for r in roles):
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def by_prefix(template: Template, type_: str, logical_id_prefix: str) -> dict[str, Any]:
    """The one resource of a type whose logical id starts with the prefix (its construct path)."""
    found = [r for lid, r in resources(template, type_).items() if lid.startswith(logical_id_prefix)]
    assert len(found) == 1, f"expected one {type_} under {logical_id_prefix}, found {len(found)}"
    return found[0]
