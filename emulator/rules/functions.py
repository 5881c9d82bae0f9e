"""How a rule or a schedule invokes one of the stack's Lambda functions, and what it logs of the outcome.

`Invoke(function_arn, event)` starts one invocation where the stack's functions run (the hook process, or
threads of the emulator's) and returns its future at once. AWS invokes a rule's or a schedule's Lambda
asynchronously (the Event invocation type): nobody waits for the answer, an error is only logged here.
(AWS's own retries of a failed asynchronous invocation are not emulated.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("emulator.rules")

Invoke = Callable[[str, dict[str, Any]], "Future[Any]"]


def report_outcome(future: Future[Any], what: str, function_arn: str) -> None:
    """One warning for a failed invocation, a debug line otherwise (the function logs its own work)."""
    name = function_arn.rsplit(":", 1)[-1]
    try:
        answer = future.result()
    except Exception as exc:  # the function process is gone, or the invocation could not start
        log.warning("%s: lambda %s not run: %s: %s", what, name, type(exc).__name__, exc)
        return
    error = getattr(answer, "error", None)  # emulator.provisioning.hook.LambdaInvocation
    if error is not None:
        log.warning("%s: lambda %s failed: %s", what, name, error)
    else:
        log.debug("%s: lambda %s done", what, name)
