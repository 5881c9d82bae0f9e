"""What the three command lines (fleetctl, device-sim, iot-emulator) share: exit codes, one-line errors."""

from __future__ import annotations

from cli_conventions.exits import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CommandError,
    OneLineErrors,
    UsageError,
    error_line,
    one_line_errors,
    say,
)

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "CommandError",
    "OneLineErrors",
    "UsageError",
    "error_line",
    "one_line_errors",
    "say",
]
