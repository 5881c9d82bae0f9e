from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from device_sim.histogram import SUB_BUCKETS, Histogram, bucket_bounds, bucket_index

latencies = st.lists(st.floats(min_value=0.001, max_value=600_000, allow_nan=False), min_size=1, max_size=300)


@given(st.floats(min_value=0.001, max_value=1e9, allow_nan=False))
def test_a_value_lies_in_its_bucket_and_the_bucket_is_narrow(value: float) -> None:
    lower, upper = bucket_bounds(bucket_index(value))
    assert lower <= value < upper
    assert (upper - lower) / lower <= 1 / SUB_BUCKETS + 1e-12


def test_buckets_are_ordered_and_contiguous() -> None:
    previous_upper = None
    for index in range(1, 2000):
        lower, upper = bucket_bounds(index)
        assert lower < upper
        if previous_upper is not None:
            assert lower == previous_upper
        previous_upper = upper


def test_out_of_range_values_are_clamped() -> None:
    assert bucket_index(0) == 0
    assert bucket_index(-5) == 0
    assert bucket_index(math.nan) == 0
    assert bucket_index(1e30) == bucket_index(1e40)


@given(latencies, latencies, latencies)
def test_merging_shards_gives_exactly_the_histogram_of_all_values(
    a: list[float], b: list[float], c: list[float]
) -> None:
    whole = Histogram()
    for v in a + b + c:
        whole.record(v)
    parts = []
    for values in (a, b, c):
        h = Histogram()
        for v in values:
            h.record(v)
        parts.append(Histogram.from_json(h.to_json()))  # through JSON, as `report merge` does
    merged = Histogram()
    for h in parts:
        merged.merge(h)
    assert merged.counts == whole.counts
    assert merged.count == whole.count
    assert merged.max_ms == whole.max_ms and merged.min_ms == whole.min_ms
    assert merged.summary() == whole.summary()


@given(latencies, st.sampled_from([50, 90, 99]))
def test_percentiles_are_within_a_bucket_of_the_exact_value(values: list[float], p: int) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    exact = sorted(values)[max(1, math.ceil(len(values) * p / 100)) - 1]  # nearest rank
    estimate = h.percentile(p)
    assert exact <= estimate * (1 + 1e-9)
    assert estimate <= exact * (1 + 1 / SUB_BUCKETS) + 1e-9


def test_summary_of_known_values() -> None:
    h = Histogram()
    for v in range(1, 101):
        h.record(float(v))
    summary = h.summary()
    assert 50 <= summary["p50"] <= 51.6
    assert 90 <= summary["p90"] <= 92.9
    assert 95 <= summary["p95"] <= 98
    assert summary["max"] == 100.0
    assert summary["mean"] == 50.5
    assert Histogram().summary() == {"p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
