"""`fleetctl claim ...`: hand a claim credential to the factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fleetctl import claims
from fleetctl.cli_common import ConfigFile, EndpointFile, JsonOut, Region, print_json, user_errors
from fleetctl.errors import UsageError
from fleetctl.target import Target, load_settings, resolve_target

claim_app = typer.Typer(no_args_is_help=True, help="Claim credentials.")


@claim_app.command("export")
@user_errors
def export(
    name: str,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the credential into.")],
    region: Region = None,
    endpoint_file: EndpointFile = None,
    secret_id: Annotated[
        str | None,
        typer.Option(
            "--secret-id", help="Secret name or ARN (default: <stack_name>/claim-credentials/<NAME>)."
        ),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="AWS: the AmazonRootCA1.pem to ship alongside.")
    ] = None,
    config: ConfigFile = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Write a generated-mode claim credential: claim.cert.pem, claim.private.key (0600), ca.pem."""
    if endpoint_file is not None:
        target = resolve_target(table="-", region=region, endpoint_file=endpoint_file)
        material = claims.from_endpoint_file(target, name)
    else:
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise UsageError("say where: --region R (AWS) or --endpoint-file F (emulator)")
        settings = load_settings(cdk_json=config, serial_pattern=None)
        material = claims.from_secrets_manager(
            Target(table="-", region=region),
            name,
            stack_name=settings.stack_name,
            secret_id=secret_id,
            ca_file=ca_file,
        )
    manifest = claims.write_claim(material, out, force=force)
    if json_out:
        print_json(manifest)
        return
    typer.echo(f"claim {name} ({material.certificate_id or 'id unknown'}) from {material.source} -> {out}")
    if "ca_note" in manifest:
        typer.echo(f"note: {manifest['ca_note']}", err=True)
