"""`device-sim` (also `python -m device_sim`): provision one device, run a fleet (also on Locust: `locust`,
`fargate`), merge reports, run the demo; and the factory's test station (`factory`).

This layer alone owns options, printing and exit codes, in the project's scheme (cli_conventions): 0 done;
1 a device was rejected or failed, or the endpoint could not be reached or refused the claim (for `fleet`,
`locust` and `report merge`: the run broke a threshold, see device_sim/thresholds.py; rejections alone are
outcomes, not errors); 2 bad input (options, or a file they name); 130 interrupted. Every error is one line
on stderr, `device-sim: <message>`. This module is the app; each command group is a module beside it
(provision_cli, fleet_cli, locust_cli, factory_cli, locust/fargate_cli), and the options they share are in
cli_options.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli_conventions import EXIT_CODES_HELP, one_line_errors
from device_sim.errors import TOOL
from device_sim.factory_cli import factory
from device_sim.fleet_cli import fleet, report_merge, report_show
from device_sim.locust_cli import LOCUST_HELP, locust_command
from device_sim.provision_cli import provision

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    cls=one_line_errors(TOOL),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulated devices for AWS IoT fleet provisioning by claim (emulator or AWS).",
    epilog=EXIT_CODES_HELP,
)
report_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Work with fleet reports.")
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


def _add_rotate() -> None:
    from device_sim.rotate_cli import rotate

    app.command()(rotate)


_add_fargate()
_add_rotate()


def main() -> None:
    """The `device-sim` console script."""
    app(prog_name=TOOL)
