"""The simulator's errors: what the user did wrong, what AWS rejected, and everything else that failed."""

from __future__ import annotations

from cli_conventions import CommandError
from cli_conventions import UsageError as _UsageError

TOOL = "device-sim"  # the prefix of its error lines (cli_conventions: `device-sim: <message>`)


class UserError(_UsageError):
    """Bad input (an option, a file it names): the CLI prints the message as one line and exits 2."""


class Refused(CommandError):
    """The endpoint or AWS could not be reached or said no (the claim refused, a stack unreadable): exit 1."""


class Rejected(Exception):
    """AWS IoT (or the emulator) answered on a `/rejected` topic."""

    def __init__(self, operation: str, status_code: int | None, error_code: str, error_message: str) -> None:
        super().__init__(f"{operation} rejected: {error_code} ({status_code}): {error_message}")
        self.operation = operation
        self.status_code = status_code
        self.error_code = error_code or "Unknown"
        self.error_message = error_message

    @property
    def throttled(self) -> bool:
        # AWS documents no throttling payload for these topics (UNCONFIRMED): HTTP's 429 or any code that says
        # "throttl"/"too many" is what a user would recognise as one.
        code = self.error_code.lower()
        return self.status_code == 429 or "throttl" in code or "toomany" in code or "limitexceeded" in code


class DeviceFailure(Exception):
    """Anything but a rejection: no connection, a timeout, a lost connection, a malformed reply.

    `kind` is a short stable name the fleet report counts by; `retryable` marks time-outs and hang-ups.
    """

    def __init__(self, kind: str, detail: str, *, retryable: bool = False, step: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.step = step
