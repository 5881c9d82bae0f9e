"""What every fleetctl command shares: the target options, AWS errors as one line, the two output streams."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from fleetctl.errors import FleetctlError
from fleetctl.registry_store import RegistryStore
from fleetctl.target import Target, resolve_target

Table_ = Annotated[str | None, typer.Option("--table", help="Serial table name (real AWS).")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region (default: AWS_REGION / profile).")]
EndpointFile = Annotated[Path | None, typer.Option("--endpoint-file", help="Emulator endpoint.json.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="cdk.json holding context.fleet (default: the repository's).")
]
SerialPattern = Annotated[
    str | None, typer.Option("--serial-pattern", help="Override the configured pattern.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]

F = TypeVar("F", bound=Callable[..., Any])

registry_app = typer.Typer(no_args_is_help=True, help="The serial registry (DynamoDB).")


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def user_errors(command: F) -> F:
    """AWS's refusals and failures as a FleetctlError: one line on stderr and exit status 1 (the root group,
    cli_conventions.OneLineErrors, prints it), never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, text = error.get("Code", "?"), error.get("Message", "")
            raise FleetctlError(f"AWS refused {exc.operation_name}: {code}: {text}".strip()) from None
        except BotoCoreError as exc:
            raise FleetctlError(f"AWS call failed: {exc}") from None

    return wrapper  # type: ignore[return-value]


def registry(
    table: str | None, region: str | None, endpoint_file: Path | None
) -> tuple[Target, RegistryStore]:
    target = resolve_target(table=table, region=region, endpoint_file=endpoint_file)
    return target, RegistryStore(target.client("dynamodb"), target.table)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
