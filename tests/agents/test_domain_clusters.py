"""Pure rules of clusters: names, connection status, per-cluster session policies, trust for direct mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stowage.domain import policies
from stowage.domain.clusters import (
    ConnectionStatus,
    agent_session_name,
    cluster_name_problem,
    cluster_prefix,
    cluster_session_policy,
    connection_status,
    render_compact,
    session_policy_problem,
    suggest_cluster_name,
)
from stowage.domain.locations import AgentAccess, LocationSpec, Provider, StsCredentials

CLUSTER_ID = "0b9f3c1e-5a8d-4c2e-9f7a-1d2e3f4a5b6c"


def spec(**overrides: object) -> LocationSpec:
    fields: dict[str, object] = {
        "name": "primary",
        "provider": Provider.AWS,
        "bucket": "acme-backups",
        "region": "eu-west-1",
        "credentials": StsCredentials("arn:aws:iam::222222222222:role/stowage"),
        "prefix": "team-a",
    }
    fields.update(overrides)
    return LocationSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["prod", "prod-eu-1", "a", "x" * 63, "0abc"])
def test_good_cluster_names(name: str) -> None:
    assert cluster_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "required"),
        ("x" * 64, "at most 63"),
        ("Prod EU", "lowercase"),
        ("-prod", "start and end"),
        ("prod-", "start and end"),
        ("prod_eu", "lowercase"),
    ],
)
def test_bad_cluster_names_say_why(name: str, fragment: str) -> None:
    problem = cluster_name_problem(name)
    assert problem is not None and fragment in problem


def test_suggestions_are_valid() -> None:
    assert suggest_cluster_name(" Prod EU__1 ") == "prod-eu-1"


@given(st.text(max_size=80))
def test_a_non_empty_suggestion_is_always_a_valid_name(text: str) -> None:
    suggestion = suggest_cluster_name(text)
    assert suggestion == "" or cluster_name_problem(suggestion) is None


def test_connected_within_three_intervals() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert connection_status(None, now=now, interval_seconds=30) is ConnectionStatus.DISCONNECTED
    assert connection_status(now - timedelta(seconds=89), now=now, interval_seconds=30) is ConnectionStatus.CONNECTED
    assert connection_status(now - timedelta(seconds=91), now=now, interval_seconds=30) is ConnectionStatus.DISCONNECTED


def test_cluster_prefix_sits_under_the_location_prefix() -> None:
    assert cluster_prefix("/team-a/", CLUSTER_ID) == f"team-a/clusters/{CLUSTER_ID}"
    assert cluster_prefix(None, CLUSTER_ID) == f"clusters/{CLUSTER_ID}"


def test_session_policy_confines_objects_and_listing() -> None:
    policy = cluster_session_policy(spec(), CLUSTER_ID)
    objects, listing, ec2 = policy["Statement"]
    root = f"team-a/clusters/{CLUSTER_ID}"
    assert objects["Resource"] == [f"arn:aws:s3:::acme-backups/{root}/*"]
    # Everything of the spec's object actions except deleting: agents never delete backups.
    assert objects["Action"] == [a for a in policies.OBJECT_ACTIONS if a != "s3:DeleteObject"]
    assert listing["Resource"] == ["arn:aws:s3:::acme-backups"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{root}/", f"{root}/*"]}}
    assert ec2["Resource"] == "*"
    assert sorted(ec2["Action"]) == sorted(a for a in policies.ec2_statement()["Action"] if a != "ec2:DeleteSnapshot")


def test_session_policy_follows_partition_ec2_and_kms() -> None:
    kms = "arn:aws-us-gov:kms:us-gov-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    policy = cluster_session_policy(
        spec(region="us-gov-west-1", volume_snapshots=False, kms_key_arn=kms), CLUSTER_ID, partition="aws-us-gov"
    )
    statements = policy["Statement"]
    assert statements[0]["Resource"][0].startswith("arn:aws-us-gov:s3:::")
    assert [s.get("Sid") for s in statements[:2]] == ["ClusterObjects", "ClusterListing"]
    assert statements[2] == policies.kms_statement(kms) and len(statements) == 3


def test_session_policy_length_is_checked() -> None:
    rendered = render_compact(cluster_session_policy(spec(), CLUSTER_ID))
    assert json.loads(rendered) == cluster_session_policy(spec(), CLUSTER_ID)
    assert " " not in rendered and session_policy_problem(rendered) is None
    long = render_compact(cluster_session_policy(spec(prefix="p" * 900), CLUSTER_ID))
    problem = session_policy_problem(long)
    assert problem is not None and "2048" in problem


def test_agent_session_name_is_valid_and_bounded() -> None:
    assert agent_session_name("default", "prod-eu") == "stowage-default-prod-eu"
    assert len(agent_session_name("p" * 63, "c" * 63)) == 64


def test_direct_trust_statement_requires_the_external_id() -> None:
    statement = policies.direct_cluster_trust_statement(external_id="ext-1", cluster_account_id="333333333333")
    assert statement == {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "ext-1"}},
    }
    by_role = policies.direct_cluster_trust_statement(
        external_id="ext-1", cluster_role_arn="arn:aws:iam::333333333333:role/agent"
    )
    assert by_role["Principal"] == {"AWS": "arn:aws:iam::333333333333:role/agent"}


def test_agent_trust_policy_by_mode() -> None:
    common = {"platform_account_id": "111111111111", "external_id": "ext-1", "cluster_account_id": "333333333333"}
    brokered = policies.agent_trust_policy(agent_access=AgentAccess.BROKERED, **common)
    assert brokered == policies.trust_policy(platform_account_id="111111111111", external_id="ext-1")
    direct = policies.agent_trust_policy(agent_access=AgentAccess.DIRECT, **common)
    assert direct["Statement"][0] == brokered["Statement"][0]
    assert direct["Statement"][1]["Condition"] == {"StringEquals": {"sts:ExternalId": "ext-1"}}
    china = policies.agent_trust_policy(agent_access="direct", partition="aws-cn", **common)
    assert china["Statement"][1]["Principal"] == {"AWS": "arn:aws-cn:iam::333333333333:root"}
