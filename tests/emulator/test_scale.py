"""Per-request work must not grow with the fleet: the lookups a CONNECT, a RegisterThing, the hook's
DescribeCertificate and the token sweep make cost the same with 4,000 devices registered as with 20.

moto answers these by scanning every certificate or attachment; with 10,000 devices that made a
fleet run decay from ~1,200 to 9 devices per minute. Timed as the best of several batches (noise on a
shared machine only ever adds time), with a wide margin: the old scans were 50-500x slower at 4,000.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from emulator.provisioning.ca import CertificateAuthority
from emulator.registry.moto_index import PairIndex
from emulator.registry.store import Registry
from tests.emulator.test_registry import plan_for, registry  # noqa: F401 - the fixture

SMALL, LARGE = 20, 4000
MAX_RATIO = 4.0


def _fill(target: Registry, count: int, start: int = 0) -> None:
    """`count` provisioned devices: certificate, thing, policy and thing attached (stand-in objects:
    a scan touches them exactly as it would touch real ones)."""
    iot = target.iot
    policy = iot.policies["DevicePolicy"]
    for i in range(start, start + count):
        certificate_id = f"{i:064x}"
        arn = target.certificate_arn(certificate_id)
        iot.certificates[certificate_id] = SimpleNamespace(
            certificate_id=certificate_id, arn=arn, status="ACTIVE", certificate_pem=""
        )
        thing = iot.create_thing(f"filler-{i}", "", {})
        iot.principal_things[(arn, thing.thing_name)] = (arn, thing)
        iot.principal_policies[(arn, "DevicePolicy")] = (arn, policy)


def _per_call(call: Callable[[], Any], calls: int = 40, repeats: int = 7) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def test_lookups_per_request_do_not_grow_with_the_fleet(
    registry: Registry,  # noqa: F811
    authority: CertificateAuthority,
) -> None:
    iot = registry.iot
    device = authority.issue_client_credential("device").certificate_pem
    active = registry.register_certificate(device, "PENDING_ACTIVATION").certificate_id
    registry.apply_plan(plan_for(active, serial="SN42"), active)
    pending = authority.issue_client_credential("pending").certificate_pem
    pending_id = registry.register_certificate(pending, "PENDING_ACTIVATION").certificate_id
    pending_arn = registry.certificate_arn(pending_id)
    iot.principal_policies[(pending_arn, "DevicePolicy")] = (pending_arn, iot.policies["DevicePolicy"])
    active_arn = registry.certificate_arn(active)

    lookups: dict[str, Callable[[], Any]] = {
        "identity (CONNECT)": lambda: registry.identity(active, "device-SN42"),
        "describe_certificate (the hook)": lambda: iot.describe_certificate(active),
        "describe_thing": lambda: iot.describe_thing("device-SN42"),
        "_get_principal (attach by ARN)": lambda: iot._get_principal(active_arn),
        "list_principal_things": lambda: iot.list_principal_things(active_arn),
        "list_thing_principals": lambda: iot.list_thing_principals("device-SN42"),
        "token sweep check": lambda: registry.delete_unactivated_certificate(pending_id),
    }
    _fill(registry, SMALL)
    small = {name: _per_call(call) for name, call in lookups.items()}
    _fill(registry, LARGE - SMALL, start=SMALL)
    large = {name: _per_call(call) for name, call in lookups.items()}

    identity = registry.identity(active, "device-SN42")
    assert identity is not None and identity.thing_names == ("device-SN42",)
    assert iot.describe_certificate(active).certificate_id == active
    assert registry.delete_unactivated_certificate(pending_id) is False  # a policy is attached
    grew = {
        name: f"{small[name] * 1e6:.1f} -> {large[name] * 1e6:.1f} us"
        for name in lookups
        if large[name] > MAX_RATIO * small[name] + 20e-6
    }
    assert not grew, f"per-request lookups grew with {LARGE} devices vs {SMALL}: {grew}"


def test_the_attachment_index_follows_every_write(
    registry: Registry,  # noqa: F811
    authority: CertificateAuthority,
) -> None:
    """moto's own API calls and the emulator's undo journal both keep the index exact."""
    iot = registry.iot
    assert isinstance(iot.principal_policies, PairIndex) and isinstance(iot.principal_things, PairIndex)
    pem = authority.issue_client_credential("device").certificate_pem
    certificate_id = registry.register_certificate(pem, "ACTIVE").certificate_id
    arn = registry.certificate_arn(certificate_id)
    iot.create_thing("t1", "", {})
    iot.attach_policy("DevicePolicy", arn)
    iot.attach_thing_principal("t1", arn)
    assert iot.list_principal_things(arn) == ["t1"]
    assert iot.list_thing_principals("t1") == [arn]
    assert [p.name for p in iot.list_principal_policies(arn)] == ["DevicePolicy"]
    assert iot.list_policy_principals("DevicePolicy") == [arn]
    iot.detach_thing_principal("t1", arn)
    iot.detach_policy("DevicePolicy", arn)
    assert iot.list_principal_things(arn) == [] and iot.list_thing_principals("t1") == []
    assert iot.list_principal_policies(arn) == [] and iot.list_policy_principals("DevicePolicy") == []
    assert not iot.principal_things.by_principal and not iot.principal_policies.by_target

    # A RegisterThing that fails after attaching is undone through dict.pop: the index follows.
    pending = registry.register_certificate(
        authority.issue_client_credential("p").certificate_pem, "PENDING_ACTIVATION"
    ).certificate_id
    plan = plan_for(pending, serial="SN7")
    missing = dataclasses.replace(plan.policies[0], policy_name="NoSuchPolicy", policy_document=None)
    broken = dataclasses.replace(plan, policies=[*plan.policies, missing])
    with pytest.raises(Exception, match="does not exist"):
        registry.apply_plan(broken, pending)
    assert registry.identity(pending) is not None
    assert registry.identity(pending).thing_names == ()  # type: ignore[union-attr]
    assert registry.identity(pending).policy_documents == ()  # type: ignore[union-attr]

    from moto.iot.exceptions import ResourceNotFoundException

    with pytest.raises(ResourceNotFoundException):
        iot.describe_certificate("0" * 64)
    with pytest.raises(ResourceNotFoundException):
        iot.describe_thing("nope")
    with pytest.raises(ResourceNotFoundException):
        iot.list_thing_principals("nope")
