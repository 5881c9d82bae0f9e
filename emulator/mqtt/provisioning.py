"""The fleet-provisioning topics: match, decode, call the service off the event loop, reply.

Each request gets exactly one reply, `/accepted` or `/rejected`, delivered to the connection that
asked and to no other, even if other connections subscribe to the same reply topics. With `--limits aws`
each operation is throttled at AWS's transactions per second (per account, as AWS counts them): a request
past the rate is rejected at once with 429 `ThrottlingException` (limits.py). Each connection's requests
under way are counted on its session, so that the broker stops reading a connection that has too many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from emulator.logsafe import quoted
from emulator.mqtt.connection import Session
from emulator.mqtt.limits import DEFAULT_LIMITS, Limits
from emulator.mqtt.packets import Publish
from emulator.mqtt.throttle import TokenBucket
from emulator.provisioning.errors import as_provisioning_error
from emulator.provisioning.payloads import (
    CreateCertificateFromCsrRequest,
    PayloadFormat,
    RegisterThingRequest,
    Rejected,
    Reply,
    decode_map,
    encode,
    reply_topic,
)
from emulator.provisioning.service import ProvisioningService, Requester

log = logging.getLogger("emulator.provisioning")

CREATE_KEYS_RE = re.compile(r"^\$aws/certificates/create/(json|cbor)$")
CREATE_FROM_CSR_RE = re.compile(r"^\$aws/certificates/create-from-csr/(json|cbor)$")
REGISTER_THING_RE = re.compile(r"^\$aws/provisioning-templates/([^/]+)/provision/(json|cbor)$")
# Everything under these roots belongs to the provisioning API: never relayed between clients.
RESERVED_PREFIXES = ("$aws/certificates/", "$aws/provisioning-templates/")
# UNCONFIRMED: AWS documents no throttling reply for these topics; the AWS IoT API's throttling code with
# HTTP's "too many requests", which device_sim's Rejected.throttled (and any SDK retry logic) recognises.
THROTTLED = Rejected(429, "ThrottlingException", "Rate exceeded")


@dataclass(frozen=True)
class Outcome:
    operation: str
    client_id: str
    reply: Reply
    duration_ms: float
    delivered: bool


class ProvisioningTopics:
    def __init__(
        self,
        service: ProvisioningService,
        executor: Executor,
        on_outcome: Callable[[Outcome], None] | None = None,
        *,
        register_executor: Executor | None = None,
        lose_replies: Mapping[str, int] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """`executor` runs CreateCertificateFromCsr and CreateKeysAndCertificate (CPU work);
        `register_executor` (default: the same) runs RegisterThing, whose thread mostly waits for the
        hook (up to its time-out), so that certificate requests never queue behind those waits.
        `lose_replies` (operation -> N): the first N accepted replies of that operation are applied and
        never sent, the way a reply is lost when a device loses power or its network (firmware tests)."""
        self._service = service
        self._executor = executor
        self._register_executor = register_executor or executor
        self._on_outcome = on_outcome
        self._in_flight: set[Future[Reply]] = set()  # on the worker pools
        self._abandoned: set[Future[Reply]] = set()  # still running when drain() gave up on them
        self._lose_replies = dict(lose_replies or {})
        self._rates = {
            operation: TokenBucket(rate) for operation, rate in limits.provisioning_rates().items()
        }

    def claims(self, topic: str) -> bool:
        return topic.startswith(RESERVED_PREFIXES)

    def handle(self, session: Session, message: Publish) -> None:
        topic = message.topic
        match = (
            CREATE_FROM_CSR_RE.match(topic) or CREATE_KEYS_RE.match(topic) or REGISTER_THING_RE.match(topic)
        )
        if match is None:
            # A reply topic or an unknown operation under the reserved roots: nothing answers.
            return
        operation = _operation(match)
        bucket = self._rates.get(operation)
        if bucket is not None and not bucket.take():
            self._reply(session, message, match, operation, THROTTLED, time.perf_counter())
            return
        session.request_started()
        started = time.perf_counter()
        fmt = PayloadFormat(match.group(match.lastindex or 1))
        requester = Requester(session.client_id, session.certificate_id)
        executor = self._register_executor if operation == "RegisterThing" else self._executor
        # One hand-off each way and nothing else: the worker's result comes back to the loop through
        # call_soon_threadsafe (no Task, no asyncio future chained to the pool's: issue 17).
        try:
            future = executor.submit(self._call, operation, requester, match, message.payload, fmt)
        except Exception as exc:  # the pool shut down: still one reply
            session.request_finished()
            error = as_provisioning_error(exc)
            refusal = Rejected(error.status_code, error.error_code, error.message)
            self._reply(session, message, match, operation, refusal, started)
            return
        self._in_flight.add(future)
        loop = asyncio.get_running_loop()

        def back_on_the_loop(done: Future[Reply]) -> None:  # on the worker's thread (or the pool's canceller)
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left to answer
                loop.call_soon_threadsafe(self._answered, done, session, message, match, operation, started)

        future.add_done_callback(back_on_the_loop)

    def _answered(
        self,
        future: Future[Reply],
        session: Session,
        message: Publish,
        match: re.Match[str],
        operation: str,
        started: float,
    ) -> None:
        self._in_flight.discard(future)
        session.request_finished()
        if future.cancelled() or future in self._abandoned:
            return  # dropped at shutdown (queued, or past drain's grace): no reply, as the connection closes
        self._reply(session, message, match, operation, future.result(), started)

    def _reply(
        self,
        session: Session,
        message: Publish,
        match: re.Match[str],
        operation: str,
        reply: Reply,
        started: float,
    ) -> None:
        fmt = PayloadFormat(match.group(match.lastindex or 1))
        topic = reply_topic(message.topic, reply)
        if not isinstance(reply, Rejected) and self._lose_replies.get(operation, 0) > 0:
            self._lose_replies[operation] -= 1  # on the event loop's thread only: no lock needed
            log.info(
                "%s reply lost on purpose client=%s (--lose-replies): applied, not sent",
                operation,
                quoted(session.client_id),
            )
            return
        delivered = session.deliver(topic, encode(reply.body(), fmt), qos=1)
        outcome = Outcome(
            operation, session.client_id, reply, (time.perf_counter() - started) * 1000, delivered
        )
        log_outcome(outcome, topic)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _call(
        self, operation: str, requester: Requester, match: re.Match[str], payload: bytes, fmt: PayloadFormat
    ) -> Reply:
        """On a worker thread: the whole operation, every failure turned into a Rejected."""
        try:
            if operation == "CreateCertificateFromCsr":
                return self._service.create_certificate_from_csr(
                    requester, CreateCertificateFromCsrRequest.decode(payload, fmt)
                )
            if operation == "CreateKeysAndCertificate":
                decode_map(payload, fmt, allow_empty=True)  # any map; an empty payload is AWS's example
                return self._service.create_keys_and_certificate(requester)
            return self._service.register_thing(
                requester, match.group(1), RegisterThingRequest.decode(payload, fmt)
            )
        except Exception as exc:
            error = as_provisioning_error(exc)
            if error.status_code >= 500:
                log.exception("%s failed for client=%s", operation, quoted(requester.client_id))
            return Rejected(error.status_code, error.error_code, error.message)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the requests in flight, at most `timeout` s; those still running are abandoned
        (their worker threads finish in the background, their replies are not sent)."""
        if not self._in_flight:
            return
        waiting = [asyncio.wrap_future(future) for future in self._in_flight]
        _, pending = await asyncio.wait(waiting, timeout=timeout)
        if pending:
            self._abandoned.update(future for future in self._in_flight if not future.done())
            log.info("shutdown: %d request(s) still running abandoned", len(pending))


def _operation(match: re.Match[str]) -> str:
    if match.re is CREATE_FROM_CSR_RE:
        return "CreateCertificateFromCsr"
    if match.re is CREATE_KEYS_RE:
        return "CreateKeysAndCertificate"
    return "RegisterThing"


def log_outcome(outcome: Outcome, topic: str) -> None:
    """The one log line of a request's outcome."""
    reply = outcome.reply
    suffix = "" if outcome.delivered else " (requester not subscribed to the reply topic: not delivered)"
    # `client_id` (raw) lets the hook's rejection notes find their line (provisioning/hook_log.py).
    extra = {"client_id": outcome.client_id}
    if isinstance(reply, Rejected):
        log.info(
            "%s rejected client=%s status=%s code=%s message=%s %.1fms%s",
            outcome.operation,
            quoted(outcome.client_id),
            reply.status_code,
            quoted(reply.error_code),
            quoted(reply.error_message),
            outcome.duration_ms,
            suffix,
            extra=extra,
        )
    else:
        detail = getattr(reply, "thing_name", None) or getattr(reply, "certificate_id", "")
        log.info(
            "%s accepted client=%s %s %.1fms%s",
            outcome.operation,
            quoted(outcome.client_id),
            quoted(detail),
            outcome.duration_ms,
            suffix,
            extra=extra,
        )
