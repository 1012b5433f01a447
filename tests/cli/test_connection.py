"""Connection options, token fallback, exit codes and error lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import Run, invoke
from tests.support.processes import free_port
from tests.support.servers import StowageServer


def test_unreachable_server_exits_3_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("--server", url, "projects", "list")
    assert result.exit_code == 3
    assert result.stderr.strip() == f"Error: cannot reach Stowage at {url}: is `stowage serve` running?"
    assert "Traceback" not in result.output


def test_unreachable_server_through_the_real_entry_point(clean_env: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "STOWAGE_SERVER": url, "STOWAGE_DATA_DIR": str(clean_env)}
    proc = subprocess.run(
        [sys.executable, "-m", "stowage.entry", "locations", "list", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == f"Error: cannot reach Stowage at {url}: is `stowage serve` running?"
    assert proc.stdout == ""


def test_a_server_url_that_is_not_http_is_a_usage_error() -> None:
    result = invoke("--server", "127.0.0.1:8080", "sts")
    assert result.exit_code == 2
    assert "must be an http:// or https:// URL" in result.stderr


def test_options_after_the_command_override_the_environment(server: StowageServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"STOWAGE_SERVER": dead, "STOWAGE_TOKEN": "stw_wrong"}
    result = invoke("projects", "list", "--server", server.url, "--token", server.admin_token, "-o", "json", env=env)
    assert result.exit_code == 0, result.output
    assert "default" in [p["name"] for p in json.loads(result.stdout)]


def test_options_before_the_command_work_too(server: StowageServer) -> None:
    result = invoke("--server", server.url, "--token", server.admin_token, "--output", "json", "projects", "list")
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), list)


def test_local_server_falls_back_to_the_admin_token_file(server: StowageServer, clean_env: Path) -> None:
    (clean_env / "admin-token").write_text(server.admin_token + "\n")
    result = invoke("--server", server.url, "projects", "list")
    assert result.exit_code == 0, result.output
    assert "default" in result.stdout


def test_without_any_token_the_reason_says_how_to_give_one(server: StowageServer) -> None:
    result = invoke("--server", server.url, "projects", "list")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: ")
    assert "--token" in lines[0] and "STOWAGE_TOKEN" in lines[0]


def test_a_wrong_token_is_an_api_error_on_one_line(stowage: Run) -> None:
    result = stowage("projects", "list", token="stw_not_a_real_token")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_json_mode_prints_the_api_error_body_for_scripts(stowage: Run) -> None:
    result = stowage("locations", "show", "no-such-location", "--output", "json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["code"] == "not_found"
    assert "no-such-location" in body["message"]
    assert result.stderr.startswith("Error: ")
