"""``stowage tokens`` and what roles allow."""

from __future__ import annotations

import json
import uuid

from tests.cli.conftest import Run


def _name() -> str:
    return f"tok-{uuid.uuid4().hex[:8]}"


def test_create_prints_the_token_alone_on_stdout(stowage: Run) -> None:
    name = _name()
    result = stowage("tokens", "create", name, "--role", "editor")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("stw_") and "\n" not in token
    assert "not shown again" in result.stderr

    listed = stowage("tokens", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert "editor" in row.split()
    assert token[-4:] in row
    assert token not in listed.stdout


def test_viewer_can_read_but_cannot_add_a_location(stowage: Run) -> None:
    viewer = stowage("tokens", "create", _name(), "--role", "viewer", "-o", "json")
    assert viewer.exit_code == 0, viewer.output
    token = json.loads(viewer.stdout)["token"]

    assert stowage("locations", "list", token=token).exit_code == 0
    result = stowage(
        "locations",
        "add",
        _name(),
        "--bucket",
        "viewer-bucket",
        "--region",
        "us-east-1",
        "--role-arn",
        "arn:aws:iam::123456789012:role/stowage",
        token=token,
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "viewer" in line and "role" in line


def test_revoked_token_stops_working(stowage: Run) -> None:
    created = json.loads(stowage("tokens", "create", _name(), "-o", "json").stdout)
    assert created["role"] == "viewer"  # the least privilege unless asked
    assert stowage("projects", "list", token=created["token"]).exit_code == 0

    revoked = stowage("tokens", "revoke", created["id"])
    assert revoked.exit_code == 0, revoked.output
    assert created["id"] in revoked.stdout

    after = stowage("projects", "list", token=created["token"])
    assert after.exit_code == 1
    assert after.stderr.startswith("Error: ")

    listed = json.loads(stowage("tokens", "list", "-o", "json").stdout)
    assert next(t for t in listed if t["id"] == created["id"])["revokedAt"] is not None


def test_unknown_role_is_a_usage_error(stowage: Run) -> None:
    result = stowage("tokens", "create", _name(), "--role", "superuser")
    assert result.exit_code == 2


def test_revoking_an_unknown_token_is_an_api_error(stowage: Run) -> None:
    result = stowage("tokens", "revoke", "no-such-id")
    assert result.exit_code == 1
    assert "no-such-id" in result.stderr
