"""The IAM documents Stowage hands out."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from stowage.domain import policies
from stowage.domain.checks import EC2_ACTIONS, S3_ACTIONS
from stowage.domain.regions import partition_for_region

# The permission policy of the spec, verbatim, for BUCKET-NAME = my-backups.
SPEC_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeVolumes",
                "ec2:DescribeSnapshots",
                "ec2:CreateTags",
                "ec2:CreateVolume",
                "ec2:CreateSnapshot",
                "ec2:DeleteSnapshot",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:DeleteObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": ["arn:aws:s3:::my-backups/*"],
        },
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::my-backups"]},
    ],
}


def test_permission_policy_is_exactly_the_spec() -> None:
    assert policies.permission_policy("my-backups") == SPEC_POLICY


def test_prefix_narrows_objects_and_kms_adds_a_statement() -> None:
    key = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    doc = policies.permission_policy("b", prefix="/team/a/", kms_key_arn=key)
    assert doc["Statement"][1]["Resource"] == ["arn:aws:s3:::b/team/a/*"]
    assert doc["Statement"][-1] == {
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": [key],
    }


def test_no_ec2_statement_without_volume_snapshots() -> None:
    doc = policies.permission_policy("b", include_ec2=False)
    assert all(not a.startswith("ec2:") for s in doc["Statement"] for a in s["Action"])


def test_every_probed_action_is_granted_by_the_policy() -> None:
    granted = {a for s in policies.permission_policy("b")["Statement"] for a in s["Action"]}
    assert set(S3_ACTIONS) | set(EC2_ACTIONS) == granted


def test_partitions_follow_the_region() -> None:
    assert partition_for_region("us-gov-west-1") == "aws-us-gov"
    assert partition_for_region("cn-north-1") == "aws-cn"
    doc = policies.permission_policy("b", partition="aws-cn")
    assert doc["Statement"][2]["Resource"] == ["arn:aws-cn:s3:::b"]
    trust = policies.trust_policy(platform_account_id="111111111111", external_id="x" * 43, partition="aws-us-gov")
    assert trust["Statement"][0]["Principal"]["AWS"] == "arn:aws-us-gov:iam::111111111111:root"


def test_trust_policy_single_and_multi_account() -> None:
    single = policies.trust_policy(platform_account_id="111111111111", external_id="ext")
    assert single == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "ext"}},
            }
        ],
    }
    multi = policies.trust_policy(
        platform_account_id="111111111111", external_id="ext", cluster_account_id="333333333333"
    )
    assert multi["Statement"][1] == {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
        "Action": "sts:AssumeRole",
    }
    role = "arn:aws:iam::333333333333:role/SpectroCloudRole"
    by_role = policies.trust_policy(platform_account_id="111111111111", external_id="ext", cluster_role_arn=role)
    assert by_role["Statement"][1]["Principal"]["AWS"] == role


@given(
    action=st.sampled_from(S3_ACTIONS + EC2_ACTIONS),
    bucket=st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True),
)
def test_remedy_statement_grants_exactly_the_action(action: str, bucket: str) -> None:
    statement = policies.statement_for_action(action, bucket)
    assert statement["Action"] == [action]
    resources = statement["Resource"]
    if action.startswith("ec2:"):
        assert resources == "*"
    else:
        assert all(bucket in r for r in resources)
    json.loads(policies.render(statement))


def test_kms_alias_is_granted_through_a_condition() -> None:
    statement = policies.kms_statement("arn:aws:kms:eu-west-1:222222222222:alias/backups")
    assert statement["Resource"] == "*"
    assert statement["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/backups"}}


def test_kms_key_policy_statement_names_the_role_and_both_actions() -> None:
    role = "arn:aws:iam::222222222222:role/stowage"
    statement = policies.kms_key_policy_statement(role)
    assert statement["Principal"] == {"AWS": role}
    assert set(statement["Action"]) >= {"kms:GenerateDataKey", "kms:Decrypt"}
    assert statement["Resource"] == "*"  # in a key policy, "*" means this key
