"""`python -m device_sim locust` against `fleet`, side by side in one run, on the same number of devices.

1. With the emulator as `make bench` runs it (the hook in its own process): `fleet` and `locust --processes 1`
   at the same concurrency, each on fresh serials, in the order fleet, locust, locust, fleet (each driver
   meets the emulator early and late, with a small registry and a larger one, and the machine's drift
   weighs on both): devices/s and the simulator's CPU per device (Locust's master, worker and launcher
   processes together, start-up included, as for `fleet`). Locust must reach at least 0.9x of fleet's
   devices/s, summed over its two runs.
2. With the emulator's hook on its own threads (`--hook-isolation thread`): `locust --processes 2` against
   `--processes 1`. On this 2-core machine the emulator (TLS handshakes, the broker and the hook) takes most
   of the CPU, so a second simulator process has little to add: the ratio says how much, not what Locust can
   do on machines of its own.

CPU comes from wait4's rusage of the command's process, which reaps every process below it (Locust's
launcher is their subreaper), so it counts the whole tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.stack import REPO_ROOT, FleetRun, import_serials, run_fleet, start_emulator, synthesize, workdir
from emulator import process as emulator_process

RESULTS = REPO_ROOT / "bench" / "results" / "locust.json"
DEVICES = 1000
CONCURRENCY = 100
MIN_RATIO = 0.9
SIDE_BY_SIDE = ("fleet", 1, 1, "fleet")  # each driver first and last once (ABBA)


def run_locust(
    endpoint_file: Path, serials: list[str], concurrency: int, scratch: Path, processes: int
) -> FleetRun:
    """`python -m device_sim locust --headless --processes N` as a child process, measured with wait4."""
    tag = f"locust-p{processes}-{serials[0]}"
    serials_file = scratch / f"{tag}.txt"
    serials_file.write_text("\n".join(serials) + "\n")
    report_file = scratch / f"{tag}.json"
    command = [
        sys.executable,
        "-m",
        "device_sim",
        "locust",
        "--headless",
        "--processes",
        str(processes),
        "--endpoint-file",
        str(endpoint_file),
        "--serials",
        str(serials_file),
        "--concurrency",
        str(concurrency),
        "--report",
        str(report_file),
        "--progress-every-s",
        "3600",
        "--",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=emulator_process.child_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if not report_file.exists():
        raise RuntimeError(f"the locust run wrote no report (exit {process.returncode})")
    return FleetRun(
        report=json.loads(report_file.read_text()),
        wall_s=time.monotonic() - started,
        max_rss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        command=["python", *command[1:]],
    )


def summary(name: str, run: FleetRun) -> dict[str, Any]:
    report = run.report
    provisioned = report["provisioned"]
    return {
        "driver": name,
        "devices": report["devices"],
        "provisioned": provisioned,
        "rejected": report["rejected"],
        "failed": report["failed"],
        "devices_per_s": report["throughput_per_s"],
        "p50_total_ms": report["latency_ms"]["total"]["p50"],
        "p99_total_ms": report["latency_ms"]["total"]["p99"],
        "simulator_cpu_ms_per_device": round(1000 * run.cpu_s / max(1, provisioned), 2),
        "wall_s": round(run.wall_s, 1),
        "command": " ".join(run.command),
    }


def run(
    devices: int = DEVICES, concurrency: int = CONCURRENCY, assembly: Path | None = None
) -> dict[str, Any]:
    with workdir() as tmp:
        scratch = Path(tmp)
        assembly = assembly or synthesize(scratch)
        side_by_side = _on_emulator(assembly, scratch, "process", devices, concurrency, SIDE_BY_SIDE)
        scaling = _on_emulator(assembly, scratch, "thread", devices, concurrency, (1, 2))
    fleets = [run for run in side_by_side if run["driver"] == "fleet"]
    locusts = [run for run in side_by_side if run["driver"] != "fleet"]
    one, two = scaling

    def summed(runs: list[dict[str, Any]], key: str) -> float:
        return sum(run[key] for run in runs)

    result = {
        "benchmark": "locust_vs_fleet",
        "devices": devices,
        "concurrency": concurrency,
        "side_by_side": {
            "hook_isolation": "process",
            "order": [run["driver"] for run in side_by_side],
            "fleet": fleets,
            "locust_processes_1": locusts,
            "ratio_devices_per_s": round(
                summed(locusts, "devices_per_s") / max(summed(fleets, "devices_per_s"), 1e-9), 3
            ),
            "ratio_cpu_per_device": round(
                summed(locusts, "simulator_cpu_ms_per_device")
                / max(summed(fleets, "simulator_cpu_ms_per_device"), 1e-9),
                3,
            ),
            "min_ratio": MIN_RATIO,
        },
        "scaling": {
            "hook_isolation": "thread",
            "locust_processes_1": one,
            "locust_processes_2": two,
            "ratio_devices_per_s": round(two["devices_per_s"] / max(one["devices_per_s"], 1e-9), 3),
        },
        "nproc": len(os.sched_getaffinity(0)),
    }
    result["meets_target"] = result["side_by_side"]["ratio_devices_per_s"] >= MIN_RATIO
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _on_emulator(
    assembly: Path, scratch: Path, isolation: str, devices: int, concurrency: int, drivers: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """Each driver in turn on one emulator, each with serials of its own."""
    emulator = start_emulator(assembly, scratch / f"state-locust-{isolation}", "--hook-isolation", isolation)
    try:
        results = []
        for n, driver in enumerate(drivers):
            serials = [f"LB{isolation[0].upper()}{n}{i:06d}" for i in range(devices)]
            import_serials(emulator.endpoint, serials)
            if driver == "fleet":
                results.append(
                    summary("fleet", run_fleet(emulator.endpoint_file, serials, concurrency, scratch))
                )
            else:
                measured = run_locust(emulator.endpoint_file, serials, concurrency, scratch, driver)
                results.append(summary(f"locust --processes {driver}", measured))
        return results
    finally:
        emulator.stop()


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else DEVICES), indent=2))


def render(result: dict[str, Any]) -> list[str]:
    """The Markdown section of docs/benchmarks.md (and docs/loadtest.md's sizing) for one run."""
    side, scaling = result["side_by_side"], result["scaling"]
    lines = [
        f"### Locust against fleet, {result['devices']:,} devices at concurrency {result['concurrency']}",
        "",
        "| emulator hook | simulator | provisioned | failed | devices/s | p50 / p99 total ms "
        "| simulator CPU ms/device | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for hook, runs in (
        ("process", _in_order(side)),
        ("thread", [scaling["locust_processes_1"], scaling["locust_processes_2"]]),
    ):
        for run in runs:
            lines.append(
                f"| {hook} | {run['driver']} | {run['provisioned']:,} | {run['failed']} "
                f"| {run['devices_per_s']:.1f} | {run['p50_total_ms']:,.0f} / {run['p99_total_ms']:,.0f} "
                f"| {run['simulator_cpu_ms_per_device']} | {run['wall_s']} |"
            )
    lines += [
        "",
        f"In the order {', '.join(side['order'])} on one emulator, "
        "`locust --processes 1` made "
        f"**{side['ratio_devices_per_s']:.2f}x** the devices/s of `fleet` (summed over their runs) "
        f"(target at least {side['min_ratio']}x: **{'met' if result['meets_target'] else 'not met'}**) at "
        f"{side['ratio_cpu_per_device']:.2f}x its simulator CPU per device (Locust's master, worker and "
        "launcher processes and their start-up included). With the hook on the emulator's threads, "
        f"`--processes 2` made **{scaling['ratio_devices_per_s']:.2f}x** the devices/s of `--processes 1`: "
        f"on this {result['nproc']}-core machine the emulator is the bottleneck, not the simulator.",
        "",
    ]
    return lines


def _in_order(side: dict[str, Any]) -> list[dict[str, Any]]:
    """The side-by-side runs in the order they ran."""
    queues = {"fleet": list(side["fleet"]), "locust": list(side["locust_processes_1"])}
    return [queues["fleet" if name == "fleet" else "locust"].pop(0) for name in side["order"]]
