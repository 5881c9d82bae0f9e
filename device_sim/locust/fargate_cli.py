"""`python -m device_sim fargate start|stop|status`: the command line of device_sim/locust/fargate.py.

Errors are UserError (exit 2) or Refused (exit 1), which the root command (device_sim.cli) prints as one
line.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

fargate_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="A Locust run on the opt-in ECS Fargate load-test stack (infra/loadtest; docs/loadtest.md).",
)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


StackName = Annotated[str, typer.Option("--stack", help="The load-test stack's name.")]
Region = Annotated[
    str | None, typer.Option("--region", help="AWS region (default: your AWS configuration's).")
]


def _aws(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


@fargate_app.command("start", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def fargate_start(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option("--workers", min=1, max=1000, help="Worker tasks.")],
    stack: StackName = "FleetLoadTest",
    region: Region = None,
) -> None:
    """Start the master, then WORKERS workers; the rest of the line goes to the master's `locust` options.

    For example: `fargate start --workers 4 -- --endpoint XXXX-ats.iot.eu-west-1.amazonaws.com
    --template-name FleetProvisioningTemplate --devices 10000 --concurrency 400 --rate 50`.
    """
    from device_sim.locust import fargate

    options = [a for a in ctx.args if a != "--"]
    outputs = fargate.stack_outputs(_aws("cloudformation", region), stack)
    started = fargate.start(_aws("ecs", region), outputs, workers, options)
    print(json.dumps(started, indent=2))
    stderr.print(
        f"run {started['run']}: master at {started['master_address']}, {len(started['workers'])} workers; "
        f"report in {started['report']}; stop it with: device-sim fargate stop --stack {stack}"
    )


@fargate_app.command("stop")
def fargate_stop(
    stack: StackName = "FleetLoadTest",
    region: Region = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run (default: every run).")] = None,
) -> None:
    """Stop the master (it uploads the partial report), then every worker."""
    from device_sim.locust import fargate

    outputs = fargate.stack_outputs(_aws("cloudformation", region), stack)
    stopped = fargate.stop(_aws("ecs", region), outputs, run)
    print(json.dumps(stopped, indent=2))


@fargate_app.command("status")
def fargate_status(stack: StackName = "FleetLoadTest", region: Region = None) -> None:
    """The load test's tasks that are not stopped."""
    from device_sim.locust import fargate

    outputs = fargate.stack_outputs(_aws("cloudformation", region), stack)
    tasks = fargate.running_tasks(_aws("ecs", region), outputs)
    print(
        json.dumps(
            [
                {
                    "task": t["taskArn"],
                    "run": t.get("group"),
                    "status": t.get("lastStatus"),
                    "role": t.get("taskDefinitionArn"),
                }
                for t in tasks
            ],
            indent=2,
        )
    )
