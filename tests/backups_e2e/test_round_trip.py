"""Backups end to end: a real server, the real agent process, a real kube-apiserver and ministack (AUTH=true).

The backup is asked for through the API; the agent process (``stowage agent --kubeconfig``) picks it up with
its heartbeat, claims it, reads the apiserver and writes the bucket with the location's vended credentials.
Then the test reads the bucket as its owner and compares every stored item with ``GET`` of the object.

A slow TCP proxy between the agent and S3 makes a backup last long enough to kill its agent mid-way, and to
outlive several 20-second STS sessions (brokered credentials refresh through the control plane).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.backups.helpers import check_items_equal_get, check_layout, populate, read_backup
from tests.support.kube import Kube
from tests.support.proxy import SlowProxy
from tests.support.stack import PREFIX, REGION, Stack


def _denied(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def test_round_trip_with_the_agent_process(stack_factory: Callable[..., Stack], kube: Kube) -> None:
    stack = stack_factory()
    objects = populate(kube)
    # A real EBS volume behind a second PVC of namespace a; the fixture's own PV names a volume that does not
    # exist, so its snapshot fails and the backup with disks is PartiallyFailed, naming that PV.
    ec2 = stack.aws.client("ec2", region=REGION)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    real_pv = f"pv-real-{uuid.uuid4().hex[:6]}"
    kube.create(
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": real_pv, "labels": {"topology.kubernetes.io/zone": f"{REGION}a"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume, "fsType": "ext4"},
            },
        },
    )
    kube.create(
        f"/api/v1/namespaces/{objects.a}/persistentvolumeclaims",
        {
            "metadata": {"name": "real-data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeName": real_pv,
            },
        },
    )

    first, second = stack.cluster("first"), stack.cluster("second")
    stack.start_agent(first, kube)
    created = stack.backup("first", {"backupName": "full", "namespaces": [objects.a], "durationInHours": 24})
    assert created["phase"] == "New"
    done = stack.wait("first", "full", {"Completed", "PartiallyFailed", "Failed"})
    assert done["phase"] == "Completed", done["failureReason"]
    assert done["progress"]["itemsBackedUp"] == done["progress"]["totalItems"] > 0
    assert done["sizeBytes"] > 0 and done["volumeSnapshots"] == 0

    cluster_prefix = f"{PREFIX}/clusters/{first['id']}"
    stored = read_backup(stack.owner_s3(), "full", bucket=stack.bucket, cluster_prefix=cluster_prefix)
    check_layout(stored, "full")
    assert stored.backup["status"]["phase"] == "Completed"
    assert stored.backup["spec"]["includedNamespaces"] == [objects.a]
    # Auto with a namespace filter: the PVs bound to backed-up PVCs and the CRD of backed-up custom resources.
    related = {objects.pv_bound, real_pv, f"widgets.{objects.crd_group}", objects.a}
    checked = check_items_equal_get(kube, stored, {objects.a}, related)
    assert checked >= 10
    assert objects.b not in json.dumps(stored.resource_list)
    # Only backups/ (and later restores/) at the top of the cluster's prefix.
    keys = stack.aws.object_keys(stack.bucket, cluster_prefix + "/")
    assert {k[len(cluster_prefix) + 1 :].split("/")[0] for k in keys} == {"backups"}

    # With disks: the real volume gets a snapshot with Velero's tags; the missing one makes it PartiallyFailed.
    stack.backup("first", {"backupName": "disks", "namespaces": [objects.a], "includeAllDisks": True})
    disks = stack.wait("first", "disks", {"Completed", "PartiallyFailed", "Failed"})
    assert disks["phase"] == "PartiallyFailed", disks
    assert disks["volumeSnapshots"] >= 1 and disks["errors"] >= 1
    with_disks = read_backup(stack.owner_s3(), "disks", bucket=stack.bucket, cluster_prefix=cluster_prefix)
    snapshot_id = next(
        s["status"]["providerSnapshotID"] for s in with_disks.volume_snapshots if volume in json.dumps(s)
    )
    found = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    tags = {t["Key"]: t["Value"] for t in found["Tags"]}
    assert tags["velero.io/backup"] == "disks" and tags["velero.io/pv"] == real_pv
    problems = stack.http.get("/api/v1/projects/default/clusters/first/backups/disks/contents").json()["errors"]
    assert any(objects.pv_bound in e["message"] for e in problems), problems

    # The API shows the contents from the bucket.
    contents = stack.http.get("/api/v1/projects/default/clusters/first/backups/full/contents").json()
    assert contents["totalItems"] == sum(len(v) for v in stored.resource_list.values())

    # A second cluster's credentials can neither read, overwrite nor delete the first one's backup; the
    # first cluster's own credentials cannot delete it either.
    tarball = f"{cluster_prefix}/backups/full/full.tar.gz"
    other = stack.agent_s3(second)
    assert _denied(lambda: other.get_object(Bucket=stack.bucket, Key=tarball)) == "AccessDenied"
    assert _denied(lambda: other.put_object(Bucket=stack.bucket, Key=tarball, Body=b"x")) == "AccessDenied"
    assert _denied(lambda: other.delete_object(Bucket=stack.bucket, Key=tarball)) == "AccessDenied"
    assert _denied(lambda: other.list_objects_v2(Bucket=stack.bucket, Prefix=cluster_prefix + "/")) == "AccessDenied"
    own = stack.agent_s3(first)
    assert _denied(lambda: own.delete_object(Bucket=stack.bucket, Key=tarball)) == "AccessDenied"
    assert own.get_object(Bucket=stack.bucket, Key=tarball)["Body"].read()

    # Deleting the one with disks through the API removes objects and snapshot (the control plane's session).
    assert stack.http.delete("/api/v1/projects/default/clusters/first/backups/disks").status_code == 202
    deadline = time.monotonic() + 30
    while stack.http.get("/api/v1/projects/default/clusters/first/backups/disks").status_code != 404:
        assert time.monotonic() < deadline, "the backup was not deleted"
        time.sleep(0.2)
    assert stack.aws.object_keys(stack.bucket, f"{cluster_prefix}/backups/disks/") == []
    assert not ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"]


def _many_configmaps(kube: Kube, count: int, size: int = 1024) -> str:
    """A namespace with ``count`` ConfigMaps of about ``size`` bytes of random (incompressible) data."""
    namespace = kube.namespace("bulk")
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    with httpx.Client(
        base_url=kube.server.url,
        headers={"Authorization": f"Bearer {kube.server.token}"},
        verify=str(kube.server.tls.ca_path),
        timeout=60,
        limits=httpx.Limits(max_connections=16),
    ) as http:
        from concurrent.futures import ThreadPoolExecutor

        def create(i: int) -> None:
            body = {
                "metadata": {"name": f"cm-{i:05d}"},
                "binaryData": {"blob": base64.b64encode(os.urandom(size)).decode()},
            }
            answer = http.post(path, json=body)
            assert answer.status_code == 201, answer.text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(count)))
    return namespace


def test_an_agent_killed_mid_backup_leaves_nothing_that_looks_complete(
    stack_factory: Callable[..., Stack], kube: Kube
) -> None:
    stack = stack_factory(STOWAGE_BACKUP_LEASE_SECONDS="5")
    namespace = _many_configmaps(kube, 600)
    target = urlsplit(stack.aws.endpoint)
    proxy = SlowProxy((target.hostname or "127.0.0.1", target.port or 80), bytes_per_second=40_000).start()
    try:
        cluster = stack.cluster("doomed")
        agent = stack.start_agent(cluster, kube, s3_endpoint=proxy.url)
        stack.backup("doomed", {"backupName": "cut", "namespaces": [namespace]})
        stack.wait("doomed", "cut", {"InProgress"}, timeout=60)
        time.sleep(2)  # well inside the upload (about 600 KB at 40 KB/s)
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        failed = stack.wait("doomed", "cut", {"Failed", "Completed"}, timeout=30)
    finally:
        proxy.close()
    assert failed["phase"] == "Failed"
    assert "stopped reporting" in failed["failureReason"]
    keys = stack.aws.object_keys(stack.bucket, f"{PREFIX}/clusters/{cluster['id']}/backups/cut/")
    assert not any(k.endswith("velero-backup.json") for k in keys), keys


def test_short_sts_sessions_expire_several_times_during_a_backup_without_a_failed_part(
    stack_factory: Callable[..., Stack], kube: Kube, tmp_path: Path
) -> None:
    """20-second sessions, a backup of about a minute whose 5 MiB parts are spread over it.

    The apiserver is read through a slow proxy (about 600 KB/s) so listing takes long, while S3 is fast, so
    every part is sent in well under the refresh window: what is tested is that parts sent after a session
    expired use fresh credentials (botocore's container provider refreshes them through the control plane).
    """
    stack = stack_factory(
        STOWAGE_STS_DURATION_SECONDS="20",
        STOWAGE_ALLOW_SHORT_SESSIONS="true",
        STOWAGE_CREDENTIAL_REFRESH_SECONDS="8",
    )
    namespace = _many_configmaps(kube, 2000, size=10_000)  # about 20 MB that gzip cannot shrink: 4 parts
    target = urlsplit(kube.server.url)
    proxy = SlowProxy((target.hostname or "127.0.0.1", target.port or 443), bytes_per_second=600_000).start()
    config = json.loads(kube.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    slow_kubeconfig = tmp_path / "slow-kubeconfig"
    slow_kubeconfig.write_text(json.dumps(config))
    try:
        cluster = stack.cluster("patient")
        stack.start_agent(cluster, kube, kubeconfig=slow_kubeconfig)
        stack.backup("patient", {"backupName": "long", "namespaces": [namespace]})
        started = time.monotonic()
        done = stack.wait("patient", "long", {"Completed", "PartiallyFailed", "Failed"}, timeout=300)
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert done["phase"] == "Completed", done["failureReason"]
    issued = stack.http.get(
        "/api/v1/projects/default/credential-issuances", params={"clusterId": cluster["id"], "limit": 100}
    ).json()["items"]
    print(f"\nbackup took {took:.1f} s with 20 s sessions; {len(issued)} credential sets issued; 0 failed parts")
    assert took > 40, f"the backup took only {took:.1f} s: it did not outlive two sessions"
    assert len(issued) >= 3
    stored = read_backup(
        stack.owner_s3(), "long", bucket=stack.bucket, cluster_prefix=f"{PREFIX}/clusters/{cluster['id']}"
    )
    # Every part arrived intact: the manifest's hashes match (read_backup checks them) and every item is there.
    assert len(stored.names("configmaps", namespace)) == 2000
