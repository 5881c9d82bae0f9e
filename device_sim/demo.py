"""`make demo`: the whole story on the local emulator, each step a real command a user could type.

synthesize the CDK app -> start the emulator -> the factory imports its serials with fleetctl -> one device
provisions -> 100 devices provision as a fleet (JSON) -> 5 more speak CBOR -> 5 unknown serials and one
cloned serial are rejected -> a second line publishes its devices' keys (attestation): the leaked claim
provisions none of its serials, the genuine devices all -> the merged report -> the emulator stops. Exits
non-zero if any of these does not turn out as expected, so it doubles as a smoke test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from device_sim.demo_attestation import attestation
from device_sim.errors import UserError
from emulator import process as emulator_process

REPO_ROOT = Path(__file__).resolve().parent.parent
EMULATOR_START_TIMEOUT_S = 120
SERIAL_PREFIX = "FAB-A-"
CBOR_DEVICES = 5
UNKNOWN_DEVICES = 5
CONCURRENCY = 20
# What `make setup` installs for `python -m <module>` (pyproject's [project.scripts]): the demo shows those.
CONSOLE_SCRIPTS = {"fleetctl": "fleetctl", "device_sim": "device-sim", "emulator": "iot-emulator"}


@dataclass
class Checks:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def expect(self, what: str, ok: bool, seen: str) -> None:
        self.results.append((what, ok, seen))

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.results)


class Demo:
    def __init__(self, workdir: Path, reports: Path, devices: int, console: Console) -> None:
        self.workdir = workdir.resolve()
        self.reports = reports.resolve()
        self.devices = devices
        self.console = console
        self.checks = Checks()
        self.emulator: emulator_process.EmulatorSubprocess | None = None
        self.step_number = 0
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }

    # --- plumbing -------------------------------------------------------------------------------------------
    def step(self, title: str) -> None:
        self.step_number += 1
        self.console.rule(f"[bold]{self.step_number}. {title}", align="left")

    def show(self, argv: list[str]) -> None:
        """The command as a user would type it: the console script for `python -m <tool>`."""
        shown = [a if not a.startswith(str(REPO_ROOT)) else os.path.relpath(a, REPO_ROOT) for a in argv]
        shown[0] = "python" if argv[0] == sys.executable else shown[0]
        if argv[0] == sys.executable and argv[1:2] == ["-m"] and argv[2] in CONSOLE_SCRIPTS:
            shown = [CONSOLE_SCRIPTS[argv[2]], *shown[3:]]
        self.console.print(f"[dim]$ {' '.join(shown)}[/]")

    def run(
        self, argv: list[str], *, capture: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        self.show(argv)
        result = subprocess.run(
            argv, cwd=REPO_ROOT, env=self.env, text=True, check=False, capture_output=capture
        )
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()[-1:] if capture else []
            raise UserError(
                f"demo: `{' '.join(argv[1:4])} ...` exited {result.returncode}"
                + (f": {detail[0]}" if detail else "")
            )
        return result

    def sim(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "device_sim", *args]

    # --- the story ------------------------------------------------------------------------------------------
    def synthesize(self) -> Path:
        self.step("Synthesize the CDK app (the same stack `cdk deploy` would deploy)")
        outdir = self.workdir / "cdk.out"
        started = time.monotonic()
        self.run([sys.executable, str(REPO_ROOT / "app.py"), "--synth", str(outdir)])
        template = next(outdir.glob("*.template.json"), None)
        if template is None:
            raise UserError(f"demo: no template in {outdir} after synth")
        resources = json.loads(template.read_text()).get("Resources", {})
        self.console.print(
            f"{template.name}: {len(resources)} resources in {time.monotonic() - started:.0f} s"
        )
        return outdir

    def start_emulator(self, assembly: Path) -> Path:
        self.step("Start the local AWS IoT endpoint (emulator) from the synthesized stack")
        state = self.workdir / "emulator"
        shutil.rmtree(state, ignore_errors=True)
        self.show(emulator_process.command(assembly, state))
        try:
            with self.console.status("waiting for endpoint.json"):
                self.emulator = emulator_process.start(
                    assembly,
                    state,
                    log_path=self.workdir / "emulator.log",
                    env=emulator_process.child_environment(self.env),
                    new_session=True,  # Ctrl-C reaches the demo, which stops the emulator itself
                    timeout_s=EMULATOR_START_TIMEOUT_S,
                )
        except emulator_process.EmulatorStartError as exc:
            raise UserError(f"demo: {exc}") from None
        data = self.emulator.endpoint()
        self.console.print(
            f"MQTT over mTLS on {data['host']}:{data['port']}, AWS APIs at {data['aws_endpoint_url']}, "
            f"template {data['template_name']}; log in {self.workdir / 'emulator.log'}"
        )
        return self.emulator.endpoint_file

    def stop_emulator(self) -> None:
        if self.emulator is not None:
            self.emulator.stop(signal.SIGINT)

    def import_serials(self, endpoint: Path) -> dict[str, list[str]]:
        total = self.devices + CBOR_DEVICES + 1
        self.step(f"The factory imports the {total} serials it built (fleetctl)")
        serials = [f"{SERIAL_PREFIX}{i:06d}" for i in range(1, total + 1)]
        groups = {
            "first": serials[:1],
            "fleet": serials[1 : self.devices + 1],
            "cbor": serials[self.devices + 1 :],
            "unknown": [f"FAB-X-{i:06d}" for i in range(1, UNKNOWN_DEVICES + 1)],
        }
        files = self.workdir / "serials"
        files.mkdir(parents=True, exist_ok=True)
        csv = files / "factory-batch.csv"
        csv.write_text("serial,model,hw_rev\n" + "".join(f"{s},demo-sensor,rev-b\n" for s in serials))
        for name, group in groups.items():
            (files / f"{name}.txt").write_text("\n".join(group) + "\n")
        if importlib.util.find_spec("fleetctl.__main__") is not None:
            self.run(
                [
                    sys.executable,
                    "-m",
                    "fleetctl",
                    "registry",
                    "import",
                    str(csv),
                    "--endpoint-file",
                    str(endpoint),
                ]
            )
        else:
            self.console.print(
                "[yellow]fleetctl is not installed here: writing the serial items straight into "
                "the emulated DynamoDB table instead"
            )
            seed_registry(endpoint, serials)
        self.console.print(f"{csv}: {len(serials)} serials ({serials[0]} … {serials[-1]})")
        return groups

    def provision_first(self, endpoint: Path, serial: str) -> None:
        self.step("One device boots: its own P-256 key and CSR, claim connection, RegisterThing, reconnect")
        out_dir = self.workdir / "devices" / serial
        shutil.rmtree(out_dir, ignore_errors=True)
        result = self.run(
            self.sim(
                "provision", "--endpoint-file", str(endpoint), "--serial", serial, "--out-dir", str(out_dir)
            ),
            capture=True,
            check=False,
        )
        self.console.print(result.stderr.strip(), markup=False, highlight=False)
        thing = result.stdout.strip()
        self.checks.expect(
            f"device {serial} provisioned", result.returncode == 0 and bool(thing), thing or "-"
        )
        if out_dir.exists():
            files = ", ".join(sorted(p.name for p in out_dir.iterdir()))
            key = out_dir / "private.key"
            mode = oct(key.stat().st_mode & 0o777) if key.exists() else "-"
            self.console.print(f"kept on the device in {out_dir}: {files} (private.key mode {mode})")

    def fleet(
        self, endpoint: Path, name: str, serials_file: Path, fmt: str, title: str, *extra: str
    ) -> dict[str, Any]:
        self.step(title)
        report = self.reports / f"demo-{name}.json"
        result = self.run(
            self.sim(
                "fleet",
                "--endpoint-file",
                str(endpoint),
                "--serials",
                str(serials_file),
                "--concurrency",
                str(CONCURRENCY),
                "--format",
                fmt,
                "--report",
                str(report),
                *extra,
            ),
            check=False,
        )
        if not report.exists():
            raise UserError(f"demo: the {name} fleet wrote no report (exit {result.returncode})")
        return json.loads(report.read_text())

    def clone(self, endpoint: Path, serial: str) -> None:
        self.step(f"A cloned device: a second board claims the already provisioned serial {serial}")
        out_dir = self.workdir / "devices" / f"{serial}-clone"
        shutil.rmtree(out_dir, ignore_errors=True)
        result = self.run(
            self.sim(
                "provision", "--endpoint-file", str(endpoint), "--serial", serial, "--out-dir", str(out_dir)
            ),
            capture=True,
            check=False,
        )
        line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        self.console.print(line, markup=False, highlight=False)
        self.checks.expect(
            "the clone is rejected", result.returncode == 1 and line.startswith("device-sim: rejected:"), line
        )

    def hook_decisions(self, serials: list[str]) -> None:
        """The hook's logged reason for each rejected serial (the device only ever sees AccessDenied)."""
        wanted = set(serials)
        reasons: dict[str, str] = {}
        for line in (self.workdir / "emulator.log").read_text(errors="replace").splitlines():
            if not line.startswith("{") or '"decision"' not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("serial") in wanted and record.get("decision") == "deny":
                reasons[record["serial"]] = str(record.get("reason"))
        if reasons:
            table = Table(title="Why the hook denied (its log)", title_justify="left")
            table.add_column("serial")
            table.add_column("decision")
            table.add_column("reason")
            for serial in serials:
                if serial in reasons:
                    table.add_row(serial, "deny", reasons[serial])
            self.console.print(table)

    def merged_report(self, names: list[str]) -> None:
        self.step("The report: every fleet run merged (histograms add up exactly)")
        parts = [str(self.reports / f"demo-{n}.json") for n in names]
        self.run(
            self.sim(
                "report",
                "merge",
                *parts,
                "--out",
                str(self.reports / "demo.json"),
                "--html",
                str(self.reports / "demo.html"),
            )
        )

    def registry_stats(self, endpoint: Path) -> None:
        if importlib.util.find_spec("fleetctl.__main__") is None:
            return
        result = self.run(
            [sys.executable, "-m", "fleetctl", "registry", "stats", "--endpoint-file", str(endpoint)],
            check=False,
        )
        if result.returncode != 0:
            self.console.print("[yellow](fleetctl registry stats failed; see above)")

    def summary(self) -> None:
        table = Table(title="What the demo showed", title_justify="left")
        table.add_column("expectation")
        table.add_column("seen")
        table.add_column("")
        for what, ok, seen in self.checks.results:
            table.add_row(what, seen, "[green]ok" if ok else "[red]NO")
        self.console.print(table)
        self.console.print(
            f"HTML report: [bold]{self.reports / 'demo.html'}[/] (self-contained, open it in a "
            f"browser); JSON: {self.reports / 'demo.json'}"
        )


def run_demo(*, workdir: Path, reports: Path, devices: int, console: Console | None = None) -> bool:
    console = console or Console(highlight=False)
    demo = Demo(workdir, reports, devices, console)
    demo.workdir.mkdir(parents=True, exist_ok=True)
    try:
        assembly = demo.synthesize()
        endpoint = demo.start_emulator(assembly)
        groups = demo.import_serials(endpoint)
        files = demo.workdir / "serials"
        demo.provision_first(endpoint, groups["first"][0])
        fleet = demo.fleet(
            endpoint,
            "fleet",
            files / "fleet.txt",
            "json",
            f"{demo.devices} devices provision as a fleet (JSON, {CONCURRENCY} at a time)",
        )
        demo.checks.expect(
            f"{demo.devices} fleet devices provisioned (JSON)",
            fleet["provisioned"] == demo.devices,
            f"{fleet['provisioned']} provisioned, {fleet['rejected']} rejected, {fleet['failed']} failed",
        )
        cbor = demo.fleet(
            endpoint,
            "cbor",
            files / "cbor.txt",
            "cbor",
            f"{CBOR_DEVICES} devices speak CBOR, like Renesas RX / FreeRTOS devices",
        )
        demo.checks.expect(
            f"{CBOR_DEVICES} devices provisioned (CBOR)",
            cbor["provisioned"] == CBOR_DEVICES,
            f"{cbor['provisioned']} provisioned, {cbor['rejected']} rejected, {cbor['failed']} failed",
        )
        unknown = demo.fleet(
            endpoint,
            "unknown",
            files / "unknown.txt",
            "json",
            f"{UNKNOWN_DEVICES} serials the factory never imported",
        )
        demo.checks.expect(
            f"{UNKNOWN_DEVICES} unknown serials rejected",
            unknown["rejected"] == UNKNOWN_DEVICES,
            f"{unknown['rejected']} rejected {dict(unknown['rejections'])}",
        )
        demo.clone(endpoint, groups["first"][0])
        demo.hook_decisions(groups["unknown"] + groups["first"])
        if importlib.util.find_spec("fleetctl.__main__") is not None:
            attestation(demo, endpoint)
            demo.merged_report(["fleet", "cbor", "unknown", "attacker", "attested"])
        else:
            demo.merged_report(["fleet", "cbor", "unknown"])
        demo.registry_stats(endpoint)
    finally:
        demo.stop_emulator()
    demo.step("Emulator stopped")
    demo.summary()
    if not demo.checks.passed:
        raise UserError("demo: some expectations were not met (see the table above)")
    return True


def seed_registry(endpoint: Path, serials: list[str]) -> None:
    """Serial items as the registry contract defines them, for when fleetctl is not available."""
    from datetime import UTC, datetime

    import boto3

    data = json.loads(endpoint.read_text())
    table = boto3.resource(
        "dynamodb",
        endpoint_url=data["aws_endpoint_url"],
        region_name=data["region"],
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",
    ).Table(data["serial_table"])
    now = datetime.now(UTC).isoformat()
    with table.batch_writer() as batch:
        for serial in serials:
            batch.put_item(
                Item={
                    "pk": f"serial#{serial}",
                    "serial": serial,
                    "status": "AVAILABLE",
                    "attributes": {"model": "demo-sensor", "hw_rev": "rev-b"},
                    "imported_at": now,
                    "updated_at": now,
                }
            )
