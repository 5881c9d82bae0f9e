"""The stack's EventBridge schedules: `rate(N minute|minutes|hour|hours|day|days)` rules whose targets are
the stack's Lambda functions, invoked with the target's constant `Input` (or, without one, EventBridge's
"Scheduled Event").

`every_s` (`python -m emulator up --schedule-every-s N`) replaces every rate, so that a test sees a
5-minute sweep within seconds. The first run is one period after the start, as EventBridge starts a rate
one period after the rule is created (UNCONFIRMED: AWS does not document the first run's time). A target
whose previous invocation is still running is skipped for that period, not queued. `cron(...)`
expressions, event-pattern rules and targets that are not the stack's functions are listed as not emulated.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from emulator.assembly.reader import ScheduleSpec
from emulator.rules.functions import Invoke, report_outcome

log = logging.getLogger("emulator.rules")

RATE_RE = re.compile(r"rate\((?P<n>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)")
UNIT_S = {"minute": 60, "hour": 3600, "day": 86_400}


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    period_s: float
    targets: tuple[tuple[str, str | None], ...]  # (function ARN, constant input JSON)


def read_schedules(
    specs: Iterable[ScheduleSpec], functions: set[str], every_s: float | None = None
) -> tuple[list[Schedule], list[tuple[str, str]]]:
    """(the schedules that run here, (logical id, what is left out) for the rest)."""
    schedules: list[Schedule] = []
    left_out: list[tuple[str, str]] = []
    for spec in specs:
        what = f"AWS::Events::Rule {spec.logical_id}"
        rate = RATE_RE.fullmatch(spec.expression or "")
        if spec.event_pattern or rate is None:
            shown = "an event pattern" if spec.event_pattern else repr(spec.expression)
            left_out.append((spec.logical_id, f"{what}: {shown} (only rate(...) schedules)"))
            continue
        targets = []
        for target in spec.targets:
            if target.arn in functions:
                targets.append((target.arn, target.input))
            else:
                left_out.append(
                    (spec.logical_id, f"{what}: target {target.arn} is not a function of the stack")
                )
        if not spec.enabled:
            log.info("schedule %s is disabled", spec.logical_id)
        elif targets:
            period = every_s if every_s is not None else int(rate["n"]) * UNIT_S[rate["unit"].rstrip("s")]
            schedules.append(Schedule(spec.logical_id, spec.expression or "", period, tuple(targets)))
    return schedules, left_out


def scheduled_event(schedule: Schedule, constant_input: str | None, region: str, account: str) -> Any:
    """What the target receives: the constant input, or EventBridge's Scheduled Event."""
    if constant_input is not None:
        return json.loads(constant_input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{schedule.name}"],
        "detail": {},
    }


class Scheduler:
    """One thread that runs every schedule's targets when they are due, until `stop()`."""

    def __init__(self, schedules: list[Schedule], invoke: Invoke, *, region: str, account: str) -> None:
        self.schedules = schedules
        self._invoke = invoke
        self._region, self._account = region, account
        self._stopping = threading.Event()
        self._running: dict[tuple[int, str], Future[Any]] = {}
        self._thread = threading.Thread(target=self._run, name="schedules", daemon=True)

    def start(self) -> None:
        if self.schedules:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        started = time.monotonic()
        due = [started + schedule.period_s for schedule in self.schedules]
        while not self._stopping.is_set():
            now = time.monotonic()
            for index, schedule in enumerate(self.schedules):
                if due[index] <= now:
                    # The next run keeps to the schedule's grid, whatever this run took.
                    due[index] += (int((now - due[index]) // schedule.period_s) + 1) * schedule.period_s
                    self._fire(index, schedule)
            self._stopping.wait(max(0.0, min(due) - time.monotonic()))

    def _fire(self, index: int, schedule: Schedule) -> None:
        for arn, constant_input in schedule.targets:
            key = (index, arn)
            previous = self._running.get(key)
            if previous is not None and not previous.done():
                log.info(
                    "schedule %s: lambda %s still running, skipped", schedule.name, arn.rsplit(":", 1)[-1]
                )
                continue
            try:
                event = scheduled_event(schedule, constant_input, self._region, self._account)
                future = self._invoke(arn, event)
            except Exception:
                log.exception("schedule %s: cannot invoke %s", schedule.name, arn)
                continue
            self._running[key] = future
            future.add_done_callback(
                partial(report_outcome, what=f"schedule {schedule.name}", function_arn=arn)
            )
