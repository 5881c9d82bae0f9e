"""The subscription index: it matches exactly what a scan of every filter matches (MQTT's and AWS's rules),
and what a publish costs follows the matching subscriptions, not the number of subscriptions."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

from emulator.mqtt.limits import Limits
from emulator.mqtt.routing import Router
from emulator.mqtt.sessions import Message, SessionStore, Subscription
from emulator.mqtt.topics import topic_matches
from tests.emulator.mqtt_harness import Env, broker_env, publish_packet, subscribe_packet

LEVELS = ["a", "b", "c", "$aws", "", "dev-1"]


def random_filter(rng: random.Random) -> str:
    levels = [rng.choice([*LEVELS, "+"]) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        levels.append("#")
    return "/".join(levels)


def random_topic(rng: random.Random) -> str:
    return "/".join(rng.choice(LEVELS) for _ in range(rng.randint(1, 5)))


def scan(store: SessionStore, topic: str) -> set[tuple[str, str]]:
    return {
        (state.client_id, key)
        for state in store.states.values()
        for key, subscription in state.subscriptions.items()
        if topic_matches(subscription.topic_filter, topic)
    }


def indexed(store: SessionStore, topic: str) -> set[tuple[str, str]]:
    found = set()
    for node in store.index.nodes(topic):
        for state, subscription in (node.plain or {}).items():
            found.add((state.client_id, subscription.topic_filter))
        for share, members in (node.shared or {}).items():
            for state, subscription in members.items():
                found.add((state.client_id, f"$share/{share}/{subscription.topic_filter}"))
    return found


def test_the_index_matches_what_a_scan_matches() -> None:
    rng = random.Random(13)
    store = SessionStore(Limits())
    states = [store.create(f"c{i}", "cert", 0) for i in range(30)]
    for state in states:
        for _ in range(rng.randint(0, 12)):
            topic_filter = random_filter(rng)
            share = rng.choice([None, None, "g1", "g2"])
            key = topic_filter if share is None else f"$share/{share}/{topic_filter}"
            store.subscribe(state, key, Subscription(topic_filter, rng.randint(0, 1), share=share))
    topics = [random_topic(rng) for _ in range(400)] + ["$aws/a", "a", "a/b", "/a", "a/"]
    for topic in topics:
        assert indexed(store, topic) == scan(store, topic), topic
        for state in states:
            expected = [s for s in state.subscriptions.values() if topic_matches(s.topic_filter, topic)]
            best = store.index.best_for(state, topic)
            assert (best.qos if best else None) == (max(s.qos for s in expected) if expected else None)
    # Unsubscribing and discarding sessions leave the index exactly as large as what is left.
    for state in states[::2]:
        for key in list(state.subscriptions)[::2]:
            assert store.unsubscribe(state, key)
    for state in states[1::3]:
        store.discard(state)
    for topic in topics:
        assert indexed(store, topic) == scan(store, topic), topic
    assert store.index.count == sum(len(s.subscriptions) for s in store.states.values())
    for state in list(store.states.values()):
        store.discard(state)
    assert store.index.count == 0 and store.index.nodes("a/b/c") == []
    assert store.index._root.children is None and not store.index._exact  # nothing left behind


def route_cpu_us(subscriptions: int) -> float:
    """CPU microseconds of one `Router.route` for a topic one session subscribes to, with `subscriptions`
    other filters (exact and wildcard) held by 1,000 sessions that do not match it."""
    store = SessionStore(Limits())
    router = Router(None, [], Limits(), store)  # type: ignore[arg-type]
    states = [store.create(f"s{i}", "cert", 60) for i in range(1000)]
    for n in range(subscriptions):
        state = states[n % len(states)]
        topic_filter = f"fleet/{n}/telemetry" if n % 2 else f"fleet/{n}/+/#"
        store.subscribe(state, topic_filter, Subscription(topic_filter, 1))
    target = store.create("target", "cert", 60)
    store.subscribe(target, "fleet/target/telemetry", Subscription("fleet/target/telemetry", 1))
    message = Message("fleet/target/telemetry", b"x", 0)
    samples = []
    for _ in range(7):
        started = time.thread_time()
        for _ in range(300):
            assert router.route(message) == 0  # QoS 0 to a session that is away: offered, not kept
        samples.append((time.thread_time() - started) / 300 * 1e6)
    return statistics.median(samples)


def test_routing_cost_does_not_grow_with_the_number_of_subscriptions() -> None:
    small, large = route_cpu_us(1_000), route_cpu_us(40_000)
    # A scan grows 40x; the index stays flat (each route visits the same handful of nodes).
    assert large < small * 3 + 20, (small, large)


def test_publish_round_trip_with_50_subscriptions_on_each_of_100_connections(tmp_path: Path) -> None:
    """Wall time on a shared machine is noisy: the round trip (publisher to itself) gets a generous bound,
    and the broker's own routing CPU per publish (thread time inside `Router.route`) a tight one."""

    async def scenario(env: Env) -> None:
        clients = []
        for c in range(100):
            client, _ = await env.connected(f"ok-{c}")
            for batch in range(0, 50, 5):
                filters = [
                    f"allowed/{c}/{i}" if i % 5 else f"allowed/+/{i}/#" for i in range(batch, batch + 5)
                ]
                await client.send(subscribe_packet(1, *filters))
                assert await client.suback() == [1] * 5
            clients.append(client)
        assert env.broker.store.index.count == 5000
        router, spent = env.broker.router, []
        route = router.route

        def timed(message: Message) -> int:
            started = time.thread_time()
            try:
                return route(message)
            finally:
                spent.append(time.thread_time() - started)

        router.route = timed  # type: ignore[method-assign]
        publisher = clients[7]
        round_trips = []
        for n in range(30):
            started = time.perf_counter()
            await publisher.send(publish_packet("allowed/7/3", f"{n}".encode()))
            message = await publisher.message()
            round_trips.append(time.perf_counter() - started)
            assert message.payload == f"{n}".encode()
        assert statistics.median(round_trips) < 0.050, round_trips
        assert max(spent) < 0.005, spent  # a scan of 5,000 filters took ~17 ms per publish (issue 13)
        # Another client's wildcard matches too: each publish reaches both, once.
        await clients[7].send(subscribe_packet(2, "allowed/+/3"))
        await clients[7].suback()
        await clients[8].send(publish_packet("allowed/7/3", b"w"))
        assert (await clients[7].message()).payload == b"w"
        assert await clients[7].silent(0.2)

    async def main() -> None:
        async with broker_env(tmp_path) as env:
            await scenario(env)

    asyncio.run(main())
