"""The hook Lambda's decision, read from its own log line, for the emulator's rejection line.

The stack's hook logs one structured line per decision with `reason` and `request_id` (its Powertools
logger, `extra=` fields). The emulator does not depend on anything else of the hook: a logging handler
on the root logger of the process that runs the Lambda keeps, per request id (the `aws_request_id` the
emulator puts in the Lambda context), the last `reason` logged with it. Powertools loggers propagate to
the root logger; the filter Powertools adds to root handlers (so that its lines are not printed twice)
is ignored here, and the Lambda's own JSON line still goes to stdout as before.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from emulator.logsafe import quoted

_MAX_PENDING = 4096  # a request id never popped (a timed-out call) cannot grow this without bound


class DecisionCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._guard = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        return True  # Powertools' SuppressFilter on root handlers must not hide its records from us

    def emit(self, record: logging.LogRecord) -> None:
        request_id: Any = getattr(record, "request_id", None)
        reason: Any = getattr(record, "reason", None)
        if not isinstance(request_id, str) or reason is None:
            return
        with self._guard:
            self._reasons[request_id] = str(reason)[:200]
            while len(self._reasons) > _MAX_PENDING:
                self._reasons.popitem(last=False)

    def pop(self, request_id: str) -> str | None:
        with self._guard:
            return self._reasons.pop(request_id, None)


_capture: DecisionCapture | None = None
_capture_lock = threading.Lock()


def capture() -> DecisionCapture:
    """This process's capture, on the root logger (installed once)."""
    global _capture
    with _capture_lock:
        if _capture is None:
            _capture = DecisionCapture()
            logging.getLogger().addHandler(_capture)
        return _capture


class RejectionNotes(logging.Filter):
    """Adds `hook_reason=... request_id=...` to the MQTT front end's line for a rejected RegisterThing.

    The service notes each hook denial by client id (`note`, its `on_rejection` observer); this filter,
    on the front end's logger, appends the note to that client's next `RegisterThing rejected` line (found by
    the raw client id the line carries as `extra`; the line itself shows it quoted, emulator/logsafe.py), so
    that one grep by client id finds the hook's reason in the emulator's own log. (The front end's
    line is built in emulator/mqtt/provisioning.py; a field on its Rejected reply would be neater, and
    the MQTT layer's owner can take that over.) Notes are per client id, first in first out; a client
    id is one connection at a time (AWS disconnects the older), so two notes of one client id are two
    requests of one connection, logged in the order they finished.
    """

    def __init__(self, capacity: int = 4096) -> None:
        super().__init__()
        self._notes: OrderedDict[str, list[str]] = OrderedDict()
        self._capacity = capacity
        self._guard = threading.Lock()

    def note(self, client_id: str, error: Any) -> None:
        reason = getattr(error, "hook_reason", None)
        request_id = getattr(error, "request_id", None)
        if reason is None and request_id is None:
            return
        # Quoted and escaped: a reason a hook built from the device's input cannot forge a line or a field.
        note = f"hook_reason={quoted(reason or '-')} request_id={quoted(request_id or '-')}"
        with self._guard:
            self._notes.setdefault(client_id, []).append(note)
            self._notes.move_to_end(client_id)
            while len(self._notes) > self._capacity:
                self._notes.popitem(last=False)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        client_id = getattr(record, "client_id", None)  # the raw client id; the line has it quoted
        if (
            isinstance(client_id, str)
            and isinstance(args, tuple)
            and args
            and args[0] == "RegisterThing"
            and isinstance(record.msg, str)
            and record.msg.startswith("%s rejected client=%s")
        ):
            with self._guard:
                notes = self._notes.get(client_id)
                note = notes.pop(0) if notes else None
                if notes == []:
                    del self._notes[client_id]
            if note is not None:
                record.msg = record.msg + " %s"
                record.args = (*args, note)
        return True
