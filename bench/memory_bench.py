"""The simulator's peak memory for a large fleet: 10,000 devices at concurrency 200, the simulator in a
child process whose peak resident set (ru_maxrss from wait4) is the number. The fleet runner keeps one
task per device in flight and only counters afterwards, so memory should follow the concurrency.
`run()` returns the result and writes bench/results/memory.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.stack import REPO_ROOT, import_serials, run_fleet, start_emulator, synthesize, workdir

RESULTS = REPO_ROOT / "bench" / "results" / "memory.json"
DEVICES = 10_000
CONCURRENCY = 200


def run(
    devices: int = DEVICES, concurrency: int = CONCURRENCY, assembly: Path | None = None
) -> dict[str, Any]:
    with workdir() as tmp:
        scratch = Path(tmp)
        assembly = assembly or synthesize(scratch)
        emulator = start_emulator(assembly, scratch / "state-memory")
        try:
            serials = [f"MEM{i:07d}" for i in range(devices)]
            import_serials(emulator.endpoint, serials)
            fleet = run_fleet(emulator.endpoint_file, serials, concurrency, scratch)
            emulator_rss = emulator.max_rss_mb()
        finally:
            emulator.stop()
    report = fleet.report
    result = {
        "benchmark": "simulator_memory",
        "devices": devices,
        "concurrency": concurrency,
        "provisioned": report["provisioned"],
        "rejected": report["rejected"],
        "failed": report["failed"],
        "rejections": report["rejections"],
        "failures": report["failures"],
        "retries": report["retries"],
        "duration_s": report["duration_s"],
        "devices_per_s": report["throughput_per_s"],
        "simulator_peak_rss_mb": round(fleet.max_rss_mb, 1),
        "simulator_cpu_ms_per_device": round(1000 * fleet.cpu_s / max(1, devices), 1),
        "emulator_peak_rss_mb": round(emulator_rss, 1),
        "latency_ms_total": report["latency_ms"]["total"],
        "command": " ".join(fleet.command),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else DEVICES), indent=2))
