"""The topic-rule runner and the scheduler on their own: what of a stack's rules they run, what they list
as not emulated, what each invocation receives, and a schedule's pace."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from typing import Any

from emulator.assembly.reader import ScheduleSpec, ScheduleTarget, TopicRuleSpec
from emulator.rules.schedules import Scheduler, read_schedules
from emulator.rules.topic_rules import TopicRuleRunner, read_rules

RETIRER = "arn:aws:lambda:us-east-1:123456789012:function:retirer"
ELSEWHERE = "arn:aws:lambda:us-east-1:123456789012:function:not-in-the-stack"


class Invocations:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.done = threading.Event()

    def __call__(self, arn: str, event: Any) -> Future[Any]:
        self.calls.append((arn, event))
        self.done.set()
        future: Future[Any] = Future()
        future.set_result({"ok": True})
        return future


def rule(sql: str, *actions: dict[str, Any], disabled: bool = False, name: str = "Rule") -> TopicRuleSpec:
    return TopicRuleSpec(f"{name}Id", name, sql, disabled, list(actions))


def lambda_action(arn: str = RETIRER) -> dict[str, Any]:
    return {"Lambda": {"FunctionArn": arn}}


def test_read_rules_runs_what_the_stack_needs_and_lists_the_rest() -> None:
    rules, left_out = read_rules(
        [
            rule("SELECT * FROM '$aws/events/presence/connected/+'", lambda_action(), name="Connected"),
            rule("select *  from '$aws/events/presence/+/+'", lambda_action(), {"S3": {}}, name="Both"),
            rule(
                "SELECT clientId FROM '$aws/events/presence/connected/+'", lambda_action(), name="Projection"
            ),
            rule("SELECT * FROM 'devices/+/telemetry'", lambda_action(), name="Telemetry"),
            rule(
                "SELECT * FROM '$aws/events/presence/connected/+'", lambda_action(ELSEWHERE), name="Foreign"
            ),
            rule(
                "SELECT * FROM '$aws/events/presence/connected/+'", lambda_action(), disabled=True, name="Off"
            ),
        ],
        {RETIRER},
    )
    assert [(r.name, r.topic_filter, r.function_arns) for r in rules] == [
        ("Connected", "$aws/events/presence/connected/+", (RETIRER,)),
        ("Both", "$aws/events/presence/+/+", (RETIRER,)),
    ]
    why = dict(left_out)
    assert set(why) == {"BothId", "ProjectionId", "TelemetryId", "ForeignId"}
    assert "S3 action" in why["BothId"] and "SQL" in why["ProjectionId"]
    assert "only lifecycle events reach rules" in why["TelemetryId"]
    assert "not a function of the stack" in why["ForeignId"]


def test_a_rule_invokes_its_lambda_with_the_json_payload() -> None:
    invoke = Invocations()
    rules, _ = read_rules(
        [rule("SELECT * FROM '$aws/events/presence/connected/+'", lambda_action())], {RETIRER}
    )
    runner = TopicRuleRunner(rules, invoke)
    try:
        runner.on_message("$aws/events/presence/disconnected/device-1", b'{"clientId": "device-1"}')
        runner.on_message("$aws/events/presence/connected/device-1", b"not json")
        runner.on_message("$aws/events/presence/connected/device-1", b'{"clientId": "device-1"}')
        assert invoke.done.wait(5)
    finally:
        runner.close()
    assert invoke.calls == [(RETIRER, {"clientId": "device-1"})]


def schedule(expression: str | None, *targets: tuple[str, str | None], pattern: bool = False) -> ScheduleSpec:
    return ScheduleSpec(
        f"Rule{expression}",
        expression,
        pattern,
        True,
        [ScheduleTarget(arn, payload) for arn, payload in targets],
    )


def test_read_schedules_takes_rates_and_lists_the_rest() -> None:
    sweep = '{"action":"sweep"}'
    schedules, left_out = read_schedules(
        [
            schedule("rate(5 minutes)", (RETIRER, sweep), (ELSEWHERE, None)),
            schedule("rate(1 day)", (RETIRER, None)),
            schedule("cron(0 12 * * ? *)", (RETIRER, sweep)),
            schedule(None, (RETIRER, sweep), pattern=True),
        ],
        {RETIRER},
    )
    assert [(s.period_s, s.targets) for s in schedules] == [
        (300, ((RETIRER, sweep),)),
        (86_400, ((RETIRER, None),)),
    ]
    assert len(left_out) == 3 and "not a function of the stack" in left_out[0][1]
    assert "cron" in left_out[1][1] and "event pattern" in left_out[2][1]
    faster, _ = read_schedules([schedule("rate(5 minutes)", (RETIRER, sweep))], {RETIRER}, every_s=0.2)
    assert faster[0].period_s == 0.2


def test_a_schedule_invokes_its_target_every_period_with_its_constant_input() -> None:
    invoke = Invocations()
    schedules, _ = read_schedules(
        [
            schedule("rate(5 minutes)", (RETIRER, '{"action":"sweep"}')),
            schedule("rate(1 day)", (RETIRER, None)),
        ],
        {RETIRER},
        every_s=0.2,
    )
    scheduler = Scheduler(schedules, invoke, region="us-east-1", account="123456789012")
    started = time.monotonic()
    scheduler.start()
    time.sleep(0.7)
    scheduler.stop()
    elapsed = time.monotonic() - started
    sweeps = [event for _, event in invoke.calls if event == {"action": "sweep"}]
    scheduled = [event for _, event in invoke.calls if event != {"action": "sweep"}]
    assert 2 <= len(sweeps) <= int(elapsed / 0.2) + 1  # the first one period after the start
    assert (
        scheduled
        and scheduled[0]["detail-type"] == "Scheduled Event"
        and scheduled[0]["source"] == "aws.events"
    )
    calls = len(invoke.calls)
    time.sleep(0.5)
    assert len(invoke.calls) == calls  # stopped
    assert json.dumps(sweeps[0]) == '{"action": "sweep"}'
