"""The spec's whole flow over HTTP: a real ``stowage serve`` whose AWS identity is account 111111111111 at a
real ministack (AUTH=true), a customer account 222222222222 owning the bucket and the role, and a cluster
account 333333333333 for the multi-account trust statement. Roles are made from the policies the API hands out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.aws_accounts import CUSTOMER, PLATFORM, AwsAccounts
from tests.support.servers import StowageServer

BASE = "/api/v1/projects/default/backup-locations"


@pytest.fixture
def live(server_factory: Any, aws: AwsAccounts) -> StowageServer:
    srv: StowageServer = server_factory(extra_env=aws.control_plane_env())
    return srv


def _role_from_api(aws: AwsAccounts, http: Any, name: str, bucket: str, remove: tuple[str, ...] = ()) -> str:
    """Create the customer role exactly from what Stowage hands out (what a user pastes into the console)."""
    docs = http.get(
        "/api/v1/projects/default/policies", params={"bucket": bucket, "clusterAccountId": "333333333333"}
    ).json()
    permission = docs["permissionPolicy"]
    for statement in permission["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in remove]
    iam = aws.client("iam", CUSTOMER)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(docs["trustPolicy"]))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="stowage", PolicyDocument=json.dumps(permission))
    return str(arn)


def _spec(name: str, bucket: str, role_arn: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "aws",
        "bucket": bucket,
        "region": "us-east-1",
        "credentials": {"type": "sts", "roleArn": role_arn},
    }


def test_sts_panel_shows_the_control_plane_account_and_external_id(live: StowageServer) -> None:
    with live.client() as http:
        sts = http.get("/api/v1/projects/default/sts").json()
        project = http.get("/api/v1/projects/default").json()
    assert sts["accountId"] == PLATFORM and sts["partition"] == "aws"
    assert sts["principalArn"] == f"arn:aws:iam::{PLATFORM}:root"
    assert sts["externalId"] == project["externalId"]


def test_policies_carry_bucket_external_id_and_cluster_account(live: StowageServer) -> None:
    with live.client() as http:
        external_id = http.get("/api/v1/projects/default/sts").json()["externalId"]
        docs = http.get(
            "/api/v1/projects/default/policies",
            params={"bucket": "b-123", "region": "us-gov-west-1", "clusterAccountId": "333333333333"},
        ).json()
        bad = http.get("/api/v1/projects/default/policies", params={"bucket": "B_A_D"})
        both = http.get(
            "/api/v1/projects/default/policies",
            params={
                "bucket": "b-123",
                "clusterAccountId": "333333333333",
                "clusterRoleArn": "arn:aws:iam::333333333333:role/x",
            },
        )
    trust = docs["trustPolicy"]["Statement"]
    assert trust[0]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    assert trust[1]["Principal"] == {"AWS": "arn:aws-us-gov:iam::333333333333:root"}
    assert docs["permissionPolicy"]["Statement"][2]["Resource"] == ["arn:aws-us-gov:s3:::b-123"]
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "bucket"
    assert both.status_code == 422


def test_policies_follow_the_agent_access_mode(live: StowageServer) -> None:
    cluster = {"bucket": "b-123", "clusterAccountId": "333333333333"}
    with live.client() as http:
        external_id = http.get("/api/v1/projects/default/sts").json()["externalId"]
        direct = http.get("/api/v1/projects/default/policies", params={**cluster, "agentAccess": "direct"})
        brokered = http.get("/api/v1/projects/default/policies", params={**cluster, "agentAccess": "brokered"})
        lonely = http.get("/api/v1/projects/default/policies", params={"bucket": "b-123", "agentAccess": "direct"})
        unknown = http.get("/api/v1/projects/default/policies", params={**cluster, "agentAccess": "sideways"})
    direct_trust = direct.json()["trustPolicy"]["Statement"]
    assert direct_trust[1]["Principal"] == {"AWS": "arn:aws:iam::333333333333:root"}
    assert direct_trust[1]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    # Brokered agents never call AssumeRole, so account A needs no trust at all.
    assert len(brokered.json()["trustPolicy"]["Statement"]) == 1
    assert lonely.status_code == 422 and lonely.json()["details"]["field"] == "clusterAccountId"
    assert unknown.status_code == 422 and "agentAccess" in unknown.text


def test_add_location_fails_then_passes_after_fixing_the_role(live: StowageServer, aws: AwsAccounts) -> None:
    bucket = aws.create_bucket("spec-flow-bucket", region="us-east-1")
    with live.client() as http:
        role = _role_from_api(aws, http, "stowage-spec-flow", bucket, remove=("s3:DeleteObject",))
        refused = http.post(BASE, json=_spec("prod", bucket, role))
        assert refused.status_code == 422 and refused.json()["code"] == "validation_failed"
        checks = refused.json()["details"]["report"]["checks"]
        failed = [c for c in checks if c["status"] == "failed"]
        assert [c["id"] for c in failed] == ["s3:DeleteObject"], failed
        assert f"arn:aws:s3:::{bucket}/*" in failed[0]["remedy"]
        assert http.get(BASE).json()["total"] == 0
        # Without s3:DeleteObject the probe object stays; the report names it and the owner removes it.
        leftovers = aws.object_keys(bucket)
        assert len(leftovers) == 1 and leftovers[0] in json.dumps(checks)
        aws.client("s3", CUSTOMER, "us-east-1").delete_object(Bucket=bucket, Key=leftovers[0])

        # The user adds the missing action to the role, validates, then creates.
        full = http.get("/api/v1/projects/default/policies", params={"bucket": bucket}).json()["permissionPolicy"]
        aws.client("iam", CUSTOMER).put_role_policy(
            RoleName="stowage-spec-flow", PolicyName="stowage", PolicyDocument=json.dumps(full)
        )
        report = http.post(f"{BASE}/validate", json=_spec("prod", bucket, role)).json()
        assert report["ok"] is True, [c for c in report["checks"] if c["status"] == "failed"]
        created = http.post(BASE, json=_spec("prod", bucket, role))
        assert created.status_code == 201, created.text
        location = created.json()
        assert location["status"] == "Available" and location["lastValidatedAt"] and location["isDefault"]
        assert http.get(BASE, params={"search": "spec-flow"}).json()["items"][0]["id"] == location["id"]

        # Validation leaves nothing behind in the bucket.
        assert aws.object_keys(bucket) == [] and aws.multipart_uploads(bucket) == []

        # The role loses a permission: re-validation turns the location Unavailable, with history.
        aws.client("iam", CUSTOMER).put_role_policy(
            RoleName="stowage-spec-flow",
            PolicyName="stowage",
            PolicyDocument=json.dumps(aws.permission_policy(bucket, remove=("s3:PutObject",))),
        )
        again = http.post(f"{BASE}/{location['id']}/validate").json()
        assert again["location"]["status"] == "Unavailable" and "s3:PutObject" in again["location"]["statusMessage"]
        history = http.get(f"{BASE}/{location['id']}/validations").json()
        assert [h["trigger"] for h in history] == ["manual", "create"]
        assert history[0]["report"]["ok"] is False and history[1]["report"]["ok"] is True


def test_trust_without_external_id_is_refused_as_confused_deputy(live: StowageServer, aws: AwsAccounts) -> None:
    bucket = aws.create_bucket("deputy-bucket", region="us-east-1")
    role = aws.create_role("no-external-id", bucket=bucket, external_id=None)
    with live.client() as http:
        report = http.post(f"{BASE}/validate", json=_spec("deputy", bucket, role)).json()
    checks = {c["id"]: c for c in report["checks"]}
    assert report["ok"] is False
    assert checks["assume-role"]["status"] == "passed"
    assert checks["external-id-required"]["status"] == "failed"
    assert "sts:ExternalId" in checks["external-id-required"]["remedy"]
