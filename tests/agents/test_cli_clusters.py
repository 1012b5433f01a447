"""``stowage clusters ...`` and ``stowage credentials`` in-process against a real server."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner, Result

from stowage.cli import clusters, credentials
from stowage.cli.client import DEFAULT_SERVER
from stowage.cli.common import Output, StowageGroup, set_root_options
from tests.agents.helpers import agent_client, create_location
from tests.support.servers import StowageServer

app = typer.Typer(cls=StowageGroup, pretty_exceptions_enable=False)


@app.callback()
def root() -> None:
    """Reset the root options each run, as the real ``stowage`` callback does."""
    set_root_options(DEFAULT_SERVER, None, Output.TABLE)


app.add_typer(clusters.app, name="clusters")
app.command("credentials")(credentials.credentials)


def run(server: StowageServer, *args: str, token: str | None = None, input: str | None = None) -> Result:
    group, command, *rest = args
    if group == "credentials":
        full = [group, command, *rest, "--server", server.url]
    else:
        full = [group, command, *rest, "--server", server.url, "--token", token or server.admin_token]
    return CliRunner().invoke(app, full, input=input, env={"STOWAGE_AGENT_TOKEN": None, "STOWAGE_TOKEN": None})


def test_register_list_show_rotate_delete(server: StowageServer) -> None:
    registered = run(server, "clusters", "register", "cli-prod", "--cloud-account-id", "333333333333")
    assert registered.exit_code == 0, registered.output
    token = registered.stdout.strip()
    assert token.startswith("stwa_") and "\n" not in token  # only the token on stdout

    listed = run(server, "clusters", "list")
    assert listed.exit_code == 0 and "cli-prod" in listed.stdout and "disconnected" in listed.stdout
    with agent_client(server, token) as agent:
        assert agent.post("/api/v1/agent/heartbeat", json={"version": "0.9"}).status_code == 200
    shown = run(server, "clusters", "show", "cli-prod")
    assert shown.exit_code == 0 and "connected" in shown.stdout and "333333333333" in shown.stdout
    assert token not in shown.stdout
    as_json = json.loads(run(server, "clusters", "show", "cli-prod", "--output", "json").stdout)
    assert as_json["agentVersion"] == "0.9"

    rotated = run(server, "clusters", "rotate-token", "cli-prod", "--yes")
    assert rotated.exit_code == 0 and rotated.stdout.strip().startswith("stwa_") and rotated.stdout.strip() != token
    revoked = run(server, "clusters", "revoke-token", "cli-prod")
    assert revoked.exit_code == 0 and "Revoked" in revoked.stdout
    assert "revoked" in run(server, "clusters", "list").stdout

    refused = run(server, "clusters", "delete", "cli-prod", input="n\n")
    assert refused.exit_code == 1
    deleted = run(server, "clusters", "delete", "cli-prod", "--yes")
    assert deleted.exit_code == 0 and "Deleted cluster cli-prod" in deleted.stdout
    missing = run(server, "clusters", "show", "cli-prod")
    assert missing.exit_code == 1 and "No cluster 'cli-prod'" in missing.output


def test_register_errors_are_one_line(server: StowageServer) -> None:
    bad = run(server, "clusters", "register", "Bad Name")
    assert bad.exit_code == 1 and bad.output.startswith("Error: ") and len(bad.output.strip().splitlines()) == 1


def test_credentials_command_errors(server: StowageServer) -> None:
    with server.client() as http:
        static = create_location(
            http,
            "cli-static",
            credentials={
                "type": "static",
                "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            },
        )
        token = http.post("/api/v1/projects/default/clusters", json={"name": "cli-creds"}).json()["agentToken"]
    try:
        no_token = run(server, "credentials", "--location", static["id"])
        assert no_token.exit_code == 2 and "agent token" in no_token.output
        refused = run(server, "credentials", "--location", static["id"], "--token", token)
        assert refused.exit_code == 1 and "static access keys" in refused.output and refused.stdout == ""
    finally:
        with server.client() as http:
            http.delete(f"/api/v1/projects/default/backup-locations/{static['id']}")
            http.delete("/api/v1/projects/default/clusters/cli-creds")


def test_issuances_table(server: StowageServer) -> None:
    answer = run(server, "clusters", "issuances", "--limit", "5")
    assert answer.exit_code == 0 and "ISSUED" in answer.stdout
