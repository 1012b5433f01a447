"""``stowage locations`` against a real server (no AWS identity, so live checks cannot pass)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from tests.cli.conftest import Run
from tests.support.processes import free_port

ROLE = "arn:aws:iam::123456789012:role/stowage-backups"


def _name(stem: str = "loc") -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def _add(stowage: Run, name: str, *extra: str, bucket: str | None = None) -> dict[str, Any]:
    result = stowage(
        "locations",
        "add",
        name,
        "--bucket",
        bucket or f"bucket-{uuid.uuid4().hex[:10]}",
        "--region",
        "eu-west-1",
        "--role-arn",
        ROLE,
        "--skip-validation",
        "-o",
        "json",
        *extra,
    )
    assert result.exit_code == 0, result.output
    location: dict[str, Any] = json.loads(result.stdout)
    return location


def _get(stowage: Run, ref: str) -> dict[str, Any]:
    result = stowage("locations", "show", ref, "-o", "json")
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.stdout)["location"]
    return shown


def test_add_with_skip_validation_is_unverified(stowage: Run) -> None:
    name = _name()
    result = stowage(
        "locations", "add", name, "--bucket", "my-backups-1", "--region", "eu-west-1", "--role-arn", ROLE,
        "--prefix", "cluster-a", "--no-volume-snapshots", "--skip-validation",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Created location {name}" in result.stdout
    assert "Unverified" in result.stdout
    location = _get(stowage, name)
    assert location["status"] == "Unverified"
    assert location["bucket"] == "my-backups-1"
    assert location["prefix"] == "cluster-a"
    assert location["volumeSnapshots"] is False
    assert location["credentials"] == {"type": "sts", "roleArn": ROLE, "accessKeyId": None, "secretAccessKey": None}


def test_list_search_and_paging(stowage: Run) -> None:
    stem = _name("findme")
    first = _add(stowage, f"{stem}-a")
    second = _add(stowage, f"{stem}-b")

    table = stowage("locations", "list", "--search", stem)
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:3] == ["NAME", "DEFAULT", "PROVIDER"]
    assert [row.split()[0] for row in rows] == [first["name"], second["name"]]

    page = stowage("locations", "list", "--search", stem, "--limit", "1", "--offset", "1", "-o", "json")
    assert page.exit_code == 0, page.output
    body = json.loads(page.stdout)
    assert body["total"] == 2
    assert [i["id"] for i in body["items"]] == [second["id"]]

    people = stowage("locations", "list", "--search", stem, "--limit", "1")
    assert "Showing 1-1 of 2." in people.stdout


def test_show_by_name_and_by_id_with_history(stowage: Run) -> None:
    location = _add(stowage, _name())
    by_name = stowage("locations", "show", location["name"])
    assert by_name.exit_code == 0, by_name.output
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in by_name.stdout.splitlines() if "  " in line)
    assert lines["ID"] == location["id"]
    assert lines["Status"] == "Unverified"
    assert lines["Status message"] == "Created without live validation (skipValidation)."
    assert f"sts, role {ROLE}" in by_name.stdout
    assert "Recent validations:" in by_name.stdout

    by_id = stowage("locations", "show", location["id"], "-o", "json")
    assert by_id.exit_code == 0, by_id.output
    shown = json.loads(by_id.stdout)
    assert shown["location"]["name"] == location["name"]
    assert isinstance(shown["validations"], list)


def test_set_default_moves_the_star(stowage: Run) -> None:
    stem = _name("dflt")
    first = _add(stowage, f"{stem}-a")
    second = _add(stowage, f"{stem}-b")
    result = stowage("locations", "set-default", second["name"])
    assert result.exit_code == 0, result.output
    assert "is now the default" in result.stdout
    assert _get(stowage, second["id"])["isDefault"] is True
    assert _get(stowage, first["id"])["isDefault"] is False
    rows = stowage("locations", "list", "--search", stem).stdout.strip().splitlines()[1:]
    assert [row.split()[:2] for row in rows][1] == [second["name"], "*"]


def test_delete_asks_unless_yes(stowage: Run) -> None:
    location = _add(stowage, _name())
    kept = stowage("locations", "delete", location["name"], input="n\n")
    assert kept.exit_code == 1
    assert _get(stowage, location["id"])["id"] == location["id"]

    deleted = stowage("locations", "delete", location["name"], "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "bucket was not touched" in deleted.stdout
    gone = stowage("locations", "show", location["id"])
    assert gone.exit_code == 1
    assert location["id"] in gone.stderr


def test_duplicate_name_is_one_line_and_exit_1(stowage: Run) -> None:
    name = _name()
    _add(stowage, name)
    again = stowage(
        "locations", "add", name, "--bucket", "other-bucket", "--region", "eu-west-1", "--role-arn", ROLE,
        "--skip-validation",
    )  # fmt: skip
    assert again.exit_code == 1
    (line,) = again.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "already exists" in line


def test_invalid_bucket_name_prints_the_report(stowage: Run) -> None:
    result = stowage(
        "locations", "add", _name(), "--bucket", "Bad_Bucket", "--region", "eu-west-1", "--role-arn", ROLE,
        "--skip-validation",
    )  # fmt: skip
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "bucket-name" in line)
    assert row.startswith("✗")
    assert "Bad_Bucket" in row and "not valid" in row
    assert "How to fix bucket-name:" in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert "did not pass validation" in line


def test_invalid_bucket_name_in_json_mode_is_the_api_body(stowage: Run) -> None:
    result = stowage(
        "locations", "add", _name(), "--bucket", "Bad_Bucket", "--region", "eu-west-1", "--role-arn", ROLE,
        "--skip-validation", "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["code"] == "validation_failed"
    checks = {c["id"]: c["status"] for c in body["details"]["report"]["checks"]}
    assert checks["bucket-name"] == "failed"


def test_revalidating_without_an_aws_identity_fails_with_remedies(stowage: Run) -> None:
    location = _add(stowage, _name())
    result = stowage("locations", "validate", location["name"])
    assert result.exit_code == 1
    assert f"Location {location['name']} is Unavailable" in result.stdout
    assert any(line.startswith("✗") for line in result.stdout.splitlines())
    assert "How to fix" in result.stdout
    assert "Validation FAILED" in result.stdout
    assert result.stderr.startswith("Error: validation failed")
    assert _get(stowage, location["id"])["status"] == "Unavailable"

    history = stowage("locations", "show", location["name"])
    assert "manual" in history.stdout and "failed" in history.stdout

    as_json = stowage("locations", "validate", location["id"], "-o", "json")
    assert as_json.exit_code == 1
    answer = json.loads(as_json.stdout)
    assert answer["report"]["ok"] is False
    assert answer["location"]["id"] == location["id"]


def test_dry_run_of_an_unsaved_spec_saves_nothing(stowage: Run) -> None:
    name = _name("dry")
    result = stowage(
        "locations", "validate", name, "--bucket", "Bad_Bucket", "--region", "eu-west-1", "--role-arn", ROLE,
    )  # fmt: skip
    assert result.exit_code == 1
    assert next(line for line in result.stdout.splitlines() if "bucket-name" in line).startswith("✗")
    listed = json.loads(stowage("locations", "list", "--search", name, "-o", "json").stdout)
    assert listed["total"] == 0


def test_dry_run_against_a_dead_s3_endpoint_reports_checks_as_json(stowage: Run) -> None:
    result = stowage(
        "locations", "validate", "--bucket", "dry-bucket", "--region", "us-east-1", "--provider", "s3-compatible",
        "--s3-url", f"http://127.0.0.1:{free_port()}", "--force-path-style", "--access-key-id", "AKIDEXAMPLE",
        "--secret-access-key-stdin", "-o", "json",
        input="not-a-real-secret\n",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses["bucket-name"] == "passed"
    assert "failed" in statuses.values()
    assert "not-a-real-secret" not in result.output


def test_static_keys_from_stdin_are_stored_masked(stowage: Run) -> None:
    name = _name("static")
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    result = stowage(
        "locations", "add", name, "--bucket", "static-bucket", "--region", "us-east-1", "--provider",
        "s3-compatible", "--s3-url", "https://s3.example.com", "--access-key-id", "AKIDEXAMPLE",
        "--secret-access-key-stdin", "--skip-validation",
        input=secret + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = stowage("locations", "show", name)
    assert "static, key AKIDEXAMPLE" in shown.stdout
    assert "MPLEKEY"[-4:] in shown.stdout
    assert secret not in shown.stdout


def test_usage_errors_exit_2(stowage: Run, tmp_path: Path) -> None:
    base = ("locations", "add", _name(), "--bucket", "some-bucket", "--region", "us-east-1")
    missing_credentials = stowage(*base)
    assert missing_credentials.exit_code == 2
    assert "credentials are missing" in missing_credentials.stderr

    both = stowage(*base, "--role-arn", ROLE, "--access-key-id", "AKID", "--secret-access-key", "x")
    assert both.exit_code == 2

    no_file = stowage(*base, "--role-arn", ROLE, "--ca-cert", str(tmp_path / "missing.pem"))
    assert no_file.exit_code == 2
    assert "--ca-cert" in no_file.stderr

    spec_without_bucket = stowage("locations", "validate", "x", "--role-arn", ROLE)
    assert spec_without_bucket.exit_code == 2

    missing_region = stowage("locations", "add", _name(), "--bucket", "b-b-b", "--role-arn", ROLE)
    assert missing_region.exit_code == 2


def test_other_projects_are_separate(stowage: Run) -> None:
    project = _name("proj")
    assert stowage("projects", "create", project).exit_code == 0
    location = _add(stowage, _name(), "--project", project)
    assert location["project"] == project
    in_default = json.loads(stowage("locations", "list", "--search", location["name"], "-o", "json").stdout)
    assert in_default["total"] == 0
    in_project = stowage("locations", "show", location["name"], "--project", project)
    assert in_project.exit_code == 0, in_project.output


def test_edit_changes_only_what_is_given(stowage: Run) -> None:
    name = _name("edit")
    before = _add(stowage, name, "--prefix", "team-a")
    renamed = _name("edited")
    # Renaming and the schedule change nothing the role must reach: no validation needed.
    result = stowage("locations", "edit", name, "--name", renamed, "--revalidate-every", "60")
    assert result.exit_code == 0, result.output
    assert f"Updated location {renamed}" in result.stdout
    snapshots = stowage(
        "locations", "edit", renamed, "--no-volume-snapshots", "--agent-access", "direct", "--skip-validation"
    )  # fmt: skip
    assert snapshots.exit_code == 0, snapshots.output
    after = _get(stowage, renamed)
    assert after["id"] == before["id"] and after["bucket"] == before["bucket"] and after["prefix"] == "team-a"
    assert after["volumeSnapshots"] is False and after["agentAccess"] == "direct"
    assert after["revalidateIntervalMinutes"] == 60
    cleared = stowage("locations", "edit", renamed, "--prefix", "", "--skip-validation", "-o", "json")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout)["prefix"] is None


def test_edit_of_what_the_role_must_reach_needs_validation(stowage: Run) -> None:
    name = _name("move")
    _add(stowage, name)
    # No AWS identity here: the live checks cannot pass, so the change is refused with the report.
    refused = stowage("locations", "edit", name, "--bucket", "another-bucket-x")
    assert refused.exit_code == 1
    assert "assume-role" in refused.stdout and "validation" in refused.stderr.lower()
    assert _get(stowage, name)["bucket"] != "another-bucket-x"
    forced = stowage("locations", "edit", name, "--bucket", "another-bucket-x", "--skip-validation")
    assert forced.exit_code == 0, forced.output
    moved = _get(stowage, name)
    assert moved["bucket"] == "another-bucket-x" and moved["status"] == "Unverified"


def test_edit_static_key_id_keeps_the_stored_secret(stowage: Run) -> None:
    name = _name("static-edit")
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    added = stowage(
        "locations", "add", name, "--bucket", "static-bucket", "--region", "us-east-1", "--provider",
        "s3-compatible", "--s3-url", "https://s3.example.com", "--access-key-id", "AKIDEXAMPLE",
        "--secret-access-key-stdin", "--skip-validation",
        input=secret + "\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    edited = stowage("locations", "edit", name, "--access-key-id", "AKIDROTATED", "--skip-validation", "-o", "json")
    assert edited.exit_code == 0, edited.output
    credentials = json.loads(edited.stdout)["credentials"]
    assert credentials["accessKeyId"] == "AKIDROTATED"
    assert credentials["secretAccessKey"].endswith("EKEY") and secret not in edited.stdout


def test_edit_usage_errors_exit_2(stowage: Run) -> None:
    name = _name("noop")
    _add(stowage, name)
    nothing = stowage("locations", "edit", name)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    both = stowage("locations", "edit", name, "--role-arn", ROLE, "--access-key-id", "AKID")
    assert both.exit_code == 2
    bad_interval = stowage("locations", "edit", name, "--revalidate-every", "1")
    assert bad_interval.exit_code == 1 and "revalidateIntervalMinutes" in bad_interval.stderr
