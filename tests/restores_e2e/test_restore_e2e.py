"""Restores end to end: a real server, the real agent process, a real kube-apiserver and ministack (AUTH=true).

The backup and the restores are asked for through the API; the agent process picks them up with its heartbeat,
claims them, reads the source backup and writes the restore's files with the restore's own job credentials
(vended by the control plane with a session policy for that one restore). A preview is asked for first and its
plan is compared with the restore's results item by item.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.agents.helpers import agent_client
from tests.backups.helpers import populate
from tests.support.kube import Kube
from tests.support.stack import BOTO, REGION, Stack

pytestmark = pytest.mark.timeout(300)
PLAN_TO_RESULT = {"create": "created", "update": "updated", "skip": "skipped", "conflict": "failed"}


def _denied(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def create_restore(stack: Stack, cluster: str, backup: str, body: dict[str, Any]) -> dict[str, Any]:
    while True:
        answer = stack.http.post(f"/api/v1/projects/default/clusters/{cluster}/backups/{backup}/restores", json=body)
        if answer.status_code == 409 and "try again in a second" in answer.text:
            time.sleep(0.5)  # restore names carry the second they were made in
            continue
        assert answer.status_code == 202, answer.text
        return dict(answer.json())


def wait_restore(stack: Stack, cluster: str, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        restore = stack.http.get(f"/api/v1/projects/default/clusters/{cluster}/restores/{name}").json()
        if restore["phase"] in ("Completed", "PartiallyFailed", "Failed"):
            return dict(restore)
        if time.monotonic() > deadline:
            raise AssertionError(f"restore {name} is {restore['phase']}: {restore}")
        time.sleep(0.2)


def items_of(stack: Stack, cluster: str, name: str) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    found: dict[tuple[str, str | None, str], dict[str, Any]] = {}
    offset = 0
    while True:
        page = stack.http.get(
            f"/api/v1/projects/default/clusters/{cluster}/restores/{name}/items",
            params={"offset": offset, "limit": 500},
        ).json()
        for item in page["items"]:
            found[(item["kind"], item["namespace"], item["name"])] = item
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return found


def test_preview_then_restore_through_the_agent_process(stack_factory: Callable[..., Stack], kube: Kube) -> None:
    stack = stack_factory()
    cluster = stack.cluster(f"src-{uuid.uuid4().hex[:6]}")
    stack.start_agent(cluster, kube)
    objects = populate(kube)
    backup = f"bk-{uuid.uuid4().hex[:6]}"
    stack.backup(cluster["name"], {"backupName": backup, "namespaces": [objects.a]})
    assert stack.wait(cluster["name"], backup, {"Completed", "PartiallyFailed", "Failed"})["phase"] == "Completed"
    target = f"a2-{uuid.uuid4().hex[:6]}"
    kube.namespaces.append(target)
    body = {"namespaceMapping": {objects.a: target}}

    preview = create_restore(stack, cluster["name"], backup, {**body, "dryRun": True})
    done = wait_restore(stack, cluster["name"], preview["restoreName"])
    assert done["phase"] == "Completed", done
    assert done["progress"]["itemsRestored"] == 0 and done["summary"]["create"] >= 8
    assert kube.http.get(f"/api/v1/namespaces/{target}").status_code == 404
    plan = items_of(stack, cluster["name"], preview["restoreName"])
    assert len(plan) == done["progress"]["totalItems"]

    real = create_restore(stack, cluster["name"], backup, body)
    finished = wait_restore(stack, cluster["name"], real["restoreName"])
    assert finished["phase"] == "Completed", finished
    results = items_of(stack, cluster["name"], real["restoreName"])
    assert {k: PLAN_TO_RESULT[v["action"]] for k, v in plan.items()} == {k: v["action"] for k, v in results.items()}
    assert finished["progress"]["itemsRestored"] == finished["summary"]["created"]
    restored = kube.get(f"/api/v1/namespaces/{target}/configmaps/web-config")
    assert restored["data"] == {"index.html": "<h1>hi & bye</h1>"}
    logs = stack.http.get(f"/api/v1/projects/default/clusters/{cluster['name']}/restores/{real['restoreName']}/logs")
    assert any("Restore done" in line["message"] for line in logs.json()["lines"])
    # Velero's restore files in the destination cluster's restores/<name>/ folder.
    keys = stack.aws.object_keys(stack.bucket, finished["storagePrefix"] + "/")
    name = real["restoreName"]
    assert {k.rsplit("/", 1)[1] for k in keys} == {
        f"restore-{name}-results.gz",
        f"restore-{name}-resource-list.json.gz",
        f"restore-{name}-logs.gz",
    }


def test_job_credentials_read_the_backup_and_write_only_the_restore_folder(
    stack_factory: Callable[..., Stack], kube: Kube
) -> None:
    stack = stack_factory()
    source = stack.cluster(f"src-{uuid.uuid4().hex[:6]}")
    stack.start_agent(source, kube)
    objects = populate(kube)
    backups = [f"bk-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for backup in backups:
        stack.backup(source["name"], {"backupName": backup, "namespaces": [objects.a]})
        assert stack.wait(source["name"], backup, {"Completed", "PartiallyFailed", "Failed"})["phase"] == "Completed"
    # A destination cluster without an agent process: the test plays its agent to hold the job's credentials.
    destination = stack.cluster(f"dst-{uuid.uuid4().hex[:6]}")
    restore = create_restore(stack, source["name"], backups[0], {"destinationClusterId": destination["id"]})
    with agent_client(stack.server, destination["agentToken"]) as agent:
        claim = agent.post(f"/api/v1/agent/jobs/{restore['id']}/claim")
        assert claim.status_code == 200, claim.text
        params = claim.json()["params"]
        creds = agent.get(params["credentialsPath"]).json()
        s3 = boto3.client(
            "s3",
            endpoint_url=stack.aws.endpoint,
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["Token"],
            config=BOTO,
        )
        bucket = stack.bucket
        source_prefix = params["backupPrefix"]
        other_prefix = source_prefix.rsplit("/", 1)[0] + f"/{backups[1]}"
        own = params["restorePrefix"]
        # Read the one backup, write the restore's own folder.
        assert s3.get_object(Bucket=bucket, Key=f"{source_prefix}/velero-backup.json")["Body"].read()
        assert s3.list_objects_v2(Bucket=bucket, Prefix=source_prefix + "/")["KeyCount"] >= 8
        s3.put_object(Bucket=bucket, Key=f"{own}/restore-x-logs.gz", Body=b"x")
        # Nothing else: not another backup, not the backup's folder, not deleting.
        assert _denied(lambda: s3.get_object(Bucket=bucket, Key=f"{other_prefix}/velero-backup.json")) == "AccessDenied"
        assert _denied(lambda: s3.put_object(Bucket=bucket, Key=f"{source_prefix}/evil", Body=b"x")) == "AccessDenied"
        assert _denied(lambda: s3.put_object(Bucket=bucket, Key=f"{other_prefix}/evil", Body=b"x")) == "AccessDenied"
        assert _denied(lambda: s3.delete_object(Bucket=bucket, Key=f"{source_prefix}/velero-backup.json")) == (
            "AccessDenied"
        )
        assert _denied(lambda: s3.delete_object(Bucket=bucket, Key=f"{own}/restore-x-logs.gz")) == "AccessDenied"
        assert _denied(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=other_prefix + "/")) == "AccessDenied"
        ended = agent.post(
            f"/api/v1/agent/jobs/{restore['id']}/complete", json={"phase": "Failed", "failureReason": "test over"}
        )
        assert ended.status_code == 200, ended.text
