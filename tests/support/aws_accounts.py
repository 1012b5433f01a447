"""Three AWS accounts in the emulator and helpers to set up buckets, roles and users the way customers do.

* ``PLATFORM`` (111111111111): the control plane's own account; its root keys are the account id and any
  secret, which is how ministack (``AUTH=true``) names accounts.
* ``CUSTOMER`` (222222222222): owns the bucket and the role Stowage assumes.
* ``CLUSTER`` (333333333333): account A of the multi-account case, where clusters run.

Roles get Stowage's own documents (``stowage.domain.policies``), optionally with actions removed, so a negative
test removes exactly one permission from exactly the policy users are told to paste.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from stowage.domain import policies

PLATFORM = "111111111111"
CUSTOMER = "222222222222"
CLUSTER = "333333333333"
SECRET = "stowage-test-secret"
DEFAULT_REGION = "eu-west-1"

_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, parameter_validation=False)


def strip_actions(policy: dict[str, Any], remove: Iterable[str]) -> dict[str, Any]:
    """A copy of a policy without some actions; statements left with no action are dropped."""
    removed = set(remove)
    statements = []
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a not in removed]
        if kept:
            statements.append({**statement, "Action": kept})
    return {**policy, "Statement": statements}


def trust_document(
    *, external_id: str | None, trusted_account: str = PLATFORM, extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A trust policy for ``trusted_account``'s root: with the External ID condition, or (None) without it."""
    if external_id is not None and trusted_account == PLATFORM:
        document = policies.trust_policy(platform_account_id=PLATFORM, external_id=external_id)
    else:
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Principal": {"AWS": policies.account_root_arn(trusted_account)},
            "Action": "sts:AssumeRole",
        }
        if external_id is not None:
            statement["Condition"] = policies.external_id_condition(external_id)
        document = {"Version": policies.VERSION, "Statement": [statement]}
    if extra:
        document["Statement"].extend(extra)
    return document


@dataclass
class AwsAccounts:
    """Clients and set-up helpers for the three accounts of one emulator endpoint."""

    endpoint: str
    verify: str | None = None

    def client(self, service: str, account: str = CUSTOMER, region: str = DEFAULT_REGION, **keys: str) -> Any:
        """A boto3 client acting as an account's root (or with explicit ``aws_*`` keys)."""
        credentials = keys or {"aws_access_key_id": account, "aws_secret_access_key": SECRET}
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            verify=self.verify,
            config=_CONFIG,
            **credentials,
        )

    def control_plane_env(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment for a control plane process whose boto3 chain is account PLATFORM's root at the emulator."""
        return {
            "AWS_ACCESS_KEY_ID": PLATFORM,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": self.endpoint,
            # Nothing from the developer's machine: no config/credential files, no instance metadata.
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- set-up ------------------------------------------------------------------------------------------
    def create_bucket(self, name: str, region: str = DEFAULT_REGION, account: str = CUSTOMER) -> str:
        """Create a bucket in ``region`` owned by ``account``; returns its name."""
        s3 = self.client("s3", account, region)
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        return name

    def permission_policy(
        self,
        bucket: str,
        *,
        prefix: str | None = None,
        remove: Iterable[str] = (),
        kms_key_arn: str | None = None,
        include_ec2: bool = True,
    ) -> dict[str, Any]:
        """Stowage's permission policy for a bucket, minus the actions in ``remove``."""
        document = policies.permission_policy(bucket, prefix=prefix, kms_key_arn=kms_key_arn, include_ec2=include_ec2)
        return strip_actions(document, remove)

    def create_role(
        self,
        name: str,
        *,
        bucket: str,
        external_id: str | None,
        trusted_account: str = PLATFORM,
        prefix: str | None = None,
        remove: Iterable[str] = (),
        kms_key_arn: str | None = None,
        include_ec2: bool = True,
        trust: dict[str, Any] | None = None,
        account: str = CUSTOMER,
    ) -> str:
        """A role in ``account`` trusting ``trusted_account`` (External ID when given) with Stowage's policy."""
        iam = self.client("iam", account, "us-east-1")
        document = trust or trust_document(external_id=external_id, trusted_account=trusted_account)
        arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(document))["Role"]["Arn"])
        permissions = self.permission_policy(
            bucket, prefix=prefix, remove=remove, kms_key_arn=kms_key_arn, include_ec2=include_ec2
        )
        iam.put_role_policy(RoleName=name, PolicyName="stowage", PolicyDocument=json.dumps(permissions))
        return arn

    def create_user_keys(
        self,
        name: str,
        *,
        bucket: str,
        prefix: str | None = None,
        remove: Iterable[str] = (),
        include_ec2: bool = True,
        account: str = CUSTOMER,
    ) -> tuple[str, str]:
        """An IAM user with Stowage's policy and an access key (for the static-credentials method)."""
        iam = self.client("iam", account, "us-east-1")
        iam.create_user(UserName=name)
        permissions = self.permission_policy(bucket, prefix=prefix, remove=remove, include_ec2=include_ec2)
        iam.put_user_policy(UserName=name, PolicyName="stowage", PolicyDocument=json.dumps(permissions))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    # -- inspection --------------------------------------------------------------------------------------
    def object_keys(self, bucket: str, prefix: str = "", account: str = CUSTOMER) -> list[str]:
        """Every key in a bucket under a prefix (as the bucket owner)."""
        s3 = self.client("s3", account)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def multipart_uploads(self, bucket: str, account: str = CUSTOMER) -> list[dict[str, Any]]:
        """Multipart uploads in progress in a bucket (as the bucket owner)."""
        return list(self.client("s3", account).list_multipart_uploads(Bucket=bucket).get("Uploads", []))
