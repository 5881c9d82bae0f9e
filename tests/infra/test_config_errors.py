"""Every invalid configuration value stops synth with one message naming the key (infra/config.py rules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import REPO_ROOT, build_app, load_fleet_config
from infra.config import ConfigError
from tests.infra.conftest import write_csr

GENERATED = {"name": "line-a", "mode": "generated"}

INVALID: list[tuple[str, Any, str]] = [
    ("stack_name", "1stack", "stack_name"),
    ("stack_name", "", "stack_name"),
    ("stack_name", 7, "stack_name"),
    ("template_name", "has space", "template_name"),
    ("template_name", "x" * 37, "template_name"),
    ("thing_name_prefix", "bad/prefix", "thing_name_prefix"),
    ("thing_name_prefix", "p" * 65, "thing_name_prefix"),
    ("serial_pattern", "^[unclosed$", "serial_pattern"),
    ("serial_pattern", "[A-Z]+", "serial_pattern"),
    ("thing_group_name", "group with space", "thing_group_name"),
    ("thing_type_name", "type/slash", "thing_type_name"),
    ("thing_attributes", "model", "thing_attributes"),
    ("thing_attributes", ["SerialNumber"], "thing_attributes"),
    ("thing_attributes", ["Batch"], "thing_attributes"),
    ("thing_attributes", ["batch"], "thing_attributes"),
    ("thing_attributes", ["a", "a"], "thing_attributes"),
    ("thing_attributes", [f"a{i}" for i in range(51)], "thing_attributes"),
    ("thing_attributes", ["white space"], "thing_attributes"),
    ("device_configuration", {"nested": {"x": "y"}}, "device_configuration"),
    ("device_configuration", ["x"], "device_configuration"),
    ("device_configuration", {f"k{i}": "v" * 200 for i in range(60)}, "device_configuration"),
    ("device_topic_root", "a/b", "device_topic_root"),
    ("device_topic_root", "#", "device_topic_root"),
    ("claim_client_id_pattern", "prov/*", "claim_client_id_pattern"),
    ("claim_client_id_pattern", "", "claim_client_id_pattern"),
    ("allow_create_keys_and_certificate", "yes", "allow_create_keys_and_certificate"),
    ("iot_logging", 1, "iot_logging"),
    ("require_device_key", "true", "require_device_key"),
    ("require_cn_match", 0, "require_cn_match"),
    ("claim_credentials", [], "claim_credentials"),
    ("claim_credentials", "line-a", "claim_credentials"),
    ("claim_credentials", ["line-a"], "claim_credentials[0]"),
    ("claim_credentials", [{"name": "Line_A", "mode": "generated"}], "claim_credentials[0].name"),
    ("claim_credentials", [GENERATED, GENERATED], "claim_credentials[1].name"),
    ("claim_credentials", [{"name": "line-a", "mode": "pem"}], "claim_credentials[0].mode"),
    ("claim_credentials", [{**GENERATED, "active": "no"}], "claim_credentials[0].active"),
    ("claim_credentials", [{**GENERATED, "colour": "red"}], "claim_credentials[0].colour"),
    ("claim_credentials", [{"name": "line-a", "mode": "csr"}], "claim_credentials[0].csr_file"),
    ("claim_credentials", [{**GENERATED, "csr_file": "x.csr"}], "claim_credentials[0].csr_file"),
    (
        "claim_credentials",
        [{"name": "line-a", "mode": "csr", "csr_file": "/nonexistent/x.csr"}],
        "claim_credentials[0].csr_file",
    ),
    ("reservation_timeout_s", 59, "reservation_timeout_s"),
    ("reservation_timeout_s", 86_401, "reservation_timeout_s"),
    ("reservation_timeout_s", True, "reservation_timeout_s"),
    ("log_retention_days", 31, "log_retention_days"),
    ("log_retention_days", True, "log_retention_days"),
    ("alarm_email", "not-an-address", "alarm_email"),
    ("denial_rate_alarm_percent", 0, "denial_rate_alarm_percent"),
    ("denial_rate_alarm_percent", 101, "denial_rate_alarm_percent"),
    ("provisioning_spike_per_5min", 0, "provisioning_spike_per_5min"),
    ("powertools_layer_version", "18", "powertools_layer_version"),
    ("metrics_namespace", "has space", "metrics_namespace"),
    ("no_such_key", 1, "no_such_key"),
]


@pytest.mark.parametrize(
    ("key", "value", "named"), INVALID, ids=[f"{k}={str(v)[:20]}" for k, v, _ in INVALID]
)
def test_invalid_value_stops_synth_naming_the_key(key: str, value: Any, named: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build_app({key: value}, tmp_path / "cdk.out")
    message = str(caught.value)
    assert message.startswith(f"fleet.{named}: "), message
    assert "\n" not in message
    assert not (tmp_path / "cdk.out" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"allow_create_keys_and_certificate": True}, "require_cn_match"),
        (
            {
                "allow_create_keys_and_certificate": True,
                "require_cn_match": False,
                "require_device_key": True,
            },
            "require_device_key",
        ),
    ],
)
def test_the_keys_flow_cannot_be_attested(keys: dict[str, Any], named: str) -> None:
    """AWS makes the key and names the certificate in CreateKeysAndCertificate: neither check could pass."""
    with pytest.raises(
        ConfigError, match=f"^fleet.{named}: cannot hold with allow_create_keys_and_certificate"
    ):
        load_fleet_config(None, keys)
    assert load_fleet_config(None, {**keys, "require_cn_match": False, "require_device_key": False})


# A key's PEM armour, built at run time so no committed file carries private-key text.
_KEY_ARMOUR = b"EC " + b"PRIVATE" + b" KEY-----"


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"-----BEGIN " + _KEY_ARMOUR + b"\nMHc=\n-----END " + _KEY_ARMOUR + b"\n", "private-key text"),
        (b"not a csr", "not a PEM certificate signing request"),
    ],
)
def test_csr_file_that_is_no_csr_is_refused(content: bytes, rule: str, tmp_path: Path) -> None:
    path = tmp_path / "claim.csr"
    path.write_bytes(content)
    claim = {"name": "line-a", "mode": "csr", "csr_file": str(path)}
    with pytest.raises(ConfigError, match=rule) as caught:
        build_app({"claim_credentials": [claim]}, tmp_path / "cdk.out")
    assert str(caught.value).startswith("fleet.claim_credentials[0].csr_file: ")


def test_relative_csr_path_resolves_against_the_project(tmp_path: Path) -> None:
    # A relative csr_file in cdk.json is relative to the project, not to wherever `cdk` runs.
    csr = write_csr(tmp_path / "rel.csr")
    relative = os.path.relpath(csr, REPO_ROOT)
    app = build_app(
        {"claim_credentials": [{"name": "line-a", "mode": "csr", "csr_file": relative}]}, tmp_path / "cdk.out"
    )
    assert app.node.find_child("FleetProvisioning") is not None


def _run_app(tmp_path: Path, fleet: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`python3 app.py` as the CDK CLI runs it: context in CDK_CONTEXT_JSON, output dir in CDK_OUTDIR."""
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text())
    context = {**cdk_json["context"], "fleet": {**cdk_json["context"]["fleet"], **fleet}}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path / "cdk.out")}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_app_prints_one_line_and_exits_1_on_a_bad_value(tmp_path: Path) -> None:
    result = _run_app(tmp_path, {"template_name": "no spaces allowed"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "synth: fleet.template_name: must be 1-36 characters of [0-9A-Za-z_-]"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_context_string_overrides_cdk_json_key_by_key(tmp_path: Path) -> None:
    # `cdk synth -c fleet='{"template_name": "bad name"}'` reaches app.py as a JSON *string*.
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text())
    context = {**cdk_json["context"], "fleet": json.dumps({"template_name": "bad name"})}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path / "cdk.out")}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "synth: fleet.template_name: must be 1-36 characters of [0-9A-Za-z_-]"
    ]


@pytest.mark.parametrize("fleet", ["not json", "[1, 2]"])
def test_cli_context_string_that_is_no_object_is_refused(fleet: str) -> None:
    from app import fleet_context

    with pytest.raises(ConfigError, match="must be a JSON object"):
        fleet_context(fleet)
