"""One exit-code scheme and one error style for every command of the project.

0 done; 1 refused, rejected or failed: the command ran and what it asked for did not happen (AWS, the
emulator or the registry said no, a device was rejected or failed, a run broke a threshold); 2 usage: the
command line is wrong (an unknown, missing or conflicting option, a bad value, a file it names that is
missing or is not what the option wants), and nothing was attempted; 130 interrupted (Ctrl-C).

An error is one line on stderr, `<tool>: <message>`, never a traceback: `OneLineErrors` is the root Typer
group of each tool and turns click's usage errors, a CommandError, Ctrl-C and an unforeseen exception into
that line and the exit code.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 refused, rejected or failed; 2 usage error (nothing was attempted); "
    "130 interrupted. Errors are one line on stderr: TOOL: MESSAGE."
)


class CommandError(Exception):
    """What a command says when it cannot do what was asked: one line, and its exit code (1 by default)."""

    exit_code: int = EXIT_REFUSED


class UsageError(CommandError):
    """The command line is wrong; nothing was attempted."""

    exit_code = EXIT_USAGE


def error_line(tool: str, message: object) -> str:
    """`tool: message` on one line, whatever line breaks the message held."""
    return f"{tool}: {' '.join(str(message).split())}"


def say(tool: str, message: object) -> None:
    """Print `tool: message` on stderr."""
    print(error_line(tool, message), file=sys.stderr, flush=True)


def _where(exc: BaseException) -> str:
    """` at package/module.py:LINE` of the innermost frame: enough to find a bug without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    path = Path(frames[-1].filename)
    return f" at {path.parent.name}/{path.name}:{frames[-1].lineno}"


class OneLineErrors(TyperGroup):
    """The root group of a tool: every way a command can end becomes an exit code and at most one line.

    A command's own failures are caught in `invoke` (typer turns Ctrl-C into a silent exit 130 before
    `main` could see it); click's usage errors, which parsing raises, in `main`.
    """

    tool: ClassVar[str] = "command"

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_exceptions.ClickException):
            raise  # an exit code already chosen, or a usage error for `main`
        except CommandError as exc:
            say(self.tool, exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            say(self.tool, "interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - a bug still ends in one line, with where it happened
            say(self.tool, f"internal error: {type(exc).__name__}: {exc}{_where(exc)} (please report it)")
            raise typer.Exit(EXIT_REFUSED) from None

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click_exceptions.NoArgsIsHelpError:
            code = EXIT_USAGE  # typer has printed the help already
        except click_exceptions.ClickException as exc:
            say(self.tool, exc.format_message())
            code = EXIT_USAGE if exc.exit_code == EXIT_USAGE else EXIT_REFUSED
        except typer.Abort:  # end of input at a prompt
            say(self.tool, "interrupted")
            code = EXIT_INTERRUPTED
        code = code if isinstance(code, int) else EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code


def one_line_errors(tool: str) -> type[OneLineErrors]:
    """The root group class for TOOL (the name users type: fleetctl, device-sim, iot-emulator)."""
    return type(f"OneLineErrors[{tool}]", (OneLineErrors,), {"tool": tool})
