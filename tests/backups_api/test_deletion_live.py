"""Deleting backups on request and at expiry, by the control plane, against ministack (``AUTH=true``).

The agent (played over its real protocol) writes a backup's objects with its vended credentials, which cannot
delete; the control plane then deletes the objects and the EBS snapshots with its own session of the role.
A role without ``s3:DeleteObject`` leaves the backup ``Failed`` with the reason, never stuck in Deleting.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
from botocore.config import Config
from sqlalchemy import update

from stowage.store.database import Database
from stowage.store.tables import Backup
from tests.agents.helpers import agent_client, register
from tests.support.aws_accounts import AwsAccounts
from tests.support.servers import StowageServer

REGION = "eu-west-1"
PREFIX = "team-a"
FAST = {"STOWAGE_SCHEDULER_TICK_SECONDS": "1", "STOWAGE_BACKUP_LEASE_SECONDS": "30"}


def _live(aws: AwsAccounts, server_factory: Callable[..., StowageServer], remove: tuple[str, ...] = ()) -> Any:
    server = server_factory(extra_env={**aws.control_plane_env(), **FAST})
    http = server.client()
    external_id = http.get("/api/v1/projects/default").json()["externalId"]
    bucket = aws.create_bucket(f"del-{uuid.uuid4().hex[:8]}", REGION)
    role = aws.create_role(
        f"r-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id, prefix=PREFIX, remove=remove
    )
    body = {
        "name": "primary",
        "bucket": bucket,
        "region": REGION,
        "prefix": PREFIX,
        "credentials": {"type": "sts", "roleArn": role},
        "skipValidation": True,
    }
    location = http.post("/api/v1/projects/default/backup-locations", json=body).json()
    cluster = register(http, "prod")
    return server, http, bucket, location, cluster


def _finished_backup(
    server: StowageServer,
    http: httpx.Client,
    aws: AwsAccounts,
    location: dict[str, Any],
    cluster: dict[str, Any],
    name: str,
) -> tuple[dict[str, Any], str]:
    """A Completed backup whose objects (and one EBS snapshot) the agent wrote with its vended credentials."""
    url = "/api/v1/projects/default/clusters/prod/backups"
    created = http.post(url, json={"backupName": name, "includeAllDisks": True})
    assert created.status_code == 202, created.text
    with agent_client(server, cluster["agentToken"]) as agent:
        job = next(
            w
            for w in agent.post("/api/v1/agent/heartbeat", json={}).json()["work"]
            if w["params"]["backupName"] == name
        )
        assert agent.post(f"/api/v1/agent/jobs/{job['id']}/claim").status_code == 200
        creds = agent.get(f"/api/v1/agent/locations/{location['id']}/credentials").json()
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["Token"],
            region_name=REGION,
        )
        config = Config(retries={"max_attempts": 2})
        s3 = session.client("s3", endpoint_url=aws.endpoint, config=config)
        folder = created.json()["storagePrefix"]
        for suffix in ("velero-backup.json", f"{name}.tar.gz", f"{name}-logs.gz"):
            s3.put_object(Bucket=location["bucket"], Key=f"{folder}/{suffix}", Body=b"x" * 10)
        volume = aws.client("ec2").create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
        ec2 = session.client("ec2", endpoint_url=aws.endpoint, config=config)
        snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
        done = agent.post(
            f"/api/v1/agent/jobs/{job['id']}/complete",
            json={
                "phase": "Completed",
                "totalItems": 3,
                "itemsBackedUp": 3,
                "volumeSnapshots": [{"pvName": "pv-1", "snapshotId": snapshot, "volumeId": volume, "region": REGION}],
            },
        )
        assert done.status_code == 200, done.text
    return created.json(), snapshot


def _snapshot_exists(aws: AwsAccounts, snapshot: str) -> bool:
    found = aws.client("ec2").describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])
    return bool(found["Snapshots"])


def _wait_gone(http: httpx.Client, name: str, timeout: float = 30) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = http.get(f"/api/v1/projects/default/clusters/prod/backups/{name}")
        if answer.status_code == 404:
            return None
        if answer.json()["phase"] == "Failed":
            return dict(answer.json())
        time.sleep(0.3)
    raise AssertionError(f"backup {name} is still {answer.json()['phase']}")


def test_delete_removes_objects_and_snapshots_with_the_control_planes_session(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer]
) -> None:
    server, http, bucket, location, cluster = _live(aws, server_factory)
    backup, snapshot = _finished_backup(server, http, aws, location, cluster, "b1")
    keep, _ = _finished_backup(server, http, aws, location, cluster, "b2")
    assert len(aws.object_keys(bucket, backup["storagePrefix"] + "/")) == 3
    assert _snapshot_exists(aws, snapshot)

    answer = http.delete("/api/v1/projects/default/clusters/prod/backups/b1")
    assert answer.status_code == 202 and answer.json()["phase"] == "Deleting"
    failed = _wait_gone(http, "b1")
    assert failed is None, failed["failureReason"]
    assert aws.object_keys(bucket, backup["storagePrefix"] + "/") == []
    assert not _snapshot_exists(aws, snapshot)
    # The other backup is untouched.
    assert len(aws.object_keys(bucket, keep["storagePrefix"] + "/")) == 3


def test_expired_backups_are_deleted_by_the_control_plane(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer]
) -> None:
    server, http, bucket, location, cluster = _live(aws, server_factory)
    backup, snapshot = _finished_backup(server, http, aws, location, cluster, "old")
    db = Database(f"sqlite:///{server.data_dir / 'stowage.db'}")
    try:
        with db.session() as session:  # the test moves the clock through the expiry time
            session.execute(
                update(Backup).where(Backup.name == "old").values(expires_at=datetime(2026, 1, 1, tzinfo=UTC))
            )
    finally:
        db.dispose()
    assert _wait_gone(http, "old") is None
    assert aws.object_keys(bucket, backup["storagePrefix"] + "/") == []
    assert not _snapshot_exists(aws, snapshot)


def test_a_role_that_cannot_delete_leaves_a_failed_backup_with_the_reason(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer]
) -> None:
    server, http, bucket, location, cluster = _live(aws, server_factory, remove=("s3:DeleteObject",))
    backup, _ = _finished_backup(server, http, aws, location, cluster, "stuck")
    assert http.delete("/api/v1/projects/default/clusters/prod/backups/stuck").status_code == 202
    failed = _wait_gone(http, "stuck")
    assert failed is not None, "the backup was deleted although the role cannot delete"
    assert "Deleting backup 'stuck' failed" in failed["failureReason"]
    assert "s3:DeleteObject" in failed["failureReason"]
    assert len(aws.object_keys(bucket, backup["storagePrefix"] + "/")) == 3
