"""Faults: a client that walks away between CreateCertificateFromCsr and RegisterThing, a hook that raises
or outlives AWS's 5 s, and the real hook finding DynamoDB hung, each among devices that must not notice."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from awsiot import V2ServiceException, iotidentity

from tests.emulator.device import TIMEOUT_S, Endpoint, connect, disconnect, identity_client, make_csr
from tests.load.hung_dynamodb import HungDynamoDB
from tests.load.support import (
    Snapshot,
    certificate_id_of,
    import_serials,
    provision_all,
    snapshot,
    start_emulator,
)

pytestmark = [pytest.mark.load, pytest.mark.e2e]

HOOK_LIMIT_S = 5.0  # AWS's limit for the pre-provisioning hook
SLACK_S = 2.5  # a loaded 2-core machine: scheduling, not the emulator's decision


def tagged(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6].upper()
    return [f"{prefix}{tag}{i:03d}" for i in range(n)]


def interleave(*groups: list[str]) -> list[str]:
    """Faulty and good devices alternate, so the good ones run while the faulty ones are stuck."""
    longest = max(len(g) for g in groups)
    return [g[i] for i in range(longest) for g in groups if i < len(g)]


def assert_only_good_devices_exist(state: Snapshot, prefix: str, good: list[str], bad: list[str]) -> None:
    """The good devices have a thing with one ACTIVE certificate; the bad ones have no thing, and every
    certificate not attached to a good thing is PENDING_ACTIVATION (or deleted) with no policy."""
    assert set(state.things) == {prefix + s for s in good}
    good_certificates = set()
    for principals in state.things.values():
        assert len(principals) == 1
        good_certificates.add(certificate_id_of(principals[0]))
    assert state.active() == good_certificates
    leftovers = set(state.certificates) - good_certificates
    assert {state.certificates[c] for c in leftovers} <= {"PENDING_ACTIVATION"}
    assert not leftovers & set(state.certificate_policies)
    assert not any(prefix + s in state.things for s in bad)


def test_a_client_that_leaves_before_register_thing_leaves_nothing(
    cloud_assembly: Path, tmp_path: Path
) -> None:
    """Nothing lost, nothing left: 20 clients get a certificate and an ownership token, then disconnect.
    Once the token expires (3 s here) their certificates are deleted, no thing exists for their serials,
    the serials are still AVAILABLE with no certificate, and a late RegisterThing with such a token is
    refused. Ten devices provisioned meanwhile keep their things and ACTIVE certificates."""
    emulator = start_emulator(cloud_assembly, tmp_path / "state", "--token-ttl-s", "3")
    try:
        raw, endpoint = emulator.raw, emulator.endpoint
        leavers, good = tagged("AB", 20), tagged("OK", 10)
        import_serials(raw, leavers + good)

        def leave(serial: str) -> tuple[str, str]:
            connection = connect(endpoint, f"prov-{serial}")
            try:
                client = identity_client(
                    connection
                )  # kept referenced: a collected client cancels its requests
                created = client.create_certificate_from_csr(
                    iotidentity.CreateCertificateFromCsrRequest(
                        certificate_signing_request=make_csr(serial)[1]
                    )
                ).result(TIMEOUT_S)
                return created.certificate_id, created.certificate_ownership_token
            finally:
                disconnect(connection)  # power cut: RegisterThing never comes

        with ThreadPoolExecutor(10) as pool:
            left = pool.map(leave, leavers)
            results = asyncio.run(provision_all(emulator.state_dir / "endpoint.json", good, concurrency=10))
            abandoned = list(left)
        assert [r.outcome for r in results] == ["provisioned"] * len(good), results

        abandoned_ids = {certificate_id for certificate_id, _ in abandoned}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = snapshot(raw, policies=True)
            if not abandoned_ids & set(state.certificates):
                break
            time.sleep(0.5)
        assert not abandoned_ids & set(state.certificates), "certificates of expired tokens are still there"
        assert_only_good_devices_exist(state, raw["thing_name_prefix"], good, leavers)
        assert len(state.active()) == len(good)
        for serial in leavers:
            item = state.serials[serial]
            assert item["status"] == "AVAILABLE" and "certificate_id" not in item, item
        # The expired token is gone for good: a device that comes back with it is refused.
        assert_token_refused(endpoint, leavers[0], abandoned[0][1])
    finally:
        emulator.stop()


def assert_token_refused(endpoint: Endpoint, serial: str, token: str) -> None:
    connection = connect(endpoint, f"prov-{serial}")
    try:
        client = identity_client(connection)
        with pytest.raises(V2ServiceException) as info:
            client.register_thing(
                iotidentity.RegisterThingRequest(
                    template_name=endpoint.template_name,
                    certificate_ownership_token=token,
                    parameters={"SerialNumber": serial},
                )
            ).result(TIMEOUT_S)
        assert info.value.modeled_error.error_code == "InvalidCertificateOwnershipToken"
    finally:
        disconnect(connection)


def register_time_s(result) -> float:  # type: ignore[no-untyped-def]
    """How long RegisterThing took: the device's total minus its completed steps."""
    return result.elapsed_s - sum(result.steps_ms.values()) / 1000


def test_a_hook_that_raises_or_sleeps_rejects_only_its_devices(cloud_assembly: Path, tmp_path: Path) -> None:
    """Nothing lost, nothing half-made: devices whose hook raises are rejected (403 AccessDenied) at once,
    those whose hook sleeps 6 s are rejected once AWS's 5 s are up (and stay rejected when the hook finally
    answers "allow"), none of them gets a thing or an ACTIVE certificate; all 30 good devices running
    between them provision."""
    emulator = start_emulator(cloud_assembly, tmp_path / "state", "--hook", "tests.emulator.fault_hooks:hook")
    try:
        raw = emulator.raw
        raising, sleeping, good = tagged("RAISE", 6), tagged("SLEEP", 6), tagged("OK", 30)
        fleet = interleave(raising, good[:15], sleeping, good[15:])
        started = time.monotonic()
        results = {
            r.serial: r
            for r in asyncio.run(
                provision_all(emulator.state_dir / "endpoint.json", fleet, concurrency=len(fleet))
            )
        }
        for serial in good:
            assert results[serial].outcome == "provisioned", results[serial]
        for serial in raising + sleeping:
            assert (results[serial].outcome, results[serial].code) == ("rejected", "AccessDenied"), results[
                serial
            ]
        for serial in raising:
            assert register_time_s(results[serial]) < 1.0 + SLACK_S, results[serial]
        for serial in sleeping:
            assert HOOK_LIMIT_S - 0.5 < register_time_s(results[serial]) < HOOK_LIMIT_S + SLACK_S, results[
                serial
            ]
        # The sleeping hooks answer "allow" after 6 s: that late answer must change nothing.
        time.sleep(max(0.0, started + 6 + 1.5 - time.monotonic()))
        state = snapshot(raw, policies=True)
        assert_only_good_devices_exist(state, raw["thing_name_prefix"], good, raising + sleeping)
        assert len(state.active()) == len(good)
    finally:
        emulator.stop()


def test_the_real_hook_with_dynamodb_hung_rejects_only_its_devices(
    cloud_assembly: Path, tmp_path: Path
) -> None:
    """Nothing lost, nothing half-made: the stack's own hook Lambda, its DynamoDB endpoint a TCP server that
    accepts and never answers requests for the HUNG serials, denies those devices inside AWS's 5 s (its
    own budget is 4 s); their serials stay AVAILABLE with no certificate, no thing or ACTIVE certificate
    exists for them; all 30 good devices in between provision, through the same endpoint."""
    dynamodb = HungDynamoDB(b"serial#HUNG")
    emulator = start_emulator(
        cloud_assembly, tmp_path / "state", env={"AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url}
    )
    try:
        raw = emulator.raw
        dynamodb.upstream = raw["aws_endpoint_url"]
        hung, good = tagged("HUNG", 8), tagged("OK", 30)
        import_serials(raw, hung + good)
        fleet = interleave(hung, good)
        results = {
            r.serial: r
            for r in asyncio.run(
                provision_all(emulator.state_dir / "endpoint.json", fleet, concurrency=len(fleet))
            )
        }
        for serial in good:
            assert results[serial].outcome == "provisioned", results[serial]
        for serial in hung:
            assert (results[serial].outcome, results[serial].code) == ("rejected", "AccessDenied"), results[
                serial
            ]
            assert register_time_s(results[serial]) < HOOK_LIMIT_S, results[serial]
        assert dynamodb.hung_requests >= len(hung) and dynamodb.relayed_requests >= 2 * len(good)
        state = snapshot(raw, policies=True)
        assert_only_good_devices_exist(state, raw["thing_name_prefix"], good, hung)
        for serial in hung:
            item = state.serials[serial]
            assert item["status"] == "AVAILABLE" and "certificate_id" not in item, item
        for serial in good:
            assert state.serials[serial]["status"] == "RESERVED"
    finally:
        emulator.stop()
        dynamodb.close()
