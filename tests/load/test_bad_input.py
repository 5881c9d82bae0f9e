"""10,000 malformed or random requests on the provisioning topics while good devices provision."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from tests.emulator.conftest import EmulatorProcess
from tests.emulator.device import RawClient, connect, disconnect, encode
from tests.load.garbage import CSR, Garbage, garbage, json_decoder_limits
from tests.load.support import DeviceResult, import_serials, provision_all, snapshot, start_emulator

pytestmark = [pytest.mark.load, pytest.mark.e2e, pytest.mark.xdist_group("load-bad-input")]

REQUESTS = 10_000
CONNECTIONS = 4
GOOD_DEVICES = 60
REPLY_WAIT_S = 120


@pytest.fixture(scope="module")
def emulator(cloud_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = start_emulator(cloud_assembly, tmp_path_factory.mktemp("bad-input") / "state")
    yield process
    process.stop()


def request_topic(raw: dict[str, Any], item: Garbage) -> str:
    if item.operation == CSR:
        return f"$aws/certificates/create-from-csr/{item.fmt}"
    return f"$aws/provisioning-templates/{raw['template_name']}/provision/{item.fmt}"


def decode(topic: str, payload: bytes) -> Any:
    return cbor2.loads(payload) if "/cbor/" in topic else json.loads(payload)


def test_every_bad_request_gets_exactly_one_rejection(emulator: EmulatorProcess) -> None:
    """Nothing lost: on each of 4 claim connections, every request topic gets exactly as many replies as
    requests were published to it, all on `/rejected` with a 4xx status (none accepted, none 5xx, nothing
    extra after a grace period); the emulator process stays up and keeps serving; all 60 good devices
    provisioning at the same time succeed and are RESERVED in the serial registry."""
    raw, endpoint = emulator.raw, emulator.endpoint
    tag = uuid.uuid4().hex[:6].upper()
    good = [f"GD{tag}{i:03d}" for i in range(GOOD_DEVICES + 1)]
    import_serials(raw, good)
    items = list(garbage(REQUESTS))
    topics = sorted({request_topic(raw, item) for item in items})

    clients = [RawClient(connect(endpoint, f"prov-garbage-{tag}-{i}")) for i in range(CONNECTIONS)]
    good_results: list[DeviceResult] = []
    good_window: list[float] = []

    def run_good_devices() -> None:
        good_window.append(time.monotonic())
        good_results.extend(
            asyncio.run(provision_all(emulator.state_dir / "endpoint.json", good[:-1], concurrency=10))
        )
        good_window.append(time.monotonic())

    try:
        for client in clients:
            for topic in topics:
                for suffix in ("accepted", "rejected"):
                    client.subscribe(f"{topic}/{suffix}")
        sent: list[Counter[str]] = [Counter() for _ in clients]
        good_devices = threading.Thread(target=run_good_devices)
        flood_started = time.monotonic()
        good_devices.start()
        # Pipelined: every request is published without waiting for its PUBACK or reply, round-robin over
        # the connections, in waves so the good devices' requests interleave with them.
        pending = []
        for n, item in enumerate(items):
            index = n % CONNECTIONS
            topic = request_topic(raw, item)
            pending.append(clients[index].publish(topic, item.payload))
            sent[index][topic] += 1
            if n % 1000 == 999:
                for future in pending:
                    future.result(60)
                pending.clear()
        for future in pending:
            future.result(60)
        flood_published = time.monotonic()

        def replies() -> int:
            return sum(len(c.messages) for c in clients)

        deadline = time.monotonic() + REPLY_WAIT_S
        while replies() < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.2)
        flood_answered = time.monotonic()
        good_devices.join(120)
        time.sleep(1.0)  # a grace period: a second reply to any request would arrive by now
        print(
            f"{REQUESTS} bad requests published in {flood_published - flood_started:.1f} s, "
            f"all answered after {flood_answered - flood_started:.1f} s"
        )

        statuses: Counter[tuple[int, str]] = Counter()
        for index, client in enumerate(clients):
            received: dict[str, Counter[str]] = defaultdict(Counter)
            for reply_topic, payload in client.messages:
                topic, _, outcome = reply_topic.rpartition("/")
                received[topic][outcome] += 1
                if outcome == "rejected":
                    body = decode(reply_topic, payload)
                    statuses[(body["statusCode"], body["errorCode"])] += 1
            for topic in topics:
                assert received[topic] == Counter({"rejected": sent[index][topic]}), (index, topic)
        print("rejections:", dict(statuses))
        assert sum(statuses.values()) == REQUESTS
        # Bad input is the client's fault: every answer is a 4xx, never a 5xx (JSON beyond the decoder's
        # limits included: test_json_beyond_the_decoders_limits_is_a_400 below).
        assert all(400 <= status < 500 for status, _ in statuses), statuses

        # The good devices ran during the flood, and every one of them provisioned.
        assert good_window[0] < flood_published and good_window[1] > flood_started
        assert [r.outcome for r in good_results] == ["provisioned"] * GOOD_DEVICES, [
            r for r in good_results if r.outcome != "provisioned"
        ]
    finally:
        for client in clients:
            disconnect(client.connection)

    # Still up and serving: one more device after the flood.
    assert emulator.process.poll() is None
    (last,) = asyncio.run(provision_all(emulator.state_dir / "endpoint.json", good[-1:]))
    assert last.outcome == "provisioned", last
    state = snapshot(raw)
    assert set(state.things) == {raw["thing_name_prefix"] + s for s in good}
    assert {state.serials[s]["status"] for s in good} == {"RESERVED"}
    assert len(state.active()) == len(good)


@pytest.mark.parametrize("seed", [1, 2])  # seed 1: nesting 1,000+ deep; seed 2: a 5,000+ digit number
def test_json_beyond_the_decoders_limits_is_a_400(emulator: EmulatorProcess, seed: int) -> None:
    """Nothing lost: JSON that Python's decoder refuses with RecursionError or ValueError (not a
    JSONDecodeError) is bad input like any other: one 400 InvalidPayload, the connection still usable."""
    import random

    connection = connect(emulator.endpoint, f"prov-limits-{uuid.uuid4().hex[:8]}")
    try:
        raw = RawClient(connection)
        payload = json_decoder_limits(random.Random(seed))
        outcome, body = raw.request("$aws/certificates/create-from-csr/json", payload)
        assert (outcome, body["statusCode"], body["errorCode"]) == ("rejected", 400, "InvalidPayload"), body
        outcome, _ = raw.request("$aws/certificates/create-from-csr/json", encode({"x": 1}, "json"))
        assert outcome == "rejected"
    finally:
        disconnect(connection)
