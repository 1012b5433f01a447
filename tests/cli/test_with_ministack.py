"""The happy paths that need an AWS identity: a server whose boto3 chain is an account in ministack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from tests.cli.conftest import invoke
from tests.support.servers import StowageServer

ministack_support = pytest.importorskip("tests.support.ministack")
from tests.support.aws_accounts import CUSTOMER, PLATFORM, AwsAccounts  # noqa: E402

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsAccounts]:
    """A ministack (AUTH=true) for this module."""
    server = ministack_support.start_ministack(tmp_path_factory.mktemp("cli-ministack"))
    yield server.accounts()
    server.stop()


@pytest.fixture
def cli(server_factory: Callable[..., StowageServer], emulator: AwsAccounts) -> Callable[..., Result]:
    """``stowage`` against a server whose AWS identity is the platform account's root."""
    srv = server_factory(extra_env=emulator.control_plane_env())

    def run(*args: str, input: str | None = None) -> Result:
        return invoke(*args, input=input, env={"STOWAGE_SERVER": srv.url, "STOWAGE_TOKEN": srv.admin_token})

    return run


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sts_shows_account_principal_and_external_id(cli: Callable[..., Result]) -> None:
    info = _json(cli("sts", "-o", "json"))
    assert info["accountId"] == PLATFORM
    assert info["principalArn"] == f"arn:aws:iam::{PLATFORM}:root"
    projects = _json(cli("projects", "list", "-o", "json"))
    assert info["externalId"] == next(p["externalId"] for p in projects if p["name"] == "default")

    table = cli("sts")
    assert table.exit_code == 0, table.output
    assert f"Account ID     {PLATFORM}" in table.stdout
    assert f"External ID    {info['externalId']}" in table.stdout


def test_policies_are_ready_to_paste(cli: Callable[..., Result]) -> None:
    external_id = _json(cli("sts", "-o", "json"))["externalId"]
    both = cli("policies", "--bucket", "my-backups", "--region", REGION, "--prefix", "cluster-a")
    assert both.exit_code == 0, both.output
    assert "# Permission policy" in both.stdout and "# Trust policy" in both.stdout

    trust = _json(cli("policies", "--bucket", "my-backups", "--which", "trust", "--cluster-account", "333333333333"))
    assert "sts:AssumeRole" in json.dumps(trust)
    assert external_id in json.dumps(trust)
    assert "arn:aws:iam::333333333333:root" in json.dumps(trust)

    permission = _json(
        cli("policies", "--bucket", "my-backups", "--prefix", "cluster-a", "--which", "permission",
            "--no-volume-snapshots")
    )  # fmt: skip
    text = json.dumps(permission)
    assert "arn:aws:s3:::my-backups" in text and "cluster-a" in text
    assert "ec2:" not in text

    direct = _json(
        cli("policies", "--bucket", "my-backups", "--which", "trust", "--cluster-account", "333333333333",
            "--agent-access", "direct")
    )  # fmt: skip
    assert direct["Statement"][1]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    lonely = cli("policies", "--bucket", "my-backups", "--agent-access", "direct")
    assert lonely.exit_code != 0 and "clusterAccountId" in lonely.output

    as_json = _json(cli("policies", "--bucket", "my-backups", "-o", "json"))
    assert set(as_json) == {"permissionPolicy", "trustPolicy"}
    assert "ec2:CreateSnapshot" in json.dumps(as_json["permissionPolicy"])


def _role_from_cli_policies(cli: Callable[..., Result], emulator: AwsAccounts, bucket: str, *, drop: str = "") -> str:
    """Create the customer's role exactly from what ``stowage policies`` printed (minus one action if asked)."""
    trust = cli("policies", "--bucket", bucket, "--region", REGION, "--which", "trust").stdout
    permission = json.loads(cli("policies", "--bucket", bucket, "--region", REGION, "--which", "permission").stdout)
    if drop:
        for statement in permission["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [a for a in actions if a != drop]
    iam = emulator.client("iam", CUSTOMER, "us-east-1")
    name = f"stowage-{uuid.uuid4().hex[:8]}"
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"])
    iam.put_role_policy(RoleName=name, PolicyName="stowage", PolicyDocument=json.dumps(permission))
    return arn


def test_add_and_validate_with_the_pasted_policies(
    cli: Callable[..., Result], emulator: AwsAccounts, tmp_path: Path
) -> None:
    bucket = emulator.create_bucket(f"cli-{uuid.uuid4().hex[:10]}", REGION)
    role = _role_from_cli_policies(cli, emulator, bucket)
    spec = ("--bucket", bucket, "--region", REGION, "--role-arn", role)

    dry = cli("locations", "validate", *spec)
    assert dry.exit_code == 0, dry.output
    assert "Validation passed" in dry.stdout
    assert not any(line.startswith("✗") for line in dry.stdout.splitlines())

    added = cli("locations", "add", "prod", *spec)
    assert added.exit_code == 0, added.output
    assert "Available" in added.stdout

    again = cli("locations", "validate", "prod")
    assert again.exit_code == 0, again.output
    assert "Location prod is Available" in again.stdout
    assert next(line for line in again.stdout.splitlines() if "assume-role" in line).startswith("✓")
    assert emulator.object_keys(bucket) == []  # every probe object was cleaned up


def test_a_missing_permission_is_reported_with_its_remedy(cli: Callable[..., Result], emulator: AwsAccounts) -> None:
    bucket = emulator.create_bucket(f"cli-{uuid.uuid4().hex[:10]}", REGION)
    role = _role_from_cli_policies(cli, emulator, bucket, drop="s3:PutObject")
    result = cli("locations", "add", "broken", "--bucket", bucket, "--region", REGION, "--role-arn", role)
    assert result.exit_code == 1
    assert next(line for line in result.stdout.splitlines() if " s3:PutObject " in line).startswith("✗")
    assert "How to fix s3:PutObject:" in result.stdout
    assert "did not pass validation" in result.stderr
    listed = _json(cli("locations", "list", "--search", "broken", "-o", "json"))
    assert listed["total"] == 0
