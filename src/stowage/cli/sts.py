"""``stowage sts`` and ``stowage policies``: what to type and paste into AWS."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import typer

from stowage.cli.client import UsageProblem
from stowage.cli.common import (
    EXIT_API_ERROR,
    OutputOption,
    ProjectOption,
    ServerOption,
    TokenOption,
    api,
    fail,
    project_path,
)
from stowage.cli.render import echo_json, fields
from stowage.domain.locations import AgentAccess


class Which(enum.StrEnum):
    """Which policy to print."""

    PERMISSION = "permission"
    TRUST = "trust"
    BOTH = "both"


def sts(
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show the control plane's AWS account, its principal ARN and the project's External ID."""
    with api(server, token, output) as (client, conn):
        info: dict[str, Any] = client.get(project_path(project, "sts"))
    if conn.json:
        echo_json(info)
        return
    typer.echo(
        fields(
            [
                ("Account ID", info["accountId"]),
                ("Partition", info["partition"]),
                ("Principal ARN", info["principalArn"]),
                ("External ID", info["externalId"]),
            ]
        )
    )


def policies(
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="Bucket the role may use.")],
    region: Annotated[str, typer.Option("--region", help="Region of the bucket (sets the ARN partition).")] = (
        "us-east-1"
    ),
    prefix: Annotated[str | None, typer.Option("--prefix", help="Limit object access to this prefix.")] = None,
    kms_key_arn: Annotated[str | None, typer.Option("--kms-key-arn", help="KMS key that encrypts the objects.")] = None,
    cluster_account: Annotated[
        str | None,
        typer.Option("--cluster-account", metavar="ID", help="Also trust this AWS account (agents assume the role)."),
    ] = None,
    cluster_role_arn: Annotated[
        str | None, typer.Option("--cluster-role-arn", metavar="ARN", help="Also trust this one role.")
    ] = None,
    no_volume_snapshots: Annotated[
        bool, typer.Option("--no-volume-snapshots", help="Leave out the EC2 snapshot permissions.")
    ] = False,
    agent_access: Annotated[
        AgentAccess | None,
        typer.Option(
            "--agent-access",
            help="Shape the cluster trust for this mode: brokered (control plane only) or direct (the cluster "
            "account assumes the role itself, with the External ID).",
        ),
    ] = None,
    project: ProjectOption = "default",
    which: Annotated[Which, typer.Option("--which", help="Which policy to print.")] = Which.BOTH,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Print the permission policy and the trust policy for a bucket, ready to paste into AWS."""
    if cluster_account and cluster_role_arn:
        raise UsageProblem("give --cluster-account or --cluster-role-arn, not both.")
    params = {
        "bucket": bucket,
        "region": region,
        "prefix": prefix,
        "kmsKeyArn": kms_key_arn,
        "clusterAccountId": cluster_account,
        "clusterRoleArn": cluster_role_arn,
        "volumeSnapshots": not no_volume_snapshots,
        "agentAccess": agent_access.value if agent_access else None,
    }
    with api(server, token, output) as (client, conn):
        answer: dict[str, Any] = client.get(project_path(project, "policies"), params)
    if which is Which.PERMISSION:
        # A single policy is printed bare in both formats: it is exactly what AWS takes.
        echo_json(answer["permissionPolicy"])
    elif which is Which.TRUST:
        if answer.get("trustPolicy") is None:
            fail(f"no trust policy: {answer.get('trustPolicyUnavailable')}", EXIT_API_ERROR)
        echo_json(answer["trustPolicy"])
    elif conn.json:
        echo_json(answer)
    else:
        typer.echo("# Permission policy: attach it to the role")
        typer.echo(json.dumps(answer["permissionPolicy"], indent=2))
        if answer.get("trustPolicy") is None:
            typer.echo(f"\n# Trust policy: unavailable. {answer.get('trustPolicyUnavailable')}")
        else:
            typer.echo("\n# Trust policy: the role's trust relationship")
            typer.echo(json.dumps(answer["trustPolicy"], indent=2))
