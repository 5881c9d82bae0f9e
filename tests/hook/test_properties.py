"""Property-based: any malformed event gets a well-formed denial; the handler never raises.

The serial of the base event is reserved for the base certificate first, so any mutation that slipped
through as valid would be allowed (ALLOWED_RETRY): "never allows" can actually fail.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import HOOK_ENV, load_event, put_serial, run_hook

HEX64 = re.compile(r"[0-9a-fA-F]{64}")
SERIAL = re.compile(HOOK_ENV["SERIAL_PATTERN"])
REQUIRED = ("claimCertificateId", "certificateId", "templateArn", "clientId")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
non_strings = json_values.filter(lambda v: not isinstance(v, str))
bad_ids = st.text(max_size=80).filter(lambda s: not HEX64.fullmatch(s)) | non_strings
bad_serials = st.text(max_size=80).filter(lambda s: not SERIAL.fullmatch(s)) | non_strings
bad_short_strings = st.just("") | st.text(min_size=129, max_size=200) | non_strings

Mutation = tuple[str, str, Any]
mutations: st.SearchStrategy[Mutation] = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(REQUIRED), st.none()),
    st.tuples(st.just("set"), st.sampled_from(("claimCertificateId", "certificateId")), bad_ids),
    st.tuples(st.just("set"), st.just("clientId"), bad_short_strings),
    st.tuples(st.just("set"), st.just("templateArn"), st.just("") | non_strings),
    st.tuples(st.just("set"), st.just("parameters"), non_strings.filter(lambda v: not isinstance(v, dict))),
    st.tuples(st.just("serial"), st.just("SerialNumber"), bad_serials),
    st.tuples(st.just("drop_serial"), st.just("SerialNumber"), st.none()),
    st.tuples(st.just("param"), st.text(max_size=10), non_strings),  # a non-string parameter value
)


def mutate(event: dict[str, Any], changes: list[Mutation]) -> dict[str, Any]:
    event = json.loads(json.dumps(event))
    for kind, key, value in changes:
        if kind == "drop":
            event.pop(key, None)
        elif kind == "set":
            event[key] = value
        elif isinstance(event.get("parameters"), dict):
            if kind == "serial":
                event["parameters"]["SerialNumber"] = value
            elif kind == "drop_serial":
                event["parameters"].pop("SerialNumber", None)
            else:
                event["parameters"][key] = value
    return event


def assert_well_formed_denial(response: Any) -> None:
    assert isinstance(response, dict)
    assert set(response) == {"allowProvisioning", "parameterOverrides"}
    assert response["allowProvisioning"] is False
    assert response["parameterOverrides"] == {}
    json.dumps(response)


@pytest.fixture
def reserved(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    put_serial(dynamodb, "SN-000001", batch="B1", attributes={"model": "X1"})
    base = load_event("register_thing")
    response, _ = run_hook(base, capsys)
    assert response["allowProvisioning"] is True  # the unmutated event is allowed, and again on retry
    assert run_hook(base, capsys)[0]["allowProvisioning"] is True
    return base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(mutations, min_size=1, max_size=3))
def test_mutated_events_are_denied(
    reserved: dict[str, Any], capsys: pytest.CaptureFixture[str], changes: list[Mutation]
) -> None:
    response, _ = run_hook(mutate(reserved, changes), capsys)
    assert_well_formed_denial(response)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event=json_values
    | st.dictionaries(st.sampled_from((*REQUIRED, "parameters", "certificatePem")), json_values)
)
def test_arbitrary_events_are_denied(
    reserved: dict[str, Any], capsys: pytest.CaptureFixture[str], event: Any
) -> None:
    response, _ = run_hook(event, capsys)
    assert_well_formed_denial(response)
