"""The ``stowage`` command line (Typer): a thin HTTP client of API v1."""

from __future__ import annotations

from typing import Annotated

import typer

from stowage.cli import backups, clusters, credentials, locations, projects, restores, sts, tokens, workspaces
from stowage.cli.client import DEFAULT_SERVER
from stowage.cli.common import Output, StowageGroup, set_root_options

app = typer.Typer(
    cls=StowageGroup,
    help="Stowage: Kubernetes backups into S3 with dynamic AWS credentials.",
    no_args_is_help=True,
    # Our errors are one line on stderr (see StowageGroup); never a traceback with locals.
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    server: Annotated[
        str, typer.Option("--server", envvar="STOWAGE_SERVER", metavar="URL", help="Stowage server URL.")
    ] = DEFAULT_SERVER,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="STOWAGE_TOKEN",
            help="API token; for a local server, defaults to the admin-token file of its data directory.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table for people, json for scripts.")] = (
        Output.TABLE
    ),
) -> None:
    """Stowage: Kubernetes backups into S3 with dynamic AWS credentials."""
    set_root_options(server, token, output)


app.command("sts")(sts.sts)
app.command("policies")(sts.policies)
app.add_typer(projects.app, name="projects")
app.add_typer(locations.app, name="locations")
app.add_typer(tokens.app, name="tokens")
app.add_typer(clusters.app, name="clusters")
app.add_typer(backups.app, name="backups")
app.add_typer(restores.app, name="restores")
app.add_typer(workspaces.app, name="workspaces")
app.command("protection")(workspaces.protection)
app.command("credentials")(credentials.credentials)
