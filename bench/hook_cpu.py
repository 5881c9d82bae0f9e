"""The hook process's CPU per hook invocation, with the emulator's library fast paths on and off.

Each measurement is a fresh process set up as the hook process sets itself up
(`hook_host.child_setup`: moto's DynamoDB, its server and `before-send` shortcut, the stack's hook
Lambda loaded from lambdas/ with its environment), with the claim certificate in moto's IoT behind a
second local server (as the emulator's AWS endpoint is, over TCP) and the serial table as the stack
declares it (key `pk`, the sparse rotations index). The Lambda is then invoked CALLS times, each time
with AWS's event for a new serial and a real device certificate, as the hook process invokes it; the
CPU time of the invoking thread is the measure (thread_time: other processes' load does not count).

"on" is the emulator as it runs (emulator/registry/moto_dynamodb.py, botocore_local.py); "off" sets
EMULATOR_FAST_PATHS=0: botocore as shipped, and moto as shipped but for a transaction's item saving
(without it every reservation copies the whole table, and the number would measure the table's size).
Pairs alternate which goes first, so that a drift of the shared machine hits both; the ratio is the
median of the pairs' off/on ratios.

`python -m bench.hook_cpu [--pairs 5] [--calls 400] [--json]`; `run(pairs, calls)` returns the result
and writes bench/results/hook_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "hook_cpu.json"
PAIRS = 5
CALLS = 400
WARMUP = 50  # the first invocations build the clients and fill moto's caches
REGION = "us-east-1"
TABLE = "serials"
MODES = ("off", "on")


def _worker(calls: int) -> dict[str, Any]:
    """One measurement in this process (EMULATOR_FAST_PATHS set by the caller)."""
    import threading

    for entry in (REPO_ROOT, REPO_ROOT / "lambdas"):
        if str(entry) not in sys.path:
            sys.path.insert(0, str(entry))
    # The Lambda's JSON log lines and metrics go to stdout (Powertools binds it at import): here to
    # /dev/null, as much work as writing them to the emulator's stdout; the result goes to the real one.
    result_fd = os.dup(1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of this process
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        os.environ.pop(name, None)

    import boto3

    from bench.hook_bench import _certificate, _event
    from emulator.awsapi.server import LocalAwsServer
    from emulator.provisioning import hook_host
    from emulator.provisioning.hook import LambdaSpec

    iot = LocalAwsServer(threading.RLock())
    iot.start()
    spec = LambdaSpec(
        asset_dir=str(REPO_ROOT / "lambdas"),
        handler="provisioning_hook.handler.lambda_handler",
        environment={
            "SERIAL_TABLE_NAME": TABLE,
            "SERIAL_PATTERN": r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$",
            "THING_NAME_PREFIX": "device-",
            "RESERVATION_TIMEOUT_S": "900",
            "TEMPLATE_ATTRIBUTES": "model,hw_rev",
            "DEVICE_PARAMETERS": "SerialNumber",
            "REQUIRE_DEVICE_KEY": "false",
            "REQUIRE_CN_MATCH": "true",
            "ROTATION_TEMPLATE_NAME": "",
            "POWERTOOLS_SERVICE_NAME": "provisioning-hook",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        },
        function_name="hook",
        function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:hook",
        memory_mb=512,
    )
    handlers, server = hook_host.child_setup([spec], iot.url, REGION)
    invoke = handlers[spec.function_arn]
    from emulator.registry import botocore_local, moto_dynamodb

    # What child_setup installed (each answers its first call's outcome again).
    fast_paths = {"moto": moto_dynamodb.install(), "botocore": botocore_local.install(server.url)}
    db = boto3.client("dynamodb", endpoint_url=server.url, region_name=REGION)
    db.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "rotation_pending", "AttributeType": "S"},
            {"AttributeName": "rotation_started_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "rotations",
                "KeySchema": [
                    {"AttributeName": "rotation_pending", "KeyType": "HASH"},
                    {"AttributeName": "rotation_started_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    serials = [f"SN-{i:08d}" for i in range(WARMUP + calls)]
    for start in range(0, len(serials), 25):
        db.batch_write_item(
            RequestItems={
                TABLE: [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": f"serial#{serial}"},
                                "serial": {"S": serial},
                                "status": {"S": "AVAILABLE"},
                                "attributes": {"M": {"model": {"S": "X1"}, "hw_rev": {"S": "3"}}},
                            }
                        }
                    }
                    for serial in serials[start : start + 25]
                ]
            }
        )
    claim = boto3.client("iot", endpoint_url=iot.url, region_name=REGION).register_certificate_without_ca(
        certificatePem=_certificate("claim", 10**6), status="ACTIVE"
    )["certificateId"]
    events = [_event(serial, n + 1, claim) for n, serial in enumerate(serials)]
    allowed = 0
    for event in events[:WARMUP]:
        allowed += _allowed(invoke(event))
    started = time.thread_time()
    for event in events[WARMUP:]:
        allowed += _allowed(invoke(event))
    cpu_s = time.thread_time() - started
    server.stop()
    iot.stop()
    result = {
        "ms_per_call": round(cpu_s / calls * 1000, 3),
        "calls": calls,
        "allowed": allowed,
        "fast_paths": fast_paths,
    }
    os.write(result_fd, (json.dumps(result) + "\n").encode())
    return result


def _allowed(invocation: Any) -> int:
    answer = invocation.answer
    return int(isinstance(answer, dict) and answer.get("allowProvisioning") is True)


def measure(mode: str, calls: int) -> dict[str, Any]:
    """One worker process: ms of CPU per invocation with the fast paths `on` or `off`."""
    env = {**os.environ, "EMULATOR_FAST_PATHS": "1" if mode == "on" else "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "bench.hook_cpu", "--worker", "--calls", str(calls)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hook_cpu worker ({mode}) failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["allowed"] != calls + WARMUP:
        raise RuntimeError(f"hook_cpu worker ({mode}): {result['allowed']} of {calls + WARMUP} allowed")
    if set(result["fast_paths"].values()) != {mode == "on"}:
        raise RuntimeError(f"hook_cpu worker ({mode}): fast paths {result['fast_paths']}")
    return {"mode": mode, **result}


def run(pairs: int = PAIRS, calls: int = CALLS, progress: Any = None) -> dict[str, Any]:
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    runs: list[dict[str, Any]] = []
    ratios: list[float] = []
    for pair in range(pairs):
        order = MODES if pair % 2 == 0 else MODES[::-1]
        measured = {}
        for mode in order:
            measured[mode] = measure(mode, calls)
            ms = measured[mode]["ms_per_call"]
            say(f"hook_cpu pair {pair + 1}/{pairs}: fast paths {mode}: {ms} ms/call")
            runs.append({"pair": pair + 1, **measured[mode]})
        ratios.append(measured["off"]["ms_per_call"] / measured["on"]["ms_per_call"])
    by_mode = {mode: [r["ms_per_call"] for r in runs if r["mode"] == mode] for mode in MODES}
    result = {
        "benchmark": "hook_cpu",
        "what": "hook-process CPU per hook invocation (GetItem + TransactWriteItems against moto)",
        "calls_per_run": calls,
        "pairs": pairs,
        "ms_per_call_median": {mode: round(statistics.median(v), 3) for mode, v in by_mode.items()},
        "ratio_off_over_on": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        "| pair | fast paths off (ms/call) | on (ms/call) | off / on |",
        "|---:|---:|---:|---:|",
    ]
    for pair, ratio in enumerate(result["ratio_off_over_on"], start=1):
        cells = {r["mode"]: r["ms_per_call"] for r in result["runs"] if r["pair"] == pair}
        lines.append(f"| {pair} | {cells['off']:.2f} | {cells['on']:.2f} | {ratio:.2f}x |")
    median = result["ms_per_call_median"]
    lines.append(f"| median | {median['off']:.2f} | {median['on']:.2f} | {result['ratio_median']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hook_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=PAIRS, help="on/off pairs (default %(default)s)")
    parser.add_argument("--calls", type=int, default=CALLS, help="timed invocations per run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.calls < 1:
        parser.error("--pairs and --calls must be at least 1")
    if args.worker:
        _worker(args.calls)
        return 0
    result = run(args.pairs, args.calls)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
