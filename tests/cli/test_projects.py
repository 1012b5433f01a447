"""``stowage projects``."""

from __future__ import annotations

import json
import uuid

from tests.cli.conftest import Run


def _external_id(stowage: Run, name: str) -> str:
    result = stowage("projects", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    return next(p["externalId"] for p in json.loads(result.stdout) if p["name"] == name)


def test_list_shows_the_default_project_as_a_table(stowage: Run) -> None:
    result = stowage("projects", "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "EXTERNAL", "ID", "CREATED"]
    assert any(row.split()[0] == "default" for row in rows)


def test_create_then_a_duplicate_is_refused_on_one_line(stowage: Run) -> None:
    name = f"team-{uuid.uuid4().hex[:8]}"
    created = stowage("projects", "create", name, "-o", "json")
    assert created.exit_code == 0, created.output
    project = json.loads(created.stdout)
    assert project["name"] == name
    assert len(project["externalId"]) >= 43

    again = stowage("projects", "create", name)
    assert again.exit_code == 1
    assert len(again.stderr.strip().splitlines()) == 1
    assert "already exists" in again.stderr


def test_rotation_asks_first_and_keeps_the_id_when_refused(stowage: Run) -> None:
    name = f"rot-{uuid.uuid4().hex[:8]}"
    assert stowage("projects", "create", name).exit_code == 0
    before = _external_id(stowage, name)

    refused = stowage("projects", "rotate-external-id", name, input="n\n")
    assert refused.exit_code == 1
    assert "breaks every IAM role" in refused.stderr
    assert _external_id(stowage, name) == before

    accepted = stowage("projects", "rotate-external-id", name, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    after = _external_id(stowage, name)
    assert after != before
    assert after in accepted.stdout


def test_rotation_with_yes_does_not_ask(stowage: Run) -> None:
    name = f"rot-{uuid.uuid4().hex[:8]}"
    assert stowage("projects", "create", name).exit_code == 0
    before = _external_id(stowage, name)
    result = stowage("projects", "rotate-external-id", name, "--yes", "-o", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["project"]["externalId"] != before
    assert "External ID" in answer["warning"]
    assert result.stderr == ""


def test_unknown_project_is_an_api_error(stowage: Run) -> None:
    result = stowage("projects", "rotate-external-id", "no-such-project", "--yes")
    assert result.exit_code == 1
    assert "no-such-project" in result.stderr
