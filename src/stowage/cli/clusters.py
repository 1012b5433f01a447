"""``stowage clusters``: clusters of a project, their agents' status and agent tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stowage.cli.common import OutputOption, ProjectOption, ServerOption, TokenOption, api, confirm, project_path
from stowage.cli.render import echo_json, fields, table, when

app = typer.Typer(help="Clusters and their agents: register, list, show, delete, rotate tokens.", no_args_is_help=True)

RefArgument = Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="Cluster name or id.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _print_token(cluster: dict[str, Any], verb: str) -> None:
    # Only the token on stdout, so `TOKEN=$(stowage clusters register prod)` works; the notice goes to stderr.
    typer.echo(
        f"{verb} cluster '{cluster['name']}' (id {cluster['id']}). Its agent token is shown once: store it in the "
        "agent's Secret now (stowage agent --token ... or --token-file).",
        err=True,
    )
    typer.echo(cluster["agentToken"])


def cluster_text(cluster: dict[str, Any]) -> str:
    """One cluster for people."""
    return fields(
        [
            ("Name", cluster.get("name")),
            ("ID", cluster.get("id")),
            ("Project", cluster.get("project")),
            ("Status", cluster.get("status")),
            ("Last heartbeat", when(cluster.get("lastHeartbeatAt"))),
            ("Agent version", cluster.get("agentVersion")),
            ("Cloud account", cluster.get("cloudAccountId")),
            ("Region", cluster.get("region")),
            ("Token ends with", cluster.get("tokenHint")),
            ("Token created", when(cluster.get("tokenCreatedAt"))),
            ("Token revoked", when(cluster.get("tokenRevokedAt"))),
            ("Created", when(cluster.get("createdAt"))),
        ]
    )


@app.command("register")
def register_cluster(
    name: Annotated[str, typer.Argument(help="Cluster name (lowercase letters, digits and '-').")],
    cloud_account_id: Annotated[
        str | None,
        typer.Option("--cloud-account-id", metavar="ACCOUNT", help="AWS account (12 digits) the cluster runs in."),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region the cluster runs in.")] = None,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Register a cluster; its agent token is printed once, on stdout, and never shown again."""
    body = {"name": name, "cloudAccountId": cloud_account_id, "region": region}
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post(project_path(project, "clusters"), body)
    if conn.json:
        echo_json(created)
        return
    _print_token(created, "Registered")


@app.command("list")
def list_clusters(
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List the clusters of a project with their agents' status."""
    with api(server, token, output) as (client, conn):
        answer: dict[str, Any] = client.get(project_path(project, "clusters"))
    if conn.json:
        echo_json(answer)
        return
    items: list[dict[str, Any]] = answer.get("items") or []
    if not items:
        typer.echo(f"No clusters in project {project}. Register one with `stowage clusters register NAME`.")
        return
    typer.echo(
        table(
            ("NAME", "STATUS", "LAST HEARTBEAT", "AGENT", "ACCOUNT", "REGION", "ID"),
            (
                [
                    c["name"],
                    "revoked" if c.get("tokenRevokedAt") else c.get("status"),
                    when(c.get("lastHeartbeatAt")),
                    c.get("agentVersion"),
                    c.get("cloudAccountId"),
                    c.get("region"),
                    c["id"],
                ]
                for c in items
            ),
        )
    )


@app.command("show")
def show_cluster(
    ref: RefArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show one cluster and its agent's status."""
    with api(server, token, output) as (client, conn):
        cluster: dict[str, Any] = client.get(project_path(project, "clusters", ref))
    if conn.json:
        echo_json(cluster)
        return
    typer.echo(cluster_text(cluster))


@app.command("delete")
def delete_cluster(
    ref: RefArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Delete a cluster: its agent token stops working at once (backups in the bucket are untouched)."""
    with api(server, token, output) as (client, conn):
        cluster: dict[str, Any] = client.get(project_path(project, "clusters", ref))
        if not yes:
            confirm(f"Delete cluster {cluster['name']} from project {project}? Its agent stops working.")
        client.delete(project_path(project, "clusters", cluster["id"]))
    if conn.json:
        echo_json(cluster)
        return
    typer.echo(f"Deleted cluster {cluster['name']} ({cluster['id']}).")


@app.command("rotate-token")
def rotate_token(
    ref: RefArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Replace the cluster's agent token: the old one stops at once; the new one is printed once."""
    with api(server, token, output) as (client, conn):
        if not yes:
            confirm(f"Rotate the agent token of cluster {ref}? The running agent stops until it gets the new one.")
        rotated: dict[str, Any] = client.post(project_path(project, "clusters", ref, "rotate-token"))
    if conn.json:
        echo_json(rotated)
        return
    _print_token(rotated, "Rotated the token of")


@app.command("revoke-token")
def revoke_token(
    ref: RefArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Revoke the cluster's agent token without issuing a new one (rotate-token issues one)."""
    with api(server, token, output) as (client, conn):
        cluster: dict[str, Any] = client.post(project_path(project, "clusters", ref, "revoke-token"))
    if conn.json:
        echo_json(cluster)
        return
    typer.echo(f"Revoked the agent token of cluster {cluster['name']} ({cluster['id']}).")


@app.command("issuances")
def issuances(
    location: Annotated[str | None, typer.Option("--location", metavar="ID", help="Only this location.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", metavar="ID", help="Only this cluster (id).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (newest) entries.")] = 0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """The audit of temporary credentials issued to agents, newest first."""
    params = {"locationId": location, "clusterId": cluster, "limit": limit, "offset": offset}
    with api(server, token, output) as (client, conn):
        answer: dict[str, Any] = client.get(project_path(project, "credential-issuances"), params)
    if conn.json:
        echo_json(answer)
        return
    typer.echo(
        table(
            ("ISSUED", "CLUSTER", "LOCATION", "ACCESS KEY", "EXPIRES"),
            (
                [
                    when(i.get("issuedAt")),
                    i.get("clusterName"),
                    i.get("locationName"),
                    f"{i.get('accessKeyIdPrefix')}…",
                    when(i.get("expiresAt")),
                ]
                for i in answer.get("items") or []
            ),
        )
    )
