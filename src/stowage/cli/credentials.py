"""``stowage credentials``: an AWS ``credential_process`` that prints a cluster's temporary credentials.

In ``~/.aws/config``::

    [profile backups]
    credential_process = stowage credentials --location <location id> --server https://stowage.example.com

with the cluster's agent token in ``STOWAGE_AGENT_TOKEN`` (or ``--token-file``). The aws CLI, Velero, restic
and rclone then call it whenever the previous credentials are about to expire.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from stowage.cli.client import UsageProblem, segment
from stowage.cli.common import ServerOption, StowageGroup, api, connection
from stowage.domain.clusters import AGENT_TOKEN_PREFIX

VERSION = 1


def process_document(container: dict[str, Any]) -> dict[str, Any]:
    """The ``credential_process`` shape (Version 1) of an answer in the container-credentials shape."""
    return {
        "Version": VERSION,
        "AccessKeyId": container["AccessKeyId"],
        "SecretAccessKey": container["SecretAccessKey"],
        "SessionToken": container["Token"],
        "Expiration": container["Expiration"],
    }


def _agent_token(token: str | None, token_file: Path | None) -> str:
    if token and token.strip():
        return token.strip()
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageProblem(f"cannot read --token-file {token_file}: {exc.strerror}") from exc
    from_env = os.environ.get("STOWAGE_AGENT_TOKEN", "").strip()
    if from_env:
        return from_env
    # `stowage --token stwa_... credentials ...` works too; a user's API token (stw_...) would only be refused.
    root = connection().token or ""
    if root.startswith(AGENT_TOKEN_PREFIX):
        return root
    raise UsageProblem(
        "credentials need the cluster's agent token: pass --token/--token-file or set STOWAGE_AGENT_TOKEN."
    )


def credentials(
    location: Annotated[str, typer.Option("--location", "-l", metavar="ID", help="Backup location id.")],
    token: Annotated[
        str | None,
        typer.Option("--token", help="The cluster's agent token (env STOWAGE_AGENT_TOKEN).", show_default=False),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", envvar="STOWAGE_AGENT_TOKEN_FILE", help="Read the agent token from a file."),
    ] = None,
    server: ServerOption = None,
) -> None:
    """Print temporary credentials for a location as an AWS credential_process (JSON, Version 1)."""
    agent_token = _agent_token(token, token_file)
    with api(server, agent_token) as (client, _):
        answer: dict[str, Any] = client.get(f"/agent/locations/{segment(location)}/credentials")
    # Always JSON on stdout, whatever --output says: the AWS SDKs parse it.
    typer.echo(json.dumps(process_document(answer)))


# Runnable on its own (``python -m stowage.cli.credentials``) for images that ship only this command.
app = typer.Typer(cls=StowageGroup, add_completion=False, pretty_exceptions_enable=False)
app.command()(credentials)

if __name__ == "__main__":
    app()
