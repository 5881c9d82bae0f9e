"""Fifty devices with fifty certificates race for one serial: exactly one is allowed.

Against a single-threaded moto server, not in-process moto: moto's update_item is a read, a
condition check and a write with no lock, so in-process under threads it lets several writers win
(measured: 1-10 allows out of 50, and RuntimeErrors from its deepcopy). Real DynamoDB serializes
conditional writes per item, and so does a server that handles one request at a time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from provisioning_hook import registry_dynamodb

from .support import (
    REGION,
    cert_id,
    create_table,
    decision_log,
    get_serial_item,
    load_event,
    put_serial,
    register_claim,
    run_hook,
)

RACERS = 50


@pytest.fixture
def served_table(hook_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from .support import serial_moto_server

    with serial_moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        # The one-at-a-time server queues 50 simultaneous requests for longer than the hook's read
        # timeout; this test is about atomicity, so give the clients room (timing has its own tests).
        monkeypatch.setattr(
            registry_dynamodb,
            "_CLIENT_CONFIG",
            Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "total_max_attempts": 1}),
        )
        monkeypatch.setattr(registry_dynamodb, "DECISION_BUDGET_S", 60.0)
        registry_dynamodb.reset_clients()
        client = boto3.client("dynamodb", region_name=REGION, endpoint_url=url)
        create_table(client)
        register_claim(boto3.client("iot", region_name=REGION, endpoint_url=url))
        yield client


@pytest.mark.parametrize("serial", ["SN-RACE-1", "SN-RACE-2"])
def test_fifty_certificates_one_serial_one_allow(
    served_table: Any, capsys: pytest.CaptureFixture[str], serial: str
) -> None:
    from provisioning_hook.handler import lambda_handler

    put_serial(served_table, serial, attributes={"model": "X1"})
    run_hook({}, capsys)  # aim the hook's log at capsys before the threads start
    start = threading.Barrier(RACERS)
    answers: dict[int, dict[str, Any]] = {}

    def device(n: int) -> None:
        event = load_event("register_thing", serial=serial, certificate_id=cert_id(n))
        start.wait()
        answers[n] = lambda_handler(event, None)

    threads = [threading.Thread(target=device, args=(n,)) for n in range(1, RACERS + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    decisions = decision_log(capsys.readouterr().out)
    reasons = Counter(line["reason"] for line in decisions)
    lost_writes = sum(line.get("detail") == "lost the conditional write" for line in decisions)

    winners = [n for n, answer in answers.items() if answer["allowProvisioning"]]
    assert len(answers) == RACERS
    assert len(winners) == 1, reasons
    assert reasons["ALLOWED_NEW"] == 1 and reasons["TAKEN"] == RACERS - 1, reasons
    assert lost_writes >= 1  # the race reached the conditional write, not only the reads
    assert answers[winners[0]]["parameterOverrides"] == {"model": "X1"}
    item = get_serial_item(served_table, serial)
    assert item is not None and item["certificate_id"]["S"] == cert_id(winners[0])


def test_one_certificate_racing_for_many_serials_reserves_one(
    served_table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "one certificate locks many serials" attack, concurrently: the certificate's item and the serial
    item are one transaction, so however the requests interleave the certificate ends up with one serial."""
    from provisioning_hook.handler import lambda_handler

    serials = [f"SN-LOCK-{n}" for n in range(10)]
    for serial in serials:
        put_serial(served_table, serial)
    run_hook({}, capsys)
    start = threading.Barrier(len(serials))
    answers: dict[str, dict[str, Any]] = {}

    def attacker(serial: str) -> None:
        event = load_event("register_thing", serial=serial, certificate_id=cert_id(77), key="one-key")
        start.wait()
        answers[serial] = lambda_handler(event, None)

    threads = [threading.Thread(target=attacker, args=(s,)) for s in serials]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    reasons = Counter(line["reason"] for line in decision_log(capsys.readouterr().out))
    won = [s for s, answer in answers.items() if answer["allowProvisioning"]]
    assert len(won) == 1, reasons
    assert reasons["CERTIFICATE_HOLDS_SERIAL"] + reasons["TAKEN"] == len(serials) - 1, reasons
    reserved = [s for s in serials if get_serial_item(served_table, s)["status"]["S"] == "RESERVED"]  # type: ignore[index]
    assert reserved == won
