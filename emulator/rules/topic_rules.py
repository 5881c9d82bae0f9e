"""The stack's AWS::IoT::TopicRules, as far as the stack needs them: `SELECT * FROM '<topic filter>'` with
Lambda actions, on AWS IoT's lifecycle events (emulator/mqtt/lifecycle.py).

A rule whose SQL is anything else, an action of another kind, or a Lambda that is not one of the stack's
functions is listed as not emulated, one line each, as the emulator lists the resources it leaves out.
Messages devices publish do not reach the rules here (the stack has no rule on them): a rule whose topic
filter matches no lifecycle topic is listed too. `SELECT *` of a JSON payload is that JSON object, which
the Lambda receives as its event.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from emulator.assembly.reader import TopicRuleSpec
from emulator.mqtt.lifecycle import CONNECTED_TOPIC, DISCONNECTED_TOPIC
from emulator.mqtt.topics import topic_matches, valid_topic_filter
from emulator.rules.functions import Invoke, report_outcome

log = logging.getLogger("emulator.rules")

SQL_RE = re.compile(r"\s*SELECT\s+\*\s+FROM\s+'(?P<topic>[^']+)'\s*", re.IGNORECASE)
_LIFECYCLE_SAMPLES = (CONNECTED_TOPIC.format("client"), DISCONNECTED_TOPIC.format("client"))


@dataclass(frozen=True)
class TopicRule:
    name: str
    topic_filter: str
    function_arns: tuple[str, ...]


def read_rules(
    specs: Iterable[TopicRuleSpec], functions: set[str]
) -> tuple[list[TopicRule], list[tuple[str, str]]]:
    """(the rules that run here, (logical id, what is left out) for the rest of them and their actions)."""
    rules: list[TopicRule] = []
    left_out: list[tuple[str, str]] = []
    for spec in specs:
        what = f"AWS::IoT::TopicRule {spec.name}"
        match = SQL_RE.fullmatch(spec.sql)
        if match is None or not valid_topic_filter(match["topic"]):
            left_out.append(
                (spec.logical_id, f"{what}: SQL {spec.sql[:80]!r} (only SELECT * FROM '<filter>')")
            )
            continue
        topic_filter = match["topic"]
        arns: list[str] = []
        for action in spec.actions:
            kind, properties = next(iter(action.items()), ("?", {}))
            arn = properties.get("FunctionArn") if kind == "Lambda" and isinstance(properties, dict) else None
            if arn in functions:
                arns.append(str(arn))
            elif kind == "Lambda":
                left_out.append((spec.logical_id, f"{what}: Lambda {arn} is not a function of the stack"))
            else:
                left_out.append((spec.logical_id, f"{what}: {kind} action"))
        if not any(topic_matches(topic_filter, sample) for sample in _LIFECYCLE_SAMPLES):
            left_out.append(
                (spec.logical_id, f"{what}: '{topic_filter}' (only lifecycle events reach rules)")
            )
        elif spec.disabled:
            log.info("topic rule %s is disabled", spec.name)
        elif arns:
            rules.append(TopicRule(spec.name, topic_filter, tuple(arns)))
    return rules, left_out


class TopicRuleRunner:
    """A lifecycle listener: each message whose topic a rule's filter matches invokes the rule's Lambdas."""

    def __init__(self, rules: list[TopicRule], invoke: Invoke) -> None:
        self.rules = rules
        self._invoke = invoke
        # Invocations start here, not on the broker's event loop: handing an event to the hook process
        # writes to its pipe, which may wait while that process is busy.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="topic-rules")

    def on_message(self, topic: str, payload: bytes) -> None:
        matching = [rule for rule in self.rules if topic_matches(rule.topic_filter, topic)]
        if not matching:
            return
        try:
            event: Any = json.loads(payload)
        except ValueError:
            log.info("topic %s: payload is not JSON; SELECT * of it is not emulated", topic)
            return
        for rule in matching:
            for arn in rule.function_arns:
                self._executor.submit(self._start, rule, arn, topic, event)

    def _start(self, rule: TopicRule, arn: str, topic: str, event: Any) -> None:
        future = self._invoke(arn, event)
        future.add_done_callback(
            partial(report_outcome, what=f"topic rule {rule.name} ({topic})", function_arn=arn)
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
