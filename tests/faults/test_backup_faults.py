"""Backups under 10 % injected faults: the real agent process, the real apiserver, S3 and EC2 behind the proxy.

The agent's S3 and EC2 calls (brokered credentials: it never calls STS) cross the fault proxy, which answers
10 % of them with 500s, throttling, resets (mid-request, or after the endpoint already acted) or delays. Every
backup must complete with every object intact: the manifest's SHA-256 of each object matches (``read_backup``),
every ConfigMap is in the tarball and equals ``GET`` of it, and the EBS snapshot exists with Velero's tags.
The retries are botocore's standard mode from ``stowage.aws.clients.DATA_CONFIG``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from tests.backups.helpers import check_items_equal_get, read_backup
from tests.faults.conftest import PREFIX, REGION, FaultStack, many_configmaps
from tests.support.faults import FaultProxy
from tests.support.kube import Kube

CONFIGMAPS = 300
BACKUPS = 8


def test_backups_complete_intact_under_ten_percent_faults(fault_stack: Callable[..., FaultStack], kube: Kube) -> None:
    # Heartbeats every 2 s: the agent picks each backup up quickly.
    stack = fault_stack(STOWAGE_AGENT_HEARTBEAT_SECONDS="2")
    namespace = many_configmaps(kube, CONFIGMAPS, size=20_000)  # about 6 MB: two 5 MiB parts
    # A real EBS volume behind a PVC of the namespace: includeAllDisks snapshots it through the proxy too.
    ec2 = stack.aws.client("ec2", region=REGION)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    pv = f"pv-faults-{uuid.uuid4().hex[:6]}"
    kube.create(
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": pv, "labels": {"topology.kubernetes.io/zone": f"{REGION}a"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume, "fsType": "ext4"},
            },
        },
    )
    kube.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv},
        },
    )
    cluster = stack.cluster("faulty")
    cluster_prefix = f"{PREFIX}/clusters/{cluster['id']}"
    lost = 0
    snapshots: list[str] = []
    with FaultProxy(stack.aws.endpoint, rate=0.10, seed=2024, services=("s3", "ec2"), cycle_kinds=True) as proxy:
        stack.start_agent(cluster, kube.kubeconfig, aws_endpoint=proxy.url)
        for i in range(BACKUPS):
            name = f"faulty-{i}"
            stack.backup("faulty", {"backupName": name, "namespaces": [namespace], "includeAllDisks": True})
            done = stack.wait("faulty", name, {"Completed", "PartiallyFailed", "Failed"})
            assert done["phase"] == "Completed", (done["failureReason"], done.get("errors"), stack.agent_log()[-3000:])
            assert done["progress"]["itemsBackedUp"] == done["progress"]["totalItems"] > CONFIGMAPS
            stored = read_backup(stack.owner_s3(), name, bucket=stack.bucket, cluster_prefix=cluster_prefix)
            lost += CONFIGMAPS - len(stored.names("configmaps", namespace))
            assert check_items_equal_get(kube, stored, {namespace}, {pv}) > CONFIGMAPS
            snapshot = next(
                s["status"]["providerSnapshotID"] for s in stored.volume_snapshots if volume in json.dumps(s)
            )
            snapshots.append(snapshot)
        stats = proxy.snapshot()
    found = ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [volume]}])["Snapshots"]
    recorded = {s["SnapshotId"] for s in found}
    orphans = len(recorded - set(snapshots))
    print(
        f"\n{BACKUPS} backups of {CONFIGMAPS} ConfigMaps + 1 EBS snapshot each at 10 % faults: {stats.summary()}; "
        f"faults by service {dict(stats.faults_by_service)}; objects lost {lost}; extra snapshots left by "
        f"retried CreateSnapshot calls {orphans}"
    )
    assert stats.injected >= 5 and stats.retries > 0
    assert not stats.unrecovered_calls
    assert lost == 0
    assert set(snapshots) <= recorded
    for snapshot in found:
        if snapshot["SnapshotId"] in snapshots:
            tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
            assert tags["velero.io/pv"] == pv and tags["velero.io/backup"].startswith("faulty-")
