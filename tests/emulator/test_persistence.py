"""--persist without sockets: the state file is replaced whole or not at all, a mismatch is one clear
error, the saver writes only after a change, and the registry, tokens and temporary claims come back."""

from __future__ import annotations

import json
import os
import pickle
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.provisioning.ca import CertificateAuthority
from emulator.provisioning.tokens import TokenStore
from emulator.registry import persistence
from emulator.registry.persistence import PeriodicSaver, PersistError, StateFile
from emulator.registry.store import ACTIVE, EXPIRED, Registry
from tests.emulator.test_registry import DEVICE_POLICY, pending_certificate, plan_for


def test_a_failed_save_leaves_the_previous_state_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(tmp_path)
    state.save({"generation": 1})
    assert oct(state.path.stat().st_mode & 0o777) == "0o600"  # tokens are bearer secrets

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        state.save({"generation": 2})
    monkeypatch.undo()
    assert state.load() == {"generation": 1}
    assert [p.name for p in tmp_path.iterdir()] == [state.path.name]  # no temporary file left behind


def test_a_state_file_it_cannot_use_is_one_clear_error(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    assert state.load() is None
    state.path.write_bytes(b"\x80garbage")
    with pytest.raises(PersistError, match="cannot be read .* move it away"):
        state.load()
    document = {"format": persistence.FORMAT, "moto": "0.0.1", "sections": {}}
    state.path.write_bytes(pickle.dumps(document))
    with pytest.raises(PersistError, match="saved with moto 0.0.1, this emulator runs moto"):
        state.load()


def test_the_saver_writes_only_after_a_change_and_once_more_on_stop(tmp_path: Path) -> None:
    version = [0]
    collected: list[int] = []

    def collect() -> dict[str, int]:
        collected.append(version[0])
        return {"version": version[0]}

    saver = PeriodicSaver(StateFile(tmp_path), collect, lambda: version[0], interval_s=60)
    assert saver.save() is True
    assert saver.save() is False  # nothing changed: no pickling, no write
    version[0] = 1
    assert saver.save() is True
    version[0] = 2
    saver.stop()  # the last save, with the last change
    assert saver.finished.is_set()
    assert StateFile(tmp_path).load() == {"version": 2} and collected == [0, 1, 2]


def test_tokens_keep_the_time_they_had_left(authority: CertificateAuthority) -> None:
    tokens = TokenStore(ttl_s=3600)
    live = tokens.issue("a" * 64)
    short = TokenStore(ttl_s=0.05)
    expired = short.issue("b" * 64)
    time.sleep(0.1)
    saved = tokens.snapshot() + short.snapshot()
    restored = TokenStore(ttl_s=3600)
    restored.restore(saved)
    assert restored.claim(live).certificate_id == "a" * 64
    assert restored.expire() == ["b" * 64]  # expired while the emulator was down: gone at once
    with pytest.raises(Exception, match="invalid or has expired"):
        restored.claim(expired)


@pytest.fixture()
def account() -> Iterator[str]:
    from moto import settings

    config = settings.default_user_config.setdefault("iot", {})
    previous = config.get("use_valid_cert")
    config["use_valid_cert"] = True
    yield f"{random.randrange(10**11, 10**12)}"  # moto's backends are process-global
    if previous is None:
        config.pop("use_valid_cert", None)
    else:
        config["use_valid_cert"] = previous


def test_the_registry_comes_back_with_its_indexes_and_temporary_claims(
    account: str, authority: CertificateAuthority
) -> None:
    from moto.iot.models import iot_backends

    registry = Registry(region="eu-west-1", account_id=account)
    registry.iot.create_thing_group("provisioned", None, {})
    registry.iot.create_policy("DevicePolicy", json.dumps(DEVICE_POLICY))
    device = pending_certificate(registry, authority)
    registry.apply_plan(plan_for(device), device)
    claim = authority.create_keys_and_certificate()
    registry.add_temporary_claim(
        claim.certificate_pem, template_name="T", policy_document="{}", expires_at=time.time() + 300
    )
    snapshot = registry.snapshot()

    iot_backends[account].reset()  # as a new process: nothing of the first registry is left
    assert not iot_backends[account]["eu-west-1"].things
    restored = Registry(region="eu-west-1", account_id=account, state=snapshot)
    identity = restored.identity(device, "device-SN1")
    assert identity is not None and identity.certificate.status == ACTIVE
    assert identity.thing_names == ("device-SN1",) and identity.policy_documents[0][0] == "DevicePolicy"
    assert restored.iot.list_thing_principals("device-SN1") == [identity.certificate.certificate_arn]
    temporary = restored.identity(claim.certificate_id, "anyone")
    assert temporary is not None and temporary.certificate.status == ACTIVE
    assert claim.certificate_id not in restored.iot.certificates  # never listed

    expired = Registry(
        region="eu-west-1", account_id=account, state=snapshot, clock=lambda: time.time() + 301
    )
    lapsed = expired.identity(claim.certificate_id, "anyone")
    assert lapsed is not None and lapsed.certificate.status == EXPIRED
    assert expired.claim_expired(claim.certificate_id) and not expired.claim_expired(device)
