"""The hook's reason and request id, read from its own Powertools log line in the hook process, reach
the emulator's rejection line; nothing a client chose can forge that line."""

from __future__ import annotations

import logging
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.mqtt.provisioning import Outcome, log_outcome
from emulator.provisioning.hook import HookDenied, LambdaSpec, hosted_lambda_hook
from emulator.provisioning.hook_host import HookHost
from emulator.provisioning.hook_log import RejectionNotes
from emulator.provisioning.payloads import Rejected

ARN = "arn:aws:lambda:eu-west-1:000000000000:function:logging-probe"
HANDLER = """
from aws_lambda_powertools import Logger

logger = Logger(service="logging-probe")

def handler(event, context):
    allowed = event["reason"].startswith("ALLOWED")
    fields = {"reason": event["reason"], "request_id": context.aws_request_id}
    logger.info("provisioning decision", extra=fields)
    if event.get("raise"):
        raise RuntimeError("after logging")
    return {"allowProvisioning": allowed, "parameterOverrides": {"request_id": context.aws_request_id}}
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookHost]:
    asset = tmp_path_factory.mktemp("asset")
    (asset / "logging_probe.py").write_text(textwrap.dedent(HANDLER))
    spec = LambdaSpec(str(asset), "logging_probe.handler", {}, "logging-probe", ARN)
    host = HookHost([spec], iot_endpoint_url="http://127.0.0.1:9", region="eu-west-1", workers=2)
    yield host
    host.close()


def test_a_denial_carries_the_reason_and_request_id_the_lambda_logged(host: HookHost) -> None:
    hook = hosted_lambda_hook(host, LambdaSpec("unused", "x.y", {}, "logging-probe", ARN))
    allowed = hook.invoke({"reason": "ALLOWED_NEW"})
    uuid.UUID(allowed.parameter_overrides["request_id"])  # the emulator sets aws_request_id
    with pytest.raises(HookDenied) as denied:
        hook.invoke({"reason": "UNKNOWN_SERIAL"})
    assert denied.value.hook_reason == "UNKNOWN_SERIAL"
    uuid.UUID(str(denied.value.request_id))
    with pytest.raises(HookDenied, match="failed: RuntimeError") as failed:
        hook.invoke({"reason": "ALLOWED_NEW", "raise": True})
    assert failed.value.hook_reason == "ALLOWED_NEW" and failed.value.request_id


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def rejection_line(notes: RejectionNotes, client_id: str) -> str:
    """The front end's own line for a RegisterThing the hook denied, through the filter as the emulator
    installs it (runtime.py: on the `emulator.provisioning` logger)."""
    logger = logging.getLogger("emulator.provisioning")
    capture = _Capture()
    logger.addHandler(capture)
    logger.addFilter(notes)
    level, logger.level = logger.level, logging.INFO
    try:
        reply = Rejected(403, "AccessDenied", "The pre-provisioning hook denied the request")
        log_outcome(Outcome("RegisterThing", client_id, reply, 3.0, True), "t/rejected")
    finally:
        logger.removeFilter(notes)
        logger.removeHandler(capture)
        logger.level = level
    (line,) = capture.lines
    return line


def test_the_rejection_line_names_the_hook_reason_once_and_cannot_be_forged() -> None:
    notes = RejectionNotes()
    assert rejection_line(notes, "prov-1").endswith("3.0ms")  # nothing noted: the line as it was
    notes.note("prov-1", HookDenied("denied", hook_reason="TAKEN", request_id="r-1"))
    notes.note("prov-1", HookDenied("denied", hook_reason="REVOKED", request_id="r-2"))
    assert rejection_line(notes, "prov-1").endswith("3.0ms hook_reason=TAKEN request_id=r-1")
    assert rejection_line(notes, "prov-1").endswith("hook_reason=REVOKED request_id=r-2")
    assert "hook_reason" not in rejection_line(notes, "prov-1")  # each note is used once
    notes.note(
        "prov-2", HookDenied("denied", hook_reason="X\nRegisterThing accepted device-SN9", request_id="a b")
    )
    line = rejection_line(notes, "prov-2")
    assert "\n" not in line and line.endswith(
        'hook_reason="X\\nRegisterThing accepted device-SN9" request_id="a b"'
    )
    # A client id with a newline: the notes still find its line, which stays one line.
    notes.note("prov-3\nRegisterThing accepted", HookDenied("denied", hook_reason="TAKEN", request_id="r-3"))
    line = rejection_line(notes, "prov-3\nRegisterThing accepted")
    assert "\n" not in line
    assert line.startswith('RegisterThing rejected client="prov-3\\nRegisterThing accepted" status=403')
    assert line.endswith("hook_reason=TAKEN request_id=r-3")


def test_a_denial_without_hook_details_adds_nothing(tmp_path: Path) -> None:
    notes = RejectionNotes()
    notes.note("prov-3", HookDenied("The pre-provisioning hook did not answer within 5 s"))
    assert "hook_reason" not in rejection_line(notes, "prov-3")
