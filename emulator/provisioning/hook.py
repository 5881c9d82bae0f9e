"""The pre-provisioning hook: AWS's event in, `allowProvisioning` out, within AWS's 5 s.

Two runners: the stack's hook Lambda, loaded from its asset directory with its environment from the
template, and any Python callable (tests inject hooks that raise, sleep or deny). The Lambda runs in
the hook process (`hook_host`), as on AWS a function runs apart from IoT: its environment
(AWS_ENDPOINT_URL, table name...) never leaks into the emulator's process, and its boto3 work, with the
serial table behind it, does not compete for the emulator's GIL; or, on request, on threads of the
emulator's own process. A deny, an error, a malformed answer or a timeout is AccessDenied.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from typing import Any

from emulator.provisioning import hook_log
from emulator.provisioning.errors import AccessDenied
from emulator.provisioning.lambda_env import function_environment

HOOK_TIMEOUT_S = 5.0  # AWS's limit for a pre-provisioning hook

HookFunction = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class HookDecision:
    allowed: bool
    parameter_overrides: dict[str, str]


@dataclass(frozen=True)
class LambdaInvocation:
    """What one invocation of the stack's Lambda gave: its answer (or the error it raised), the request
    id the emulator put in its context, and the `reason` its decision log line named (`hook_log`)."""

    answer: Any
    request_id: str
    reason: str | None = None
    error: str | None = None  # the exception's type name, when the Lambda raised


class HookDenied(AccessDenied):
    """AccessDenied from the hook, with what its own log line said (for the emulator's log only: every
    denial looks the same to the device)."""

    def __init__(self, message: str, *, hook_reason: str | None = None, request_id: str | None = None):
        super().__init__(message)
        self.hook_reason = hook_reason
        self.request_id = request_id


def build_event(
    *,
    claim_certificate_id: str,
    certificate_id: str,
    certificate_pem: str,
    template_arn: str,
    client_id: str,
    parameters: Mapping[str, str],
) -> dict[str, Any]:
    """AWS's hook input, exactly these keys (pre-provisioning-hook.html)."""
    return {
        "claimCertificateId": claim_certificate_id,
        "certificateId": certificate_id,
        "certificatePem": certificate_pem,
        "templateArn": template_arn,
        "clientId": client_id,
        "parameters": dict(parameters),
    }


def interpret(answer: Any) -> HookDecision:
    """AWS provisions only on `allowProvisioning: true`; anything else is a denial."""
    if not isinstance(answer, Mapping) or answer.get("allowProvisioning") is not True:
        return HookDecision(False, {})
    raw = answer.get("parameterOverrides") or {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise AccessDenied("The pre-provisioning hook returned invalid parameterOverrides")
    return HookDecision(True, dict(raw))


class Hook:
    """Runs a hook: `submit(event)` starts one invocation and returns its future; `invoke` waits at
    most `timeout_s` for it. `close` releases what the runner owns (a thread pool; nothing for the
    hook process, which its owner closes)."""

    def __init__(
        self,
        submit: Callable[[dict[str, Any]], Future[Any]],
        *,
        close: Callable[[], None] = lambda: None,
        timeout_s: float = HOOK_TIMEOUT_S,
        description: str = "hook",
    ) -> None:
        self._submit = submit
        self._close = close
        self.timeout_s = timeout_s
        self.description = description

    def invoke(self, event: dict[str, Any]) -> HookDecision:
        future = self._submit(event)
        try:
            answer = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise AccessDenied(
                f"The pre-provisioning hook did not answer within {self.timeout_s:g} s"
            ) from None
        except Exception as exc:
            raise AccessDenied(f"The pre-provisioning hook failed: {type(exc).__name__}") from exc
        reason = request_id = None
        if isinstance(answer, LambdaInvocation):
            reason, request_id = answer.reason, answer.request_id
            if answer.error is not None:
                raise HookDenied(
                    f"The pre-provisioning hook failed: {answer.error}",
                    hook_reason=reason,
                    request_id=request_id,
                )
            answer = answer.answer
        try:
            decision = interpret(answer)
        except AccessDenied as exc:
            raise HookDenied(exc.message, hook_reason=reason, request_id=request_id) from None
        if not decision.allowed:
            raise HookDenied(
                "The pre-provisioning hook denied the request", hook_reason=reason, request_id=request_id
            )
        return decision

    def close(self) -> None:
        self._close()


def _on_threads(function: HookFunction, workers: int, *, timeout_s: float, description: str) -> Hook:
    """FUNCTION on a pool of WORKERS threads of this process."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hook")
    return Hook(
        lambda event: pool.submit(function, event),
        close=partial(pool.shutdown, wait=False, cancel_futures=True),
        timeout_s=timeout_s,
        description=description,
    )


def callable_hook(function: HookFunction, *, timeout_s: float = HOOK_TIMEOUT_S, workers: int = 16) -> Hook:
    return _on_threads(
        function, workers, timeout_s=timeout_s, description=getattr(function, "__qualname__", "hook")
    )


# ------------------------------------------------------------------------- the stack's Lambda


@dataclass(frozen=True)
class LambdaSpec:
    """The hook function as the template declares it."""

    asset_dir: str
    handler: str  # module.path.function
    environment: dict[str, str]
    function_name: str
    function_arn: str
    memory_mb: int = 128


def lambda_environment(spec: LambdaSpec, *, aws_endpoint_url: str, region: str) -> dict[str, str]:
    return {
        # What the Lambda runtime provides, pointed at the local registry.
        "AWS_ENDPOINT_URL": aws_endpoint_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_EC2_METADATA_DISABLED": "true",
        **spec.environment,
    }


def hosted_lambda_hook(host: Any, spec: LambdaSpec, *, timeout_s: float = HOOK_TIMEOUT_S) -> Hook:
    """The Lambda in the hook process (`hook_host.HookHost`), next to the serial table."""
    return Hook(
        partial(host.invoke, spec.function_arn),
        timeout_s=timeout_s,
        description=f"lambda {spec.function_name} (hook process)",
    )


def in_process_lambda_hook(
    spec: LambdaSpec,
    *,
    aws_endpoint_url: str,
    region: str,
    workers: int = 16,
    timeout_s: float = HOOK_TIMEOUT_S,
) -> Hook:
    """The Lambda on threads of this process: its environment becomes the process's (the CLI's process
    is the emulator's alone). With `LocalAwsServer.install_shortcut` its AWS calls skip the TCP hop;
    the cost is the shared GIL."""
    function = load_lambda(spec, lambda_environment(spec, aws_endpoint_url=aws_endpoint_url, region=region))
    return _on_threads(
        function, workers, timeout_s=timeout_s, description=f"lambda {spec.function_name} (in-process)"
    )


def load_lambda(spec: LambdaSpec, environment: dict[str, str]) -> Callable[[dict[str, Any]], Any]:
    """Set the Lambda's environment in this process, import its handler, and return a function that
    invokes it as the Lambda runtime would (event, context with the remaining time)."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    os.environ.update(environment)
    if spec.asset_dir not in sys.path:
        sys.path.insert(0, spec.asset_dir)
    module_name, _, function_name = spec.handler.rpartition(".")
    # Imported and invoked with its own variables first: the process may run other functions too.
    own_environment = partial(function_environment, environment)
    with own_environment():
        handler = getattr(importlib.import_module(module_name), function_name)
    decisions = hook_log.capture()

    def invoke(event: dict[str, Any]) -> LambdaInvocation:
        context = _LambdaContext(spec, time.monotonic() + HOOK_TIMEOUT_S)
        try:
            with own_environment():
                answer = handler(event, context)
        except Exception as exc:
            reason = decisions.pop(context.aws_request_id)
            return LambdaInvocation(None, context.aws_request_id, reason, error=type(exc).__name__)
        return LambdaInvocation(answer, context.aws_request_id, decisions.pop(context.aws_request_id))

    return invoke


class _LambdaContext:
    def __init__(self, spec: LambdaSpec, deadline: float) -> None:
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.function_arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = "emulator"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
