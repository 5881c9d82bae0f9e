from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from device_sim.html_report import render
from device_sim.report import STEPS, TOTAL, FleetStats, merge_stats, read_report, write_report
from device_sim.thresholds import Thresholds

CONTRACT_KEYS = {
    "devices",
    "provisioned",
    "rejected",
    "failed",
    "duration_s",
    "throughput_per_s",
    "latency_ms",
    "rejections",
    "failures",
}


def simulated(seed: int, devices: int, start: float) -> FleetStats:
    """A report filled as a run would fill it, with a deterministic mix of outcomes."""
    rng = random.Random(seed)
    stats = FleetStats(started_epoch_s=start, run={"format": "json", "flow": "csr", "shard": f"{seed}/3"})
    stats.devices = devices
    now = start
    for _ in range(devices):
        stats.record_start(now=now)
        now += rng.uniform(0, 0.05)
        for step in STEPS:
            stats.record_step(step, rng.lognormvariate(3, 0.6))
        roll = rng.random()
        if roll < 0.8:
            stats.record_outcome("provisioned", total_ms=rng.lognormvariate(5, 0.4), now=now)
        elif roll < 0.95:
            stats.record_outcome("rejected", code=rng.choice(["ResourceNotFound", "AccessDenied"]), now=now)
        else:
            stats.record_outcome("failed", code="timeout", now=now)
        if roll > 0.9:
            stats.record_retry("register_thing", "throttled")
    stats.finish(now=now + 0.01)
    return stats


def test_report_has_the_contract_keys_and_shapes() -> None:
    data = simulated(1, 200, 1_700_000_000.0).to_json()
    assert CONTRACT_KEYS <= set(data)
    assert data["devices"] == data["provisioned"] + data["rejected"] + data["failed"] == 200
    assert set(data["latency_ms"]) == {TOTAL, *STEPS}
    for summary in data["latency_ms"].values():
        assert set(summary) == {"p50", "p90", "p95", "p99", "max", "mean"}
        assert 0 < summary["p50"] <= summary["p90"] <= summary["p95"] <= summary["p99"] <= summary["max"]
        assert 0 < summary["mean"] <= summary["max"]
    assert sum(data["rejections"].values()) == data["rejected"]
    assert sum(data["failures"].values()) == data["failed"]
    assert data["throughput_per_s"] == round(data["provisioned"] / data["duration_s"], 2)
    assert data["retries"]["total"] == sum(data["retries"]["by_reason"].values())
    assert data["histograms"][TOTAL]["count"] == data["provisioned"]
    assert sum(data["timeline"]["provisioned"]) == data["provisioned"]
    json.dumps(data)  # plain JSON all the way down


def test_report_round_trips_through_its_file(tmp_path: Path) -> None:
    stats = simulated(2, 150, 1_700_000_100.0)
    write_report(stats, tmp_path / "r.json")
    assert read_report(tmp_path / "r.json").to_json() == stats.to_json()


def test_merged_shards_equal_the_report_of_one_process() -> None:
    whole = simulated(3, 300, 1_700_000_000.0)
    # The same outcomes split into shards by replaying with the same seed is not possible; split the whole
    # instead: three disjoint reports whose union is `whole`.
    shards = [simulated(seed, 100, 1_700_000_000.0 + seed) for seed in (4, 5, 6)]
    union = FleetStats(started_epoch_s=min(s.started_epoch_s for s in shards))
    for shard in shards:
        for name, h in shard.histograms.items():
            union.histograms[name].merge(h)
    merged = merge_stats([FleetStats.from_json(s.to_json()) for s in shards])
    data = merged.to_json()
    assert data["devices"] == 300
    assert data["provisioned"] == sum(s.provisioned for s in shards)
    assert data["rejections"] == {k: sum(s.rejections[k] for s in shards) for k in data["rejections"]}
    assert data["latency_ms"] == {n: h.summary() for n, h in union.histograms.items()}
    assert data["duration_s"] == round(max(s.finished_epoch_s for s in shards) - 1_700_000_004.0, 3)
    assert sum(data["timeline"]["provisioned"]) == data["provisioned"]
    assert data["run"]["merged_from"] == 3
    assert whole.devices == 300  # the single-process report has the same shape
    assert set(whole.to_json()) == set(data)


def test_report_merge_command(tmp_path: Path) -> None:
    paths = []
    for seed in (7, 8):
        path = tmp_path / f"shard{seed}.json"
        write_report(simulated(seed, 50, 1_700_000_000.0), path)
        paths.append(str(path))
    result = CliRunner().invoke(
        app,
        [
            "report",
            "merge",
            *paths,
            "--out",
            str(tmp_path / "all.json"),
            "--html",
            str(tmp_path / "all.html"),
        ],
    )
    assert result.exit_code == 0, result.output  # merging checks only the thresholds it is given
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["devices"] == 100
    strict = CliRunner().invoke(
        app, ["report", "merge", *paths, "--out", str(tmp_path / "s.json"), "--max-failed", "0"]
    )
    assert strict.exit_code == 1 and "device-sim: threshold: " in strict.stderr
    html = (tmp_path / "all.html").read_text()
    assert (
        "<svg" in html
        and "<script" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


def test_report_merge_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    write_report(simulated(9, 10, 1_700_000_000.0), good)
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": 3}')
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    runner = CliRunner()
    for path, message in (
        (bad, "is not a device_sim fleet report"),
        (broken, "is not valid JSON"),
        (tmp_path / "missing.json", "cannot read the report"),
    ):
        result = runner.invoke(
            app, ["report", "merge", str(good), str(path), "--out", str(tmp_path / "o.json")]
        )
        assert result.exit_code == 2
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    other_scheme = json.loads(good.read_text())
    other_scheme["histograms"]["total"]["sub_buckets"] = 16
    bad.write_text(json.dumps(other_scheme))
    result = runner.invoke(app, ["report", "merge", str(good), str(bad), "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 2 and "histogram scheme" in result.stderr


def test_html_report_is_self_contained() -> None:
    page = render(simulated(10, 80, 1_700_000_000.0))
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 4  # distribution, throughput, percentiles and devices in flight over time
    assert "<script" not in page and "src=" not in page and "href=" not in page


def test_merged_report_keeps_each_runs_format_flow_and_target() -> None:
    parts = [simulated(seed, 20, 1_700_000_000.0 + seed) for seed in (11, 12, 13)]
    parts[1].run.update(format="cbor", target="127.0.0.1:1")
    for part in parts:
        part.run.setdefault("target", "127.0.0.1:1")
    merged = merge_stats(parts).to_json()["run"]
    assert merged["format"] == "json+cbor" and merged["flow"] == "csr" and merged["target"] == "127.0.0.1:1"
    assert [run["format"] for run in merged["runs"]] == ["json", "cbor", "json"]
    # Merging a merged report again keeps every run, not one per file.
    again = merge_stats(
        [FleetStats.from_json(merge_stats(parts).to_json()), simulated(14, 5, 1_700_000_100.0)]
    )
    assert len(again.run["runs"]) == 4 and again.run["format"] == "json+cbor"


def test_merged_throughput_is_over_the_active_time_not_the_gaps() -> None:
    first = simulated(15, 100, 1_700_000_000.0)
    second = simulated(16, 100, 1_700_000_500.0)  # 500 s later: a gap of ~495 s between the runs
    merged = merge_stats([first, second])
    data = merged.to_json()
    active = first.duration_s + second.duration_s
    assert data["active_s"] == round(active, 3)
    assert data["throughput_per_s"] == round(data["provisioned"] / active, 2)
    assert data["duration_s"] > 400  # the span still says how long it all took
    each = [p.throughput_per_s for p in (first, second)]
    assert min(each) * 0.9 <= merged.throughput_per_s <= max(each) * 1.1
    overlapping = merge_stats([simulated(17, 50, 1_700_000_000.0), simulated(18, 50, 1_700_000_000.5)])
    assert overlapping.active_s == pytest.approx(overlapping.duration_s)


def test_distribution_axis_labels_do_not_overlap() -> None:
    page = render(simulated(19, 300, 1_700_000_000.0))
    ys = [float(y) for y in re.findall(r'<text class="ylabel" x="[0-9.]+" y="([0-9.]+)"', page)]
    assert len(ys) == 5  # p50, p90, p99, p99.9, max
    gaps = [a - b for a, b in zip(ys, ys[1:], strict=False)]
    assert all(gap >= 14 for gap in gaps), ys  # 11 px text


def test_timeline_stays_small_and_adds_up_over_a_long_run() -> None:
    stats = FleetStats(started_epoch_s=1_700_000_000.0)
    for second in range(0, 3000, 3):  # a 50-minute run
        stats.record_start(now=1_700_000_000.0 + second)
        stats.record_outcome("provisioned", total_ms=100 + second % 7, now=1_700_000_000.5 + second)
    stats.finish(now=1_700_003_000.0)
    timeline = stats.to_json()["timeline"]
    assert len(timeline["provisioned"]) <= 512 and timeline["interval_s"] == 8
    assert sum(timeline["provisioned"]) == sum(timeline["started"]) == 1000
    assert sum(sum(slot.values()) for slot in timeline["latency_total"]) == 1000
    merged = merge_stats([stats, FleetStats.from_json(stats.to_json())])
    assert sum(merged.to_json()["timeline"]["provisioned"]) == 2000
    assert max(merged.timeline.in_flight()) <= 2


def test_devices_in_flight_over_time() -> None:
    stats = FleetStats(started_epoch_s=1_700_000_000.0)
    for _ in range(10):
        stats.record_start(now=1_700_000_000.0)
    for i in range(10):
        stats.record_outcome("provisioned", total_ms=50.0, now=1_700_000_001.0 + i)
    assert stats.timeline.in_flight()[:4] == [10, 9, 8, 7]
    assert stats.timeline.in_flight()[-1] == 0


def test_thresholds() -> None:
    stats = simulated(20, 200, 1_700_000_000.0)
    assert Thresholds(max_failed=None).breaches(stats) == []
    lines = Thresholds(max_p99_ms=1.0, max_failed=0, max_rejected=1).breaches(stats)
    assert [line.split(" ")[-2] for line in lines] == ["--max-failed", "--max-rejected", "--max-p99-ms"]
    rejected_whole = FleetStats()
    for _ in range(5):
        rejected_whole.record_outcome("rejected", code="AccessDenied")
    assert Thresholds().breaches(rejected_whole) == ["none of the 5 devices that finished was provisioned"]
