"""IAM documents Stowage hands out: the permission policy and the trust policy."""

from __future__ import annotations

import json
from typing import Any

from stowage.domain.checks import EC2_ACTIONS

Policy = dict[str, Any]
Statement = dict[str, Any]

VERSION = "2012-10-17"
# The order of the spec's documented policy, kept so the JSON matches what users read there.
SPEC_EC2_ACTIONS = [
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateTags",
    "ec2:CreateVolume",
    "ec2:CreateSnapshot",
    "ec2:DeleteSnapshot",
]
OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]
KMS_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]

assert sorted(SPEC_EC2_ACTIONS) == sorted(EC2_ACTIONS)


def bucket_arn(bucket: str, partition: str = "aws") -> str:
    """The ARN of a bucket."""
    return f"arn:{partition}:s3:::{bucket}"


def objects_arn(bucket: str, prefix: str | None = None, partition: str = "aws") -> str:
    """The ARN of the objects of a bucket, under a prefix when one is given."""
    clean = (prefix or "").strip("/")
    return f"{bucket_arn(bucket, partition)}/{clean}/*" if clean else f"{bucket_arn(bucket, partition)}/*"


def ec2_statement() -> Statement:
    """EC2 snapshot permissions for volume backups."""
    return {"Effect": "Allow", "Action": list(SPEC_EC2_ACTIONS), "Resource": "*"}


def object_statement(bucket: str, prefix: str | None, partition: str, actions: list[str] | None = None) -> Statement:
    """Object permissions on the bucket (under the prefix)."""
    return {
        "Effect": "Allow",
        "Action": list(actions or OBJECT_ACTIONS),
        "Resource": [objects_arn(bucket, prefix, partition)],
    }


def list_statement(bucket: str, prefix: str | None, partition: str) -> Statement:
    """List permission on the bucket, as in the spec.

    Deliberately not narrowed to the prefix with an ``s3:prefix`` condition: HeadBucket (used to find the
    bucket's real region) needs an unconditioned ``s3:ListBucket``. Per-cluster narrowing happens in the
    session policy of vended credentials instead.
    """
    del prefix
    return {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn(bucket, partition)]}


def kms_statement(kms_key_arn: str) -> Statement:
    """Permissions to use a customer managed KMS key for SSE-KMS objects.

    An alias ARN as Resource would not grant anything on the key behind it, so aliases are granted through
    the ``kms:ResourceAliases`` condition instead.
    """
    if ":alias/" in kms_key_arn:
        alias = kms_key_arn.split(":", 5)[5]
        return {
            "Effect": "Allow",
            "Action": list(KMS_ACTIONS),
            "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}},
        }
    return {"Effect": "Allow", "Action": list(KMS_ACTIONS), "Resource": [kms_key_arn]}


def kms_key_policy_statement(principal_arn: str) -> Statement:
    """The statement for a KMS key's own key policy that lets the role use the key for backups."""
    return {
        "Sid": "AllowStowageBackups",
        "Effect": "Allow",
        "Principal": {"AWS": principal_arn},
        "Action": list(KMS_ACTIONS),
        "Resource": "*",
    }


def permission_policy(
    bucket: str,
    *,
    partition: str = "aws",
    prefix: str | None = None,
    kms_key_arn: str | None = None,
    include_ec2: bool = True,
) -> Policy:
    """The spec's permission policy with the bucket (and prefix, KMS key) filled in."""
    statements: list[Statement] = []
    if include_ec2:
        statements.append(ec2_statement())
    statements.append(object_statement(bucket, prefix, partition))
    statements.append(list_statement(bucket, prefix, partition))
    if kms_key_arn:
        statements.append(kms_statement(kms_key_arn))
    return {"Version": VERSION, "Statement": statements}


def statement_for_action(action: str, bucket: str, *, partition: str = "aws", prefix: str | None = None) -> Statement:
    """The smallest statement that grants one action of the permission policy (for remedies)."""
    if action.startswith("ec2:"):
        return {"Effect": "Allow", "Action": [action], "Resource": "*"}
    if action == "s3:ListBucket":
        return list_statement(bucket, prefix, partition)
    return object_statement(bucket, prefix, partition, [action])


def platform_trust_statement(principal_arn: str, external_id: str) -> Statement:
    """Trust for the control plane's principal, only with the project's External ID."""
    return {
        "Effect": "Allow",
        "Principal": {"AWS": principal_arn},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
    }


def external_id_condition(external_id: str) -> dict[str, Any]:
    """The Condition block that closes the confused-deputy hole."""
    return {"StringEquals": {"sts:ExternalId": external_id}}


def cluster_trust_statement(
    *, partition: str = "aws", cluster_account_id: str | None = None, cluster_role_arn: str | None = None
) -> Statement:
    """Trust for the cluster account A of the multi-account case (whole account or one role)."""
    principal = cluster_role_arn or f"arn:{partition}:iam::{cluster_account_id}:root"
    return {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}


def account_root_arn(account_id: str, partition: str = "aws") -> str:
    """The ``root`` principal ARN of an account."""
    return f"arn:{partition}:iam::{account_id}:root"


def trust_policy(
    *,
    platform_account_id: str,
    external_id: str,
    partition: str = "aws",
    cluster_account_id: str | None = None,
    cluster_role_arn: str | None = None,
) -> Policy:
    """The trust policy to paste on the customer role."""
    statements = [platform_trust_statement(account_root_arn(platform_account_id, partition), external_id)]
    if cluster_account_id or cluster_role_arn:
        statements.append(
            cluster_trust_statement(
                partition=partition, cluster_account_id=cluster_account_id, cluster_role_arn=cluster_role_arn
            )
        )
    return {"Version": VERSION, "Statement": statements}


def render(document: Policy | Statement) -> str:
    """Pretty JSON ready to paste into the AWS console."""
    return json.dumps(document, indent=2)


# -- agent access (brokered or direct) ---------------------------------------------------------------------
def direct_cluster_trust_statement(
    *,
    external_id: str,
    partition: str = "aws",
    cluster_account_id: str | None = None,
    cluster_role_arn: str | None = None,
) -> Statement:
    """Trust for cluster account A when its agent assumes the role itself (direct mode), External ID required.

    The agent learns the External ID from the control plane, so requiring it here keeps every principal of
    account A that was not told the ID (and could be tricked into acting for someone else) out of the role.
    """
    statement = cluster_trust_statement(
        partition=partition, cluster_account_id=cluster_account_id, cluster_role_arn=cluster_role_arn
    )
    statement["Condition"] = external_id_condition(external_id)
    return statement


def agent_trust_policy(
    *,
    platform_account_id: str,
    external_id: str,
    agent_access: str,
    partition: str = "aws",
    cluster_account_id: str | None = None,
    cluster_role_arn: str | None = None,
) -> Policy:
    """The trust policy for a location by agent access: ``direct`` adds account A's statement with the External ID.

    ``brokered`` needs the control plane's statement only: agents get credentials from the control plane and
    never call ``sts:AssumeRole`` themselves.
    """
    statements = [platform_trust_statement(account_root_arn(platform_account_id, partition), external_id)]
    if agent_access == "direct" and (cluster_account_id or cluster_role_arn):
        statements.append(
            direct_cluster_trust_statement(
                external_id=external_id,
                partition=partition,
                cluster_account_id=cluster_account_id,
                cluster_role_arn=cluster_role_arn,
            )
        )
    return {"Version": VERSION, "Statement": statements}
