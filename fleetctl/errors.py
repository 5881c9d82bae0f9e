"""fleetctl's errors, in the project's exit-code scheme (cli_conventions): each is one line on stderr."""

from __future__ import annotations

from cli_conventions import EXIT_USAGE, CommandError


class FleetctlError(CommandError):
    """What was asked did not happen (the registry or AWS said no, or the data was refused): exit status 1."""


class UsageError(FleetctlError):
    """The command line is wrong (an option, or a file it names is missing or unreadable): exit status 2."""

    exit_code = EXIT_USAGE
