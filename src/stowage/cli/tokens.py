"""``stowage tokens``: API tokens of the tenant (admins)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stowage.cli.client import segment
from stowage.cli.common import OutputOption, ServerOption, TokenOption, api
from stowage.cli.render import echo_json, table, when
from stowage.domain.access import Role

app = typer.Typer(help="API tokens of your tenant (admins).", no_args_is_help=True)


@app.command("create")
def create_token(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. 'ci'.")],
    role: Annotated[Role, typer.Option("--role", "-r", help="What the token may do.")] = Role.VIEWER,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Create a token; its value is printed once, on stdout, and never shown again."""
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post("/tokens", {"name": name, "role": role.value})
    if conn.json:
        echo_json(created)
        return
    # Only the secret on stdout, so `TOKEN=$(stowage tokens create ci)` works; the notice goes to stderr.
    typer.echo(
        f"Created token '{created['name']}' (role {created['role']}, id {created['id']}). "
        "Copy it now: it is not shown again.",
        err=True,
    )
    typer.echo(created["token"])


@app.command("list")
def list_tokens(
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List the tokens of your tenant (values are never shown, only their last characters)."""
    with api(server, token, output) as (client, conn):
        tokens: list[dict[str, Any]] = client.get("/tokens")
    if conn.json:
        echo_json(tokens)
        return
    typer.echo(
        table(
            ("ID", "NAME", "ROLE", "ENDS WITH", "CREATED", "LAST USED", "REVOKED"),
            (
                [
                    t["id"],
                    t["name"],
                    t["role"],
                    t.get("hint"),
                    when(t.get("createdAt")),
                    when(t.get("lastUsedAt")),
                    when(t.get("revokedAt")),
                ]
                for t in tokens
            ),
        )
    )


@app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="Token id (see `tokens list`).")],
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Revoke a token: it stops working at once."""
    with api(server, token, output) as (client, conn):
        revoked: dict[str, Any] = client.delete(f"/tokens/{segment(token_id)}")
    if conn.json:
        echo_json(revoked)
        return
    typer.echo(f"Revoked token '{revoked['name']}' ({revoked['id']}).")
