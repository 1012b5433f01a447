"""``stowage sts`` and ``stowage policies`` on a server without an AWS identity."""

from __future__ import annotations

import json

from tests.cli.conftest import Run


def test_sts_without_an_aws_identity_says_why(stowage: Run) -> None:
    result = stowage("sts")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ")
    assert "STS method is unavailable" in line
    assert result.stdout == ""


def test_sts_json_gives_the_error_code(stowage: Run) -> None:
    result = stowage("sts", "--project", "default", "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["code"] == "sts_unavailable"


def test_policies_without_an_identity_give_the_permission_policy_and_say_why_no_trust(stowage: Run) -> None:
    """A user on static keys still needs the permission policy; only the trust policy needs the identity."""
    result = stowage("policies", "--bucket", "my-backups", "--region", "eu-west-1")
    assert result.exit_code == 0, result.stderr
    assert "arn:aws:s3:::my-backups/*" in result.stdout
    assert "Trust policy: unavailable" in result.stdout and "STS method is unavailable" in result.stdout

    permission = stowage("policies", "--bucket", "my-backups", "--which", "permission")
    assert permission.exit_code == 0
    assert json.loads(permission.stdout)["Statement"]

    trust = stowage("policies", "--bucket", "my-backups", "--which", "trust")
    assert trust.exit_code == 1
    assert "STS method is unavailable" in trust.stderr

    as_json = json.loads(stowage("policies", "--bucket", "my-backups", "-o", "json").stdout)
    assert as_json["trustPolicy"] is None and "STS method is unavailable" in as_json["trustPolicyUnavailable"]


def test_policies_check_the_bucket_name_first(stowage: Run) -> None:
    result = stowage("policies", "--bucket", "Bad_Bucket")
    assert result.exit_code == 1
    assert "Bad_Bucket" in result.stderr
    assert "not valid" in result.stderr


def test_cluster_account_and_role_together_is_a_usage_error(stowage: Run) -> None:
    result = stowage(
        "policies",
        "--bucket",
        "my-backups",
        "--cluster-account",
        "123456789012",
        "--cluster-role-arn",
        "arn:aws:iam::123456789012:role/velero",
    )
    assert result.exit_code == 2
    assert "not both" in result.stderr
