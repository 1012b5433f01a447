"""``stowage projects``: list, create, rotate the External ID."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stowage.cli.common import OutputOption, ServerOption, TokenOption, api, confirm, project_path
from stowage.cli.render import echo_json, fields, table, when

app = typer.Typer(help="Projects of your tenant and their External IDs.", no_args_is_help=True)


@app.command("list")
def list_projects(
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List the projects of your tenant."""
    with api(server, token, output) as (client, conn):
        projects: list[dict[str, Any]] = client.get("/projects")
    if conn.json:
        echo_json(projects)
        return
    typer.echo(
        table(
            ("NAME", "ID", "EXTERNAL ID", "CREATED"),
            ([p["name"], p["id"], p["externalId"], when(p.get("createdAt"))] for p in projects),
        )
    )


@app.command("create")
def create_project(
    name: Annotated[str, typer.Argument(help="Name of the new project.")],
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Create a project (admins); it gets its own External ID."""
    with api(server, token, output) as (client, conn):
        project: dict[str, Any] = client.post("/projects", {"name": name})
    if conn.json:
        echo_json(project)
        return
    typer.echo(f"Created project {project['name']}.")
    typer.echo(fields([("ID", project["id"]), ("External ID", project["externalId"])]))


@app.command("rotate-external-id")
def rotate_external_id(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Replace a project's External ID (admins): every role trusting the old one stops working."""
    if not yes:
        typer.echo(
            f"Rotating the External ID of project '{project}' breaks every IAM role that trusts the current one: "
            "their trust policies must be updated with the new External ID before Stowage can assume them again.",
            err=True,
        )
        confirm("Rotate the External ID now?")
    with api(server, token, output) as (client, conn):
        answer: dict[str, Any] = client.post(project_path(project, "external-id", "rotate"))
    if conn.json:
        echo_json(answer)
        return
    rotated = answer["project"]
    typer.echo(fields([("Project", rotated["name"]), ("New External ID", rotated["externalId"])]))
    typer.echo(f"\n! {answer.get('warning', '')}".rstrip())
