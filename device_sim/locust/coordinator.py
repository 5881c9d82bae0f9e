"""The master's side of a Locust run (or the single process's): serials out, statistics in, one report.

It hands out serials from the pool when workers ask, keeps each worker's latest statistics (sent with Locust's
periodic worker reports, and once more when a worker stops), ends the run when the pool is used up and every
device handed out has finished, and at the end writes the same JSON and HTML report `fleet` writes, with the
thresholds deciding Locust's exit code. Imported only by the locustfile: it needs gevent.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import gevent

from cli_conventions import EXIT_INTERRUPTED, EXIT_USAGE, say
from device_sim.errors import TOOL
from device_sim.html_report import write_html
from device_sim.locust.devices import DeviceDriver
from device_sim.locust.serials import SerialPool
from device_sim.progress import plain_line
from device_sim.report import FleetStats, merge_stats, write_report
from device_sim.thresholds import Thresholds

MSG_REQUEST = "device_sim:serials_request"
MSG_SERIALS = "device_sim:serials"
MSG_STATS = "device_sim:stats"
MSG_ERROR = "device_sim:worker_error"
REPORT_KEY = "device_sim"  # our statistics inside Locust's periodic worker report
EXIT_BAD_WORKER = EXIT_USAGE  # a worker lacks a file the options name: the command line's fault


class Coordinator:
    def __init__(
        self, environment: Any, values: dict[str, Any], pool: SerialPool, local: DeviceDriver | None
    ):
        self.environment = environment
        self.values = values
        self.pool = pool
        self.local = local  # the single process's own devices (no workers)
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.served: set[str] = set()
        self.drained: set[str] = set()
        self.errors: list[str] = []
        self.finished = False
        self.signalled = False
        self.started_monotonic = time.monotonic()
        self._ticker: Any = None

    # --- Locust events -------------------------------------------------------------------------------------
    def on_test_start(self, **_: Any) -> None:
        self.snapshots.clear()
        self.served.clear()
        self.drained.clear()
        self.finished = False
        self.started_monotonic = time.monotonic()
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick)

    def on_test_stop(self, **_: Any) -> None:
        stats = self.merged()
        interrupted = not self.finished
        if interrupted:
            stats.run["interrupted"] = True
            stats.run["ended_by"] = "signal" if self.signalled else "stopped before the serials were used up"
        write_report(stats, _path(self.values["report"]))
        if self.values.get("html"):
            write_html(stats, _path(self.values["html"]))
        from device_sim.fleet_cli import print_summary, verdict

        print_summary(stats, _path(self.values["report"]), _path(self.values["html"]))
        code = verdict(
            stats,
            Thresholds(
                self.values.get("max_p99_ms"), self.values.get("max_failed"), self.values.get("max_rejected")
            ),
        )
        if self.errors:
            code = EXIT_BAD_WORKER
        elif self.signalled:
            code = EXIT_INTERRUPTED
            say(TOOL, f"interrupted; partial report in {self.values['report']}")
        self.environment.process_exit_code = code

    def on_quitting(self, **_: Any) -> None:
        """Ctrl-C or SIGTERM: stop the workers (each sends its last statistics), so the report is written."""
        runner = self.environment.runner
        if runner is not None and runner.state in ("spawning", "running"):
            self.signalled = True
            runner.stop()

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if REPORT_KEY in data:
            self.snapshots[client_id] = data[REPORT_KEY]

    # --- custom messages from workers ----------------------------------------------------------------------
    def on_request(self, environment: Any, msg: Any, **_: Any) -> None:
        batch = self.pool.take(int(msg.data.get("want") or 1))
        if batch:
            self.served.add(msg.node_id)
        environment.runner.send_message(
            MSG_SERIALS, {"serials": batch, "exhausted": self.pool.exhausted}, client_id=msg.node_id
        )

    def on_stats(self, environment: Any, msg: Any, **_: Any) -> None:
        self.snapshots[msg.node_id] = msg.data["snapshot"]
        if msg.data.get("drained"):
            self.drained.add(msg.node_id)
        self.check()

    def on_error(self, environment: Any, msg: Any, **_: Any) -> None:
        line = f"worker {msg.node_id}: {msg.data['error']}"
        if line not in self.errors:
            self.errors.append(line)
            say(TOOL, line)
        self._end()

    # --- the run's end --------------------------------------------------------------------------------------
    def check(self) -> None:
        """End the run once the pool is used up and every device handed out has finished."""
        if self.finished or not self.pool.exhausted:
            return
        if self.local is not None:
            done = self.local.in_flight == 0
        else:
            clients = self.environment.runner.clients
            done = all(node in self.drained or node not in clients for node in self.served)
        if done:
            self.finished = True
            self._end()

    def _end(self) -> None:
        def stop() -> None:
            runner = self.environment.runner
            runner.stop()
            options = self.environment.parsed_options
            if options is None or options.headless:
                runner.quit()

        gevent.spawn(stop)

    def _tick(self) -> None:
        every = float(self.values.get("progress_every_s") or 10.0)
        last = time.monotonic()
        while True:
            gevent.sleep(1.0)
            self.check()
            runner = self.environment.runner
            if (
                runner is not None
                and runner.state in ("spawning", "running")
                and time.monotonic() - last >= every
            ):
                last = time.monotonic()
                print(
                    plain_line(self.merged(), self.pool.size, self.started_monotonic),
                    file=sys.stderr,
                    flush=True,
                )

    def merged(self) -> FleetStats:
        parts = [
            FleetStats.from_json(data, source="a worker's statistics") for data in self.snapshots.values()
        ]
        if self.local is not None:
            parts.append(FleetStats.from_json(self.local.snapshot()))
        if not parts:
            return FleetStats(run={"driver": "locust"})
        stats = merge_stats(parts)
        facts = dict(parts[0].run)
        stats.run = {**facts, "workers": len(self.snapshots) or 1, "runs": stats.run.get("runs")}
        stats.devices = stats.done
        return stats


def _path(value: str | None) -> Any:
    from pathlib import Path

    return Path(value) if value else None
