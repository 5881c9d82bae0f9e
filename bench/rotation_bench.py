"""Certificate rotation beside first provisioning, in the same run (issue 15): 1,000 devices at concurrency
100 provisioned with `fleet --keep-identities`, then the same devices rotated with `fleet --rotate`, on one
emulator of the rotation stack (`rotation.enabled`: its topic rule runs the retirer on every connection).

Each pair (provisioning, then rotation) runs on a fresh emulator, `PAIRS` times; the ratio is of the summed
devices/s. After each rotation the benchmark also waits for the retirer to have retired every old
certificate (AWS IoT's connected event → topic rule → Lambda) and reports how long after the run's end that
took. `run()` returns the results and writes bench/results/rotation.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.stack import REPO_ROOT, Emulator, import_serials, run_fleet, start_emulator, workdir

RESULTS = REPO_ROOT / "bench" / "results" / "rotation.json"
DEVICES = 1000
CONCURRENCY = 100
PAIRS = 2
PROVISION_STEPS = ("claim_connect", "create_certificate", "register_thing", "reconnect", "first_publish")
ROTATION_STEPS = ("connect", "create_certificate", "register_thing", "reconnect", "first_publish")
RETIRED_WITHIN_S = 300.0


def synthesize_rotation_stack(scratch: Path) -> Path:
    """The project's stack with rotation on (its defaults otherwise)."""
    sys.path.insert(0, str(REPO_ROOT))
    import app

    return Path(app.synthesize({"rotation": {"enabled": True}}, scratch / "cdk-rotation"))


def _phase(fleet: Any, emulator_cpu_s: float, steps: tuple[str, ...]) -> dict[str, Any]:
    report = fleet.report
    done = max(1, report["provisioned"])
    return {
        "devices": report["devices"],
        "done": report["provisioned"],
        "rejected": report["rejected"],
        "failed": report["failed"],
        "failures": report["failures"],
        "retries": report["retries"]["total"],
        "devices_per_s": report["throughput_per_s"],
        "latency_ms": {step: report["latency_ms"][step] for step in (*steps, "total")},
        "cpu_ms_per_device": {
            "emulator": round(1000 * emulator_cpu_s / done, 1),
            "simulator": round(1000 * fleet.cpu_s / done, 1),
        },
    }


def _retired_after_s(emulator: Emulator, old: set[str]) -> float | None:
    """Seconds until every old certificate is INACTIVE (None: not within RETIRED_WITHIN_S)."""
    import boto3

    iot = boto3.client(
        "iot",
        endpoint_url=emulator.endpoint["aws_endpoint_url"],
        region_name=emulator.endpoint["region"],
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    started = time.monotonic()
    while time.monotonic() - started < RETIRED_WITHIN_S:
        active = set()
        for page in iot.get_paginator("list_certificates").paginate(PaginationConfig={"PageSize": 250}):
            active |= {c["certificateId"] for c in page["certificates"] if c["status"] == "ACTIVE"}
        if not active & old:
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return None


def measure(assembly: Path, scratch: Path, run: int, devices: int = DEVICES) -> dict[str, Any]:
    emulator = start_emulator(assembly, scratch / f"state-rotation-{run}")
    kept = scratch / f"identities-{run}"
    try:
        serials = [f"BROT{run}{i:06d}" for i in range(devices)]
        import_serials(emulator.endpoint, serials)
        cpu = sum(emulator.cpu_by_process_s().values())
        provision = run_fleet(
            emulator.endpoint_file, serials, CONCURRENCY, scratch, "--keep-identities", str(kept)
        )
        cpu_provision = sum(emulator.cpu_by_process_s().values())
        # A device that failed to provision (its report says why) has no identity to rotate.
        provisioned = [s for s in serials if (kept / s / "identity.json").exists()]
        if not provisioned:
            raise RuntimeError(f"no device provisioned: {provision.report['failures']}")
        old = {json.loads((kept / s / "identity.json").read_text())["certificate_id"] for s in provisioned}
        rotation = run_fleet(
            emulator.endpoint_file,
            provisioned,
            CONCURRENCY,
            scratch,
            "--rotate",
            "--keep-identities",
            str(kept),
        )
        cpu_rotation = sum(emulator.cpu_by_process_s().values())
        retired_after = _retired_after_s(emulator, old)
        rss = emulator.max_rss_mb()
    finally:
        emulator.stop()
    return {
        "run": run,
        "concurrency": CONCURRENCY,
        "provisioning": _phase(provision, cpu_provision - cpu, PROVISION_STEPS),
        "rotation": _phase(rotation, cpu_rotation - cpu_provision, ROTATION_STEPS),
        "old_certificates_retired_after_s": retired_after,
        "emulator_peak_rss_mb": round(rss, 1),
        "command": " ".join(rotation.command),
    }


def run(devices: int = DEVICES, assembly: Path | None = None) -> dict[str, Any]:
    with workdir() as tmp:
        scratch = Path(tmp)
        assembly = assembly or synthesize_rotation_stack(scratch)
        runs = [measure(assembly, scratch, run, devices) for run in range(PAIRS)]
    provisioned = sum(r["provisioning"]["devices_per_s"] for r in runs)
    rotated = sum(r["rotation"]["devices_per_s"] for r in runs)
    result = {
        "benchmark": "rotation",
        "devices": devices,
        "concurrency": CONCURRENCY,
        "runs": runs,
        "ratio_rotation_to_provisioning": round(rotated / max(1e-9, provisioned), 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render(result: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks.md (between the markers `python -m bench` regenerates)."""
    lines = [
        f"### Certificate rotation beside first provisioning, {result['devices']:,} devices at concurrency "
        f"{result['concurrency']}",
        "",
        "The rotation stack (`rotation.enabled`), one fresh emulator per run: `fleet --keep-identities` "
        "provisions the devices, then `fleet --rotate` rotates the same devices. The retirer runs on every "
        "connection (AWS IoT's connected event through the stack's topic rule), in both phases.",
        "",
        "| run | phase | done | failed | devices/s | p50 total ms | p99 total ms | emulator CPU ms/device "
        "| simulator CPU ms/device |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        for phase in ("provisioning", "rotation"):
            numbers = run[phase]
            total, cpu = numbers["latency_ms"]["total"], numbers["cpu_ms_per_device"]
            lines.append(
                f"| {run['run'] + 1} | {phase} | {numbers['done']:,} | {numbers['failed']} "
                f"| {numbers['devices_per_s']:.1f} | {_ms(total['p50'])} | {_ms(total['p99'])} "
                f"| {cpu['emulator']} | {cpu['simulator']} |"
            )
    retired = [r["old_certificates_retired_after_s"] for r in result["runs"]]
    alone = result.get("run_alone")
    lines += [
        "",
        *(
            [
                f"Run alone {alone['finished_at']} with `{alone['command']}` ({alone['wall_s']:.0f} s; load "
                f"average at its start {' / '.join(str(x) for x in alone['load_average_at_start'])}).",
                "",
            ]
            if alone
            else []
        ),
        "Rotation against first provisioning, summed devices/s: "
        f"**{result['ratio_rotation_to_provisioning']:.2f}x**. Every old certificate retired "
        + ", ".join("not within 300 s" if s is None else f"{s:g} s" for s in retired)
        + " after the rotation run ended.",
        "",
        "Rotation, per step, p50 / p99 in ms:",
        "",
        "| run | " + " | ".join(ROTATION_STEPS) + " |",
        "|---:|" + "---:|" * len(ROTATION_STEPS),
    ]
    for run in result["runs"]:
        latency = run["rotation"]["latency_ms"]
        cells = [f"{_ms(latency[s]['p50'])} / {_ms(latency[s]['p99'])}" for s in ROTATION_STEPS]
        lines.append(f"| {run['run'] + 1} | " + " | ".join(cells) + " |")
    return [*lines, ""]


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if sys.argv[1:] else DEVICES), indent=2))
