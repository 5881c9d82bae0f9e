"""The full flow through the emulator: claim connect, CSR, RegisterThing with the stack's real hook,
reconnect as the thing, first publish. 1,000 devices at concurrency 50, 100 and 200.

The emulator runs as `python -m emulator up` in its own process (a fresh one per run, so each starts from
the same empty registry); the simulator's fleet runs as another child process. Both share this machine's
cores, as the target asks ("emulator and simulator together").

Variants (the hook on threads, attestation, MQTT 5, ...) are compared with the default at the target's
concurrency, side by side: baseline and variant run back to back, `PAIRS` times, each pair in the other
order than the one before, and the ratio is of their summed devices/s, so a machine that slows down or
speeds up during the run, and the second place of a pair, weigh on both alike.

Every run speaks MQTT 3.1.1 unless its variant names another version (`--mqtt` in its fleet_args): the
version of the embedded devices the project targets, and the one every earlier result measured. The
simulator's own default is MQTT 5; the "MQTT 5" variant measures it against 3.1.1 (issue 12: within 10%).
Each run also says how close each process came to its own single-thread limit ("share of one thread"):
the front end's busiest thread (its event loop: the thread that cannot be spread over cores) CPU over the
run's wall seconds; the hook process's CPU over wall (GIL-bound: one thread's worth at most); the
simulator's likewise. The process nearest 1.0 is the next bottleneck.

"before issue 17" runs the emulator of commit BEFORE_ISSUE_17 (a temporary `git worktree`) against today's,
side by side, and reports today's CPU per device, devices/s and p99 as ratios of that baseline's.
`run()` returns the results and writes bench/results/flow.json.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.stack import CLK_TCK, REPO_ROOT, import_serials, run_fleet, start_emulator, synthesize, workdir
from emulator import process as emulator_process

RESULTS = REPO_ROOT / "bench" / "results" / "flow.json"
DEVICES = 1000
CONCURRENCIES = (50, 100, 200)
TARGET = {"concurrency": 100, "devices_per_s": 50.0, "p99_total_ms": 3000.0, "failed": 0}
STEPS = ("claim_connect", "create_certificate", "register_thing", "reconnect", "first_publish", "total")
PAIRS = 2  # baseline/variant pairs per comparison
BASELINE_MQTT = ("--mqtt", "3.1.1")
T = TypeVar("T")
BEFORE_ISSUE_17 = "ac09c11"  # main before the CPU work of issue 17: the "before issue 17" variant runs it


@dataclass(frozen=True)
class Variant:
    """One way to run the flow: emulator options, fleet options, and whether serials carry device keys."""

    name: str
    emulator_args: tuple[str, ...] = ()
    fleet_args: tuple[str, ...] = ()
    attested: bool = False  # factory keys per serial, their fingerprints in the registry (issue 11)
    limit: float | None = None  # the least variant/baseline devices/s ratio its issue allows
    checkout: Path | None = None  # the emulator of another copy of the repository (an older version)

    @property
    def tag(self) -> str:
        return "".join(c for c in self.name.title() if c.isalnum())[:12]


BASELINE = Variant(
    "default"
)  # the hook and the serial table in a second process (`--hook-isolation process`)
VARIANTS = (
    Variant("hook on threads", emulator_args=("--hook-isolation", "thread")),
    Variant("attestation", attested=True, limit=0.95),
    Variant("MQTT 5", fleet_args=("--mqtt", "5"), limit=0.9),
)
BEFORE = "before issue 17"  # added by run() when the commit can be checked out (`older_checkout`)


def measure(
    assembly: Path,
    scratch: Path,
    concurrency: int,
    devices: int = DEVICES,
    variant: Variant = BASELINE,
    run: int = 0,
) -> dict[str, Any]:
    name = f"{variant.tag}-{concurrency}-{run}"
    emulator = start_emulator(
        assembly, scratch / f"state-{name}", *variant.emulator_args, checkout=variant.checkout
    )
    try:
        serials = [f"B{variant.tag[:4].upper()}{concurrency:03d}{run}{i:06d}" for i in range(devices)]
        fleet_args = list(variant.fleet_args)
        if "--mqtt" not in fleet_args:
            fleet_args = [*BASELINE_MQTT, *fleet_args]
        if variant.attested:
            keys_dir = scratch / f"keys-{name}"
            import_serials(
                emulator.endpoint, serials, keys=factory_keys(serials, keys_dir, scratch / f"{name}.csv")
            )
            fleet_args += ["--keys-dir", str(keys_dir)]
        else:
            import_serials(emulator.endpoint, serials)
        cpu_before = emulator.cpu_by_process_s()
        threads_before = thread_cpu_s(emulator.process.pid)
        fleet = run_fleet(emulator.endpoint_file, serials, concurrency, scratch, *fleet_args)
        threads_after = thread_cpu_s(emulator.process.pid)
        cpu_after = emulator.cpu_by_process_s()
        emulator_cpu = {part: cpu_after[part] - cpu_before[part] for part in cpu_after}
        emulator_rss = emulator.max_rss_mb()
    finally:
        emulator.stop()
    report = fleet.report
    provisioned = report["provisioned"]
    return {
        "variant": variant.name,
        "mqtt": report["run"].get("mqtt"),
        "concurrency": concurrency,
        "devices": devices,
        "provisioned": provisioned,
        "rejected": report["rejected"],
        "failed": report["failed"],
        "failures": report["failures"],
        "rejections": report["rejections"],
        "retries": report["retries"]["total"],
        "retries_by_reason": report["retries"]["by_reason"],
        "duration_s": report["duration_s"],
        "devices_per_s": report["throughput_per_s"],
        "latency_ms": {step: report["latency_ms"][step] for step in STEPS},
        "cpu_ms_per_device": {
            "emulator": round(1000 * sum(emulator_cpu.values()) / max(1, provisioned), 1),
            "emulator_main": round(1000 * emulator_cpu["emulator"] / max(1, provisioned), 1),
            "hook_process": round(1000 * emulator_cpu["hook"] / max(1, provisioned), 1),
            "simulator": round(1000 * fleet.cpu_s / max(1, provisioned), 1),
        },
        "share_of_one_thread": {
            # The busiest thread is the event loop's (issue 17's profile: 82% of the front end's CPU); the
            # old emulator of a side-by-side run says nothing of its threads, so it is found, not named.
            "front_end_loop": round(busiest_thread_s(threads_before, threads_after) / fleet.wall_s, 3),
            "hook_process": round(emulator_cpu["hook"] / fleet.wall_s, 3),
            "simulator": round(fleet.cpu_s / fleet.wall_s, 3),
        },
        "wall_s": round(fleet.wall_s, 2),
        "peak_rss_mb": {"emulator": round(emulator_rss, 1), "simulator": round(fleet.max_rss_mb, 1)},
        "command": " ".join(fleet.command),
    }


def thread_cpu_s(pid: int) -> dict[int, float]:
    """User + system CPU so far of each thread of `pid`, by thread id (/proc/PID/task/TID/stat)."""
    found: dict[int, float] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def busiest_thread_s(before: dict[int, float], after: dict[int, float]) -> float:
    """The CPU seconds of the thread that spent the most between two `thread_cpu_s` readings."""
    return max((cpu - before.get(tid, 0.0) for tid, cpu in after.items()), default=0.0)


def factory_keys(serials: list[str], keys_dir: Path, manifest: Path) -> dict[str, str]:
    """The factory's test station (`device_sim factory`): a key per serial, outside the measured run;
    returns each serial's fingerprint from the manifest it writes."""
    serials_file = manifest.with_suffix(".serials")
    serials_file.write_text("\n".join(serials) + "\n")
    subprocess.run(
        [sys.executable, "-m", "device_sim", "factory", "--serials", str(serials_file), "--keys-dir",
         str(keys_dir), "--manifest", str(manifest)],
        cwd=REPO_ROOT,
        env=emulator_process.child_environment(),
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:] if line]
    return {row[0]: row[1] for row in rows}


def compare(
    assembly: Path, scratch: Path, variant: Variant, concurrency: int, devices: int, pairs_count: int = PAIRS
) -> dict[str, Any]:
    pairs = []
    for run in range(pairs_count):
        pairs.append(
            in_turn(
                run,
                partial(measure, assembly, scratch, concurrency, devices, BASELINE, run=10 + run),
                partial(measure, assembly, scratch, concurrency, devices, variant, run=run),
            )
        )
    ratio = sum(v["devices_per_s"] for _, v in pairs) / max(1e-9, sum(b["devices_per_s"] for b, _ in pairs))
    result = {
        "variant": variant.name,
        "concurrency": concurrency,
        "ratio_devices_per_s": round(ratio, 3),
        "limit": variant.limit,
        "meets_limit": None if variant.limit is None else ratio >= variant.limit,
        "pairs": [{"baseline": b, "variant": v} for b, v in pairs],
    }
    if variant.checkout is not None:
        result["today_over_before"] = ratios(pairs)
    return result


def in_turn(run: int, baseline: Callable[[], T], variant: Callable[[], T]) -> tuple[T, T]:
    """(baseline(), variant()), the baseline run first in even pairs and second in odd ones: the second of
    two back-to-back runs meets the machine after the first's emulator and simulator (their shutdown, the
    CPU they heated), and measured 5-10 % slower in a run where the baseline always went first."""
    if run % 2 == 0:
        first = baseline()
        return first, variant()
    second = variant()
    return baseline(), second


def ratios(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    """Today's code (each pair's baseline) over an older version (its variant): summed over the pairs, so
    that a machine that slows down during the run weighs on both alike. Below 1 is less CPU, lower p99."""

    def ratio(value: Any) -> float:
        today = sum(value(b) for b, _ in pairs)
        before = sum(value(v) for _, v in pairs)
        return round(today / before, 3) if before else float("nan")

    found = {
        "devices_per_s": ratio(lambda r: r["devices_per_s"]),
        "p99_total_ms": ratio(lambda r: r["latency_ms"]["total"]["p99"]),
    }
    for part in ("emulator", "emulator_main", "hook_process", "simulator"):
        found[f"cpu_ms_per_device_{part}"] = ratio(lambda r, p=part: r["cpu_ms_per_device"][p])
    return found


@contextlib.contextmanager
def older_checkout(commit: str = BEFORE_ISSUE_17) -> Iterator[Path | None]:
    """A temporary `git worktree` of `commit` (removed afterwards), or None with a one-line note on stderr
    when git or the commit is not there (a tarball of the project, a shallow clone)."""
    git = shutil.which("git")
    if (
        git is None
        or subprocess.run(
            [git, "-C", str(REPO_ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
        ).returncode
    ):
        print(
            f"flow: '{BEFORE}' skipped: commit {commit} not available (git or history missing)",
            file=sys.stderr,
        )
        yield None
        return
    parent = Path(tempfile.mkdtemp(prefix="bench-before-"))
    path = parent / commit
    added = subprocess.run(
        [git, "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(path), commit], capture_output=True
    )
    if added.returncode:
        print(
            f"flow: '{BEFORE}' skipped: git worktree add failed: {added.stderr.decode().strip()}",
            file=sys.stderr,
        )
        shutil.rmtree(parent, ignore_errors=True)
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(
            [git, "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(path)], capture_output=True
        )
        shutil.rmtree(parent, ignore_errors=True)


def run(
    concurrencies: tuple[int, ...] = CONCURRENCIES,
    devices: int = DEVICES,
    assembly: Path | None = None,
    variants: tuple[Variant, ...] = VARIANTS,
    before: bool = True,
) -> dict[str, Any]:
    with workdir() as tmp:
        scratch = Path(tmp)
        assembly = assembly or synthesize(scratch)
        levels = [measure(assembly, scratch, c, devices) for c in concurrencies]
        comparisons = []
        if TARGET["concurrency"] in concurrencies:
            comparisons = [
                compare(assembly, scratch, v, int(TARGET["concurrency"]), devices) for v in variants
            ]
            if before:
                with older_checkout() as checkout:
                    if checkout is None:
                        comparisons.append(
                            {"variant": BEFORE, "skipped": f"commit {BEFORE_ISSUE_17} unavailable"}
                        )
                    else:
                        older = Variant(BEFORE, checkout=checkout)
                        comparisons.append(
                            compare(assembly, scratch, older, int(TARGET["concurrency"]), devices)
                        )
    at_target = next((lv for lv in levels if lv["concurrency"] == TARGET["concurrency"]), None)
    result = {
        "benchmark": "full_flow",
        "levels": levels,
        "comparisons": comparisons,
        "target": TARGET,
        "meets_target": at_target is not None
        and at_target["devices_per_s"] >= TARGET["devices_per_s"]
        and at_target["latency_ms"]["total"]["p99"] < TARGET["p99_total_ms"]
        and at_target["failed"] == 0,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def against_checkout(checkout: Path, pairs: int = 3, devices: int = DEVICES) -> dict[str, Any]:
    """This repository's emulator (the variant) against `checkout`'s (the baseline), side by side at the
    target's concurrency: e.g. `git archive <commit> | tar -x -C DIR` for the code before a change."""
    older = Variant(f"checkout {checkout.name}", checkout=checkout.resolve())
    with workdir() as tmp:
        scratch = Path(tmp)
        assembly = synthesize(scratch)
        concurrency = int(TARGET["concurrency"])
        pairs_run = []
        for run in range(pairs):
            pairs_run.append(
                in_turn(
                    run,
                    partial(measure, assembly, scratch, concurrency, devices, older, run=10 + run),
                    partial(measure, assembly, scratch, concurrency, devices, BASELINE, run=run),
                )
            )
    ratio = sum(v["devices_per_s"] for _, v in pairs_run) / max(
        1e-9, sum(b["devices_per_s"] for b, _ in pairs_run)
    )
    return {
        "variant": "this checkout",
        "baseline": str(checkout),
        "concurrency": concurrency,
        "ratio_devices_per_s": round(ratio, 3),
        "pairs": [{"baseline": b, "variant": v} for b, v in pairs_run],
    }


def before_issue_17(devices: int = DEVICES, pairs: int = PAIRS) -> dict[str, Any] | None:
    """Only the "before issue 17" comparison, at the target's concurrency (None when it cannot run)."""
    with workdir() as tmp, older_checkout() as checkout:
        if checkout is None:
            return None
        scratch = Path(tmp)
        older = Variant(BEFORE, checkout=checkout)
        return compare(synthesize(scratch), scratch, older, int(TARGET["concurrency"]), devices, pairs)


if __name__ == "__main__":
    # python -m bench.flow_bench [CONCURRENCY...] | --against DIR [PAIRS] | --before [DEVICES [PAIRS]]
    if sys.argv[1:2] == ["--before"]:
        numbers = [int(x) for x in sys.argv[2:4]]
        result = before_issue_17(*numbers)
        if result is not None:
            for pair in result["pairs"]:
                today, older = pair["baseline"], pair["variant"]
                cpu_before, cpu_today = (r["cpu_ms_per_device"]["emulator_main"] for r in (older, today))
                print(
                    f"{older['devices_per_s']:.1f} -> {today['devices_per_s']:.1f} devices/s, front end "
                    f"{cpu_before} -> {cpu_today} ms/device, loop share "
                    f"{older['share_of_one_thread']['front_end_loop']} -> "
                    f"{today['share_of_one_thread']['front_end_loop']}",
                    file=sys.stderr,
                )
        print(json.dumps(result, indent=2))
    elif sys.argv[1:2] == ["--against"]:
        result = against_checkout(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)
        for pair in result["pairs"]:
            print(
                f"{pair['baseline']['devices_per_s']:.1f} ({result['baseline']}) -> "
                f"{pair['variant']['devices_per_s']:.1f} devices/s (this checkout)",
                file=sys.stderr,
            )
        print(json.dumps(result, indent=2))
    else:
        levels = tuple(int(c) for c in sys.argv[1:]) or CONCURRENCIES
        print(json.dumps(run(levels), indent=2))
