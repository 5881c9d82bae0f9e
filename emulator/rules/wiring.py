"""The topic rules and schedules of one emulator run: what of the stack they serve, and starting them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.assembly.reader import StackModel
from emulator.mqtt.lifecycle import Listener
from emulator.rules.functions import Invoke
from emulator.rules.schedules import Schedule, Scheduler, read_schedules
from emulator.rules.topic_rules import TopicRule, TopicRuleRunner, read_rules

log = logging.getLogger("emulator")


@dataclass
class Automation:
    rules: list[TopicRule] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (logical id, what and why)
    runner: TopicRuleRunner | None = None
    scheduler: Scheduler | None = None

    @classmethod
    def read(
        cls, model: StackModel, functions: set[str], *, functions_run: bool, schedule_every_s: float | None
    ) -> Automation:
        """`functions`: the stack's functions with a code asset; `functions_run`: whether this run runs the
        stack's functions at all (not with a --hook replacing them)."""
        rules, left_out = read_rules(model.topic_rules, functions)
        schedules, skipped = read_schedules(model.schedules, functions, schedule_every_s)
        left_out += skipped
        if not functions_run:
            off = "the stack's functions do not run in this run (--hook)"
            left_out += [(r.name, f"AWS::IoT::TopicRule: {off}") for r in rules]
            left_out += [(s.name, f"AWS::Events::Rule: {off}") for s in schedules]
            return cls(left_out=left_out)
        return cls(rules, schedules, left_out)

    @property
    def targets(self) -> set[str]:
        """The ARNs of the functions the rules and schedules invoke."""
        arns = {arn for rule in self.rules for arn in rule.function_arns}
        return arns | {arn for schedule in self.schedules for arn, _ in schedule.targets}

    def listeners(self, invoke: Invoke | None, cleanups: list[Callable[[], None]]) -> list[Listener]:
        """The lifecycle listeners of the topic rules (none without functions to invoke)."""
        if not self.rules or invoke is None:
            return []
        self.runner = TopicRuleRunner(self.rules, invoke)
        cleanups.append(self.runner.close)
        for rule in self.rules:
            log.info(
                "topic rule %s: SELECT * FROM '%s' -> %d lambda(s)",
                rule.name,
                rule.topic_filter,
                len(rule.function_arns),
            )
        return [self.runner.on_message]

    def start_schedules(
        self, invoke: Invoke | None, *, region: str, account: str, cleanups: list[Callable[[], None]]
    ) -> None:
        if not self.schedules or invoke is None:
            return
        self.scheduler = Scheduler(self.schedules, invoke, region=region, account=account)
        for schedule in self.schedules:
            log.info("schedule %s: %s, run every %g s", schedule.name, schedule.expression, schedule.period_s)
        self.scheduler.start()
        cleanups.append(self.scheduler.stop)  # the first cleanup to run: nothing starts while stopping
