"""`python -m device_sim`: provision one device, run a fleet (also on Locust: `locust`, `fargate`), merge
reports, run the demo; and the factory's test station (`factory`).

This layer alone owns options, printing and exit codes. Exit codes: 0 done; 1 a device was rejected or failed
(for `fleet`, `locust` and `report merge`: the run broke a threshold, see device_sim/thresholds.py;
rejections alone are outcomes, not errors); 2 bad input or an unusable target; 130 interrupted. Every error
is one line on stderr. This module is the app; each command group is a module beside it (provision_cli,
fleet_cli, locust_cli, factory_cli, locust/fargate_cli), and the options they share are in cli_options.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from device_sim.errors import UserError
from device_sim.factory_cli import factory
from device_sim.fleet_cli import fleet, report_merge, report_show
from device_sim.locust_cli import LOCUST_HELP, locust_command
from device_sim.provision_cli import provision

try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class OneLineErrors(TyperGroup):
    """Usage errors and our own UserError as one line on stderr, never a box or a traceback."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click_exceptions.NoArgsIsHelpError:
            code = 2  # typer has printed the help already
        except click_exceptions.ClickException as exc:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            code = exc.exit_code
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except (typer.Abort, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            code = 130
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulated devices for AWS IoT fleet provisioning by claim (emulator or AWS).",
)
report_app = typer.Typer(
    cls=OneLineErrors, add_completion=False, no_args_is_help=True, help="Work with fleet reports."
)
app.add_typer(report_app, name="report")
app.command()(factory)

app.command()(provision)
app.command()(fleet)
app.command("locust", help=LOCUST_HELP, context_settings={"allow_extra_args": True})(locust_command)
report_app.command("merge")(report_merge)
report_app.command("show")(report_show)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="State of the demo (emulator, serials).")] = Path(
        ".state/demo"
    ),
    reports: Annotated[Path, typer.Option("--reports", help="Where the reports go.")] = Path("reports"),
    devices: Annotated[int, typer.Option("--devices", min=1, help="Serials to import and provision.")] = 100,
) -> None:
    """The whole story on the local emulator: synth, import, provision, show rejections, report."""
    from device_sim.demo import run_demo

    started = time.monotonic()
    run_demo(workdir=workdir, reports=reports, devices=devices)
    stderr.print(f"demo finished in {time.monotonic() - started:.0f} s")


def _add_fargate() -> None:
    from device_sim.locust.fargate_cli import fargate_app

    app.add_typer(fargate_app, name="fargate")


_add_fargate()
