"""The stack's hook Lambda and the serial registry it reads, together in a second process.

On AWS the hook runs in Lambda and its table in DynamoDB, both apart from IoT Core. Locally the hook's
work (botocore's client side, moto's DynamoDB behind it, Powertools) was half of the emulator's CPU,
under the one GIL that also serves every MQTT connection. Here that half runs in a child process with
its own GIL:

- the child holds moto's DynamoDB (the serial table) behind its own lock and HTTP server, and runs the
  Lambda on a thread pool; the Lambda reaches DynamoDB without a socket (the `before-send` shortcut of
  `LocalAwsServer`) and unsigned (emulator/registry/botocore_local.py), and IoT (DescribeCertificate,
  on a take-over) at the emulator's AWS endpoint;
- the emulator sends each invocation (AWS's event, a few KB) over a pipe and gets the answer back;
- the emulator's AWS endpoint forwards DynamoDB requests (fleetctl, tests, boto3) to the child, so
  `aws_endpoint_url` in endpoint.json still serves every API.

The Lambda's environment (AWS_ENDPOINT_URL, the table name...) is set in the child only. If the child
dies, every invocation pending or later is a failure, which `Hook.invoke` turns into AccessDenied.

With `--persist` the child's DynamoDB is saved with the rest of the state: `snapshot()` asks the child
for its tables (pickled under its lock) and `initial_state` loads them back before it serves. The
Lambda's decision log line is read in the child (`hook_log`) and comes back with each answer.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("emulator.provisioning.hook_host")

START_TIMEOUT_S = 60.0  # spawning Python, importing moto, boto3 and the handler: ~2-4 s here


class HookHostError(RuntimeError):
    pass


class HookHost:
    """The child process, seen from the emulator.

    `invoke(function_arn, event)` returns a future of the Lambda's answer (or its exception). The
    future is already running when returned: `Hook.invoke` giving up on it cannot cancel the call,
    as a Lambda invocation runs on after its caller stops waiting. `close()` ends the child.
    """

    def __init__(
        self,
        specs: list[Any],  # emulator.provisioning.hook.LambdaSpec
        *,
        iot_endpoint_url: str,
        region: str,
        workers: int = 16,
        initial_state: bytes | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_child_main,
            args=(child_end, specs, iot_endpoint_url, region, workers, initial_state),
            name="emulator-hook-host",
            daemon=True,
        )
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._failure: str | None = None
        self._process.start()
        child_end.close()
        if not self._connection.poll(START_TIMEOUT_S):
            self._process.kill()
            raise HookHostError(f"the hook process did not start within {START_TIMEOUT_S:g} s")
        try:
            ready = self._connection.recv()
        except EOFError:
            self._process.join(5)
            raise HookHostError(
                f"the hook process exited while starting (exit {self._process.exitcode})"
            ) from None
        if ready[0] != "ready":
            self._process.kill()
            raise HookHostError(f"the hook process failed to start: {ready[1]}")
        self.dynamodb_url: str = ready[1]
        self.pid = self._process.pid
        self._reader = threading.Thread(target=self._read_replies, name="hook-host-replies", daemon=True)
        self._reader.start()

    def invoke(self, function_arn: str, event: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        if self._closed or self._failure is not None:
            future.set_exception(HookHostError(self._failure or "the hook process is stopped"))
            return future
        return self._request("invoke", future, function_arn, event)

    def changes(self, timeout_s: float = 10.0) -> int:
        """How many DynamoDB writes the child has served (the state saver's change detection)."""
        return int(self._ask("changes").result(timeout_s))

    def snapshot(self, timeout_s: float = 30.0) -> bytes:
        """The child's DynamoDB backend (the serial table), pickled under its lock."""
        return bytes(self._ask("snapshot").result(timeout_s))

    def _ask(self, kind: str) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        if self._closed or self._failure is not None:
            future.set_exception(HookHostError(self._failure or "the hook process is stopped"))
            return future
        return self._request(kind, future)

    def _request(self, kind: str, future: Future[Any], *arguments: Any) -> Future[Any]:
        call_id = next(self._ids)
        with self._pending_lock:
            self._pending[call_id] = future
        try:
            with self._send_lock:
                self._connection.send((kind, call_id, *arguments))
        except (OSError, ValueError) as exc:
            with self._pending_lock:
                self._pending.pop(call_id, None)
            future.set_exception(HookHostError(f"the hook process is gone: {exc}"))
        return future

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._send_lock:
                self._connection.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(2.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(2.0)
        self._connection.close()
        self._fail_pending("the hook process was stopped")

    # -- replies -------------------------------------------------------------------------------

    def _read_replies(self) -> None:
        while True:
            try:
                call_id, ok, payload = self._connection.recv()
            except (EOFError, OSError):
                break
            with self._pending_lock:
                future = self._pending.pop(call_id, None)
            if future is None:
                continue
            if ok:
                future.set_result(payload)
            else:
                future.set_exception(
                    payload if isinstance(payload, BaseException) else HookHostError(str(payload))
                )
        if not self._closed:
            self._failure = f"the hook process exited (exit {self._process.exitcode})"
            log.error("%s: every hook invocation is now denied", self._failure)
        self._fail_pending(self._failure or "the hook process was stopped")

    def _fail_pending(self, reason: str) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(HookHostError(reason))


# ------------------------------------------------------------------------------- the child


def _child_main(
    connection: Connection,
    specs: list[Any],
    iot_endpoint_url: str,
    region: str,
    workers: int,
    initial_state: bytes | None = None,
) -> None:
    # Ctrl-C reaches the whole process group, and a service manager's SIGTERM often the whole group
    # too; the emulator decides when this process ends (it closes the pipe, or sends None), after its
    # last save of the state (--persist) has read the serial table from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        handlers, server = child_setup(specs, iot_endpoint_url, region, initial_state)
    except BaseException as exc:  # reported to the parent, which raises it as a start failure
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", server.url))
    send_lock = threading.Lock()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hook")

    def reply(message: tuple[int, bool, Any]) -> None:
        try:
            with send_lock:
                connection.send(message)
        except (OSError, ValueError):
            pass  # the emulator is gone; the read loop below ends too

    def run(call_id: int, function_arn: str, event: dict[str, Any]) -> None:
        invoke = handlers.get(function_arn)
        try:
            if invoke is None:
                raise HookHostError(f"no function {function_arn} in the hook process")
            reply((call_id, True, invoke(event)))
        except Exception as exc:
            reply((call_id, False, _picklable(exc)))

    def snapshot(call_id: int) -> None:
        from moto.dynamodb.models import dynamodb_backends

        from emulator.registry import persistence
        from emulator.registry.store import LOCAL_ACCOUNT_ID

        try:
            with server.lock:
                data = persistence.backend_data(dynamodb_backends[LOCAL_ACCOUNT_ID][region])
                blob = pickle.dumps(data, pickle.HIGHEST_PROTOCOL)
            reply((call_id, True, blob))
        except Exception as exc:
            reply((call_id, False, _picklable(exc)))

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        kind, call_id, *arguments = message
        if kind == "invoke":
            pool.submit(run, call_id, *arguments)
        elif kind == "changes":
            reply((call_id, True, server.changes))
        elif kind == "snapshot":
            threading.Thread(target=snapshot, args=(call_id,), name="hook-snapshot", daemon=True).start()
    pool.shutdown(wait=False, cancel_futures=True)
    server.stop()
    os._exit(0)  # hook threads still running (a hung call) must not hold the process


def child_setup(
    specs: list[Any], iot_endpoint_url: str, region: str, initial_state: bytes | None = None
) -> tuple[dict[str, Any], Any]:
    """The hook process's state: moto's DynamoDB behind its server, the library fast paths, and each
    Lambda loaded with its environment; (handlers by function ARN, the server). bench/hook_cpu.py
    measures a process set up by this."""
    from moto.backends import get_backend
    from moto.dynamodb.models import dynamodb_backends

    from emulator.awsapi.server import LocalAwsServer
    from emulator.provisioning import hook as hooks
    from emulator.registry import botocore_local, moto_dynamodb, persistence
    from emulator.registry.store import LOCAL_ACCOUNT_ID

    get_backend("dynamodb").reset()
    if initial_state is not None:
        saved = pickle.loads(initial_state)  # noqa: S301 - the emulator's own snapshot (persistence.py)
        persistence.restore_backend(dynamodb_backends[LOCAL_ACCOUNT_ID][region], saved)
    moto_dynamodb.install()  # both off with EMULATOR_FAST_PATHS=0 (bench/hook_cpu.py)
    server = LocalAwsServer(threading.RLock())
    server.start()
    server.install_shortcut(region=region)
    # Before the Lambda builds its clients: its DynamoDB calls to this server go unsigned.
    botocore_local.install(server.url)
    handlers: dict[str, Any] = {}
    dynamodb_url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or server.url
    for spec in specs:
        environment = hooks.lambda_environment(spec, aws_endpoint_url=iot_endpoint_url, region=region)
        # Service-specific endpoint (botocore >= 1.31): DynamoDB here, everything else at the emulator.
        # An AWS_ENDPOINT_URL_DYNAMODB given to the emulator wins, as on the thread runner (fault
        # injection: a proxy that hangs some requests and relays the rest to aws_endpoint_url).
        environment["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        # Functions that disagree on a variable (the hook's and the retirer's POWERTOOLS_SERVICE_NAME) each
        # read their own: load_lambda runs each with its environment layered over the process's.
        handlers[spec.function_arn] = hooks.load_lambda(spec, environment)
    return handlers, server


def _picklable(exc: Exception) -> Exception:
    """The exception itself if it crosses the pipe, else one of its type name and message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return HookHostError(f"{type(exc).__name__}: {exc}")
