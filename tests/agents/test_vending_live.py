"""Credential vending end to end: a real server, a real ministack (AUTH=true: trust policies, External ID,
session policies and expiry enforced), three accounts (platform 111..., customer 222..., cluster 333...).

Brokered mode: the server assumes the customer's role with a per-cluster session policy and hands the
credentials out; direct mode: the agent assumes the role itself from the cluster account.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from stowage.agent.access import AccessProblem, open_location, probe
from stowage.agent.client import ControlPlane
from stowage.domain import policies
from tests.agents.helpers import agent_client, register
from tests.support.aws_accounts import CLUSTER, CUSTOMER, PLATFORM, SECRET, AwsAccounts
from tests.support.servers import StowageServer

REGION = "eu-west-1"
PREFIX = "team-a"
BOTO = Config(retries={"max_attempts": 1}, parameter_validation=False)


@dataclass
class Live:
    """A server wired to the emulator, a bucket, a role trusted with the project's External ID, a location."""

    server: StowageServer
    aws: AwsAccounts
    http: httpx.Client
    bucket: str
    external_id: str
    role_arn: str
    location: dict[str, Any]

    def s3_with(self, creds: dict[str, Any]) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.aws.endpoint,
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["Token"],
            config=BOTO,
        )

    def credentials(self, token: str, location_id: str | None = None) -> httpx.Response:
        with agent_client(self.server, token) as agent:
            return agent.get(f"/api/v1/agent/locations/{location_id or self.location['id']}/credentials")

    def issuances(self, **params: Any) -> list[dict[str, Any]]:
        answer = self.http.get("/api/v1/projects/default/credential-issuances", params=params)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


def denied(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


@pytest.fixture
def live_factory(aws: AwsAccounts, server_factory: Callable[..., StowageServer]) -> Iterator[Callable[..., Live]]:
    clients: list[httpx.Client] = []

    def make(*, validate: bool = False, agent_access: str = "brokered", **env: str) -> Live:
        server = server_factory(extra_env={**aws.control_plane_env(), **env})
        http = server.client()
        clients.append(http)
        external_id = http.get("/api/v1/projects/default").json()["externalId"]
        bucket = aws.create_bucket(f"backups-{uuid.uuid4().hex[:8]}", REGION)
        role_arn = aws.create_role(
            f"stowage-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id, prefix=PREFIX
        )
        body = {
            "name": "primary",
            "provider": "aws",
            "bucket": bucket,
            "region": REGION,
            "prefix": PREFIX,
            "agentAccess": agent_access,
            "credentials": {"type": "sts", "roleArn": role_arn},
            "skipValidation": not validate,
        }
        answer = http.post("/api/v1/projects/default/backup-locations", json=body)
        assert answer.status_code == 201, answer.text
        return Live(server, aws, http, bucket, external_id, role_arn, answer.json())

    yield make
    for client in clients:
        client.close()


def test_each_cluster_is_confined_to_its_own_prefix(live_factory: Callable[..., Live]) -> None:
    live = live_factory(validate=True)
    assert live.location["status"] == "Available", live.location["statusMessage"]
    first, second = register(live.http, "first"), register(live.http, "second")
    own = f"{PREFIX}/clusters/{first['id']}"
    other = f"{PREFIX}/clusters/{second['id']}"

    answer = live.credentials(first["agentToken"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    creds = answer.json()
    assert set(creds) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert creds["Expiration"].endswith("Z")
    s3 = live.s3_with(creds)
    s3.put_object(Bucket=live.bucket, Key=f"{own}/backups/b1/velero-backup.json", Body=b"{}")
    assert s3.get_object(Bucket=live.bucket, Key=f"{own}/backups/b1/velero-backup.json")["Body"].read() == b"{}"
    listed = s3.list_objects_v2(Bucket=live.bucket, Prefix=f"{own}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{own}/backups/b1/velero-backup.json"]

    # Outside its prefix: neither the location's root, nor the bucket's, nor anything of the other cluster.
    assert denied(lambda: s3.put_object(Bucket=live.bucket, Key=f"{PREFIX}/stray", Body=b"x")) == "AccessDenied"
    assert denied(lambda: s3.put_object(Bucket=live.bucket, Key="stray", Body=b"x")) == "AccessDenied"
    assert denied(lambda: s3.list_objects_v2(Bucket=live.bucket, Prefix=f"{PREFIX}/")) == "AccessDenied"
    assert denied(lambda: s3.list_objects_v2(Bucket=live.bucket)) == "AccessDenied"

    second_s3 = live.s3_with(live.credentials(second["agentToken"]).json())
    second_s3.put_object(Bucket=live.bucket, Key=f"{other}/backups/b2/velero-backup.json", Body=b"{}")
    assert denied(lambda: s3.get_object(Bucket=live.bucket, Key=f"{other}/backups/b2/velero-backup.json"))
    assert denied(lambda: s3.put_object(Bucket=live.bucket, Key=f"{other}/backups/b2/velero-backup.json", Body=b""))
    assert denied(lambda: s3.delete_object(Bucket=live.bucket, Key=f"{other}/backups/b2/velero-backup.json"))
    assert denied(lambda: s3.list_objects_v2(Bucket=live.bucket, Prefix=f"{other}/"))
    assert denied(lambda: second_s3.get_object(Bucket=live.bucket, Key=f"{own}/backups/b1/velero-backup.json"))
    # A longer id that starts like this cluster's is not this cluster's.
    assert denied(lambda: s3.list_objects_v2(Bucket=live.bucket, Prefix=f"{own}x/"))
    # Agents cannot delete, not even their own backups: deletion and expiry are the control plane's.
    assert denied(lambda: s3.delete_object(Bucket=live.bucket, Key=f"{own}/backups/b1/velero-backup.json"))
    assert s3.get_object(Bucket=live.bucket, Key=f"{own}/backups/b1/velero-backup.json")["Body"].read() == b"{}"

    # Asking again is answered from the cache: same credentials, no new issuance in the audit.
    assert live.credentials(first["agentToken"]).json()["AccessKeyId"] == creds["AccessKeyId"]
    audit = live.issuances(clusterId=first["id"])
    assert len(audit) == 1
    entry = audit[0]
    assert entry["locationId"] == live.location["id"] and entry["clusterName"] == "first"
    assert creds["AccessKeyId"].startswith(entry["accessKeyIdPrefix"]) and len(entry["accessKeyIdPrefix"]) == 8
    assert creds["SecretAccessKey"] not in json.dumps(audit)
    assert len(live.issuances(locationId=live.location["id"])) == 2
    assert len(live.issuances(locationId=live.location["id"], limit=1)) == 1


def test_other_project_is_403_and_revoked_token_is_401(live_factory: Callable[..., Live]) -> None:
    live = live_factory()
    assert live.http.post("/api/v1/projects", json={"name": "elsewhere"}).status_code == 201
    outsider = register(live.http, "outsider", project="elsewhere")
    answer = live.credentials(outsider["agentToken"])
    assert answer.status_code == 403 and "own project" in answer.json()["message"]

    insider = register(live.http, "insider")
    assert live.credentials(insider["agentToken"]).status_code == 200
    assert live.http.post("/api/v1/projects/default/clusters/insider/revoke-token").status_code == 200
    revoked = live.credentials(insider["agentToken"])
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
    assert live.issuances(clusterId=outsider["id"]) == []


def test_multipart_upload_outlives_several_credential_lifetimes(
    live_factory: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4-second sessions refreshed 2 seconds before expiry; the upload below lasts about three lifetimes.
    live = live_factory(
        STOWAGE_ALLOW_SHORT_SESSIONS="true", STOWAGE_STS_DURATION_SECONDS="4", STOWAGE_CREDENTIAL_REFRESH_SECONDS="2"
    )
    cluster = register(live.http, "slow")
    # The agent's environment, as a pod would have it: botocore's own container provider and nothing else.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        f"{live.server.url}/api/v1/agent/locations/{live.location['id']}/credentials",
    )
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", cluster["agentToken"])  # sent bare, not "Bearer"
    session = boto3.session.Session(region_name=REGION)
    s3 = session.client("s3", endpoint_url=live.aws.endpoint, config=BOTO)
    key = f"{PREFIX}/clusters/{cluster['id']}/backups/big/big.tar.gz"
    upload = s3.create_multipart_upload(Bucket=live.bucket, Key=key)["UploadId"]
    parts, seen = [], set()
    part = os.urandom(5 * 1024 * 1024)
    started = time.monotonic()
    for number in range(1, 7):
        etag = s3.upload_part(Bucket=live.bucket, Key=key, UploadId=upload, PartNumber=number, Body=part)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
        seen.add(session.get_credentials().get_frozen_credentials().access_key)
        time.sleep(2.0)
    s3.complete_multipart_upload(Bucket=live.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    assert time.monotonic() - started > 3 * 4  # more than three credential lifetimes
    head = live.aws.client("s3", CUSTOMER, REGION).head_object(Bucket=live.bucket, Key=key)
    assert head["ContentLength"] == 6 * len(part)
    assert len(seen) >= 3, seen  # refreshed mid-upload, several times
    assert len(live.issuances(clusterId=cluster["id"])) >= 3


def test_credential_process_profile(
    live_factory: Callable[..., Live], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = live_factory()
    cluster = register(live.http, "cli")
    config = tmp_path / "aws-config"
    command = (
        f"{sys.executable} -m stowage.cli.credentials --location {live.location['id']} "
        f"--server {live.server.url} --token {cluster['agentToken']}"
    )
    config.write_text(f"[profile stowage-backups]\ncredential_process = {command}\nregion = {REGION}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    session = boto3.session.Session(profile_name="stowage-backups")
    assert session.get_credentials().method == "custom-process"
    s3 = session.client("s3", endpoint_url=live.aws.endpoint, config=BOTO)
    key = f"{PREFIX}/clusters/{cluster['id']}/restic/config"
    s3.put_object(Bucket=live.bucket, Key=key, Body=b"restic")
    assert s3.get_object(Bucket=live.bucket, Key=key)["Body"].read() == b"restic"
    assert denied(lambda: s3.put_object(Bucket=live.bucket, Key=f"{PREFIX}/other", Body=b"x"))

    printed = subprocess.run(
        command.split(), capture_output=True, text=True, timeout=60, env={**os.environ, "STOWAGE_DEBUG": ""}
    )
    document = json.loads(printed.stdout)
    assert document["Version"] == 1 and set(document) == {
        "Version",
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    }
    wrong = subprocess.run([*command.split()[:-1], "stwa_" + "x" * 43], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and wrong.stdout == "" and "Unknown agent token" in wrong.stderr


def _direct_role(live: Live, cluster: dict[str, Any], *, trust_cluster: bool) -> str:
    """A second role for direct mode: its trust policy is what Stowage hands out for the cluster (or without it)."""
    if trust_cluster:
        answer = live.http.get(
            f"/api/v1/projects/default/clusters/{cluster['id']}/trust-policy",
            params={"locationId": live.location["id"]},
        )
        assert answer.status_code == 200, answer.text
        trust = answer.json()["trustPolicy"]
        assert len(trust["Statement"]) == 2
        assert trust["Statement"][1] == policies.direct_cluster_trust_statement(
            external_id=live.external_id, cluster_account_id=CLUSTER
        )
    else:
        trust = policies.trust_policy(platform_account_id=PLATFORM, external_id=live.external_id)
    return live.aws.create_role(
        f"direct-{uuid.uuid4().hex[:6]}", bucket=live.bucket, external_id=live.external_id, prefix=PREFIX, trust=trust
    )


def _use_role(live: Live, role_arn: str) -> None:
    answer = live.http.patch(
        f"/api/v1/projects/default/backup-locations/{live.location['id']}",
        json={"credentials": {"type": "sts", "roleArn": role_arn}, "skipValidation": True},
    )
    assert answer.status_code == 200, answer.text


def test_direct_mode_from_the_cluster_account(live_factory: Callable[..., Live], tmp_path: Path) -> None:
    live = live_factory(agent_access="direct")
    cluster = register(live.http, "direct", cloudAccountId=CLUSTER, region=REGION)
    _use_role(live, _direct_role(live, cluster, trust_cluster=True))
    refused = live.credentials(cluster["agentToken"])
    assert refused.status_code == 409 and refused.json()["details"]["reason"] == "direct_access"

    cluster_identity = boto3.session.Session(
        aws_access_key_id=CLUSTER, aws_secret_access_key=SECRET, region_name=REGION
    )
    control = ControlPlane(live.server.url, lambda: cluster["agentToken"])
    try:
        access = open_location(control, live.location["id"], base_session=cluster_identity)
        assert access.location["externalId"] == live.external_id
        probe(access)  # write and read back in its own prefix
        s3 = access.s3()
        # The agent applies the same per-cluster session policy to its own session.
        assert denied(lambda: s3.put_object(Bucket=live.bucket, Key=f"{PREFIX}/clusters/other/x", Body=b"x"))
        caller = access.session.client("sts").get_caller_identity()
        assert caller["Account"] == CUSTOMER and "stowage-default-direct" in caller["Arn"]
    finally:
        control.close()

    # The same through the agent process itself, with only the cluster account's keys in its environment.
    result = _agent_check(live, cluster, tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"agent.check.passed"' in result.stderr and '"agentAccess": "direct"' in result.stderr


def test_direct_mode_without_the_cluster_trust_statement_says_what_to_add(
    live_factory: Callable[..., Live], tmp_path: Path
) -> None:
    live = live_factory(agent_access="direct")
    cluster = register(live.http, "untrusted", cloudAccountId=CLUSTER)
    _use_role(live, _direct_role(live, cluster, trust_cluster=False))
    cluster_identity = boto3.session.Session(
        aws_access_key_id=CLUSTER, aws_secret_access_key=SECRET, region_name=REGION
    )
    control = ControlPlane(live.server.url, lambda: cluster["agentToken"])
    try:
        with pytest.raises(AccessProblem) as caught:
            open_location(control, live.location["id"], base_session=cluster_identity)
    finally:
        control.close()
    message = str(caught.value)
    assert f"arn:aws:iam::{CLUSTER}:root" in message and "sts:ExternalId" in message and live.external_id in message
    assert "may not assume" in message

    result = _agent_check(live, cluster, tmp_path)
    assert result.returncode == 1
    assert '"agent.check.failed"' in result.stderr and f"arn:aws:iam::{CLUSTER}:root" in result.stderr


def _agent_check(live: Live, cluster: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    token_file = tmp_path / "agent-token"
    token_file.write_text(cluster["agentToken"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": CLUSTER,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": live.aws.endpoint,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    args = [sys.executable, "-m", "stowage.agent", "--server", live.server.url, "--token-file", str(token_file)]
    return subprocess.run([*args, "--check", live.location["id"]], capture_output=True, text=True, timeout=120, env=env)
