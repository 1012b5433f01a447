"""Restores into a second cluster (a second real kube-apiserver started here): CRDs and their custom resources,
namespace mapping, and PVs made again from EBS snapshots (EC2 CreateVolume in ministack, AUTH=true).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stowage.agent.volumes import Snapshotter
from stowage.domain.backups import BackupRequest, ClusterResourceMode
from stowage.domain.restores import RestorePhase, RestoreRequest
from tests.backups.helpers import job, populate, read_backup, run
from tests.restores.helpers import BUCKET, REGION, restore, restore_job, without_server_fields
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube, KubeApiserver, start_kube_apiserver

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiserver]:
    """A second cluster: its own etcd and apiserver."""
    server = start_kube_apiserver(Path(tmp_path_factory.mktemp("second-kube")))
    yield server
    server.stop()


@pytest.fixture
def s3(aws: AwsAccounts) -> Any:
    aws.create_bucket(BUCKET, region=REGION)
    return aws.client("s3", region=REGION)


def test_crds_and_volumes_from_snapshots_into_a_second_cluster(
    kube: Kube, s3: Any, aws: AwsAccounts, second: KubeApiserver
) -> None:
    objects = populate(kube)
    ec2 = aws.client("ec2", region=REGION)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=2, VolumeType="gp3")["VolumeId"]
    pv_csi, pv_tree = f"pv-csi-{uuid.uuid4().hex[:6]}", f"pv-tree-{uuid.uuid4().hex[:6]}"
    for name, source in (
        (pv_csi, {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume, "fsType": "ext4"}}),
        (pv_tree, {"awsElasticBlockStore": {"volumeID": f"aws://{REGION}a/{volume}", "fsType": "ext4"}}),
    ):
        kube.create(
            "/api/v1/persistentvolumes",
            {
                "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": f"{REGION}a"}},
                "spec": {
                    "capacity": {"storage": "2Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "claimRef": {"namespace": objects.a, "name": f"claim-{name}"},
                    **source,
                },
            },
        )
        kube.create(
            f"/api/v1/namespaces/{objects.a}/persistentvolumeclaims",
            {
                "metadata": {"name": f"claim-{name}"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "2Gi"}},
                    "volumeName": name,
                },
            },
        )
    backup = f"b-{uuid.uuid4().hex[:8]}"
    snapshotter = Snapshotter(ec2, region=REGION, backup_uid=str(uuid.uuid4()), location_name="primary")
    request = BackupRequest(namespaces=(objects.a,), include_all_disks=True)
    result = run(kube, s3, job(backup, request), snapshotter=snapshotter)
    # The fixture's own Delete-policy PV names a volume that does not exist: its snapshot fails.
    assert result.outcome.phase.value == "PartiallyFailed", result.outcome
    stored = read_backup(s3, backup)
    assert len(stored.volume_snapshots) == 2

    target = f"moved-{uuid.uuid4().hex[:6]}"
    api = second.api_client()
    try:
        plan_request = RestoreRequest(namespace_mapping={objects.a: target}, dry_run=True)
        preview = restore(api, s3, restore_job(backup, plan_request), ec2=ec2)
        assert preview.outcome.phase == RestorePhase.COMPLETED, preview.outcome
        codes = sorted(p["code"] for p in preview.outcome.problems)
        assert codes == ["csidriver-missing"], preview.outcome.problems  # no EBS CSI driver in the second cluster
        assert preview.action("Widget", target, "w1") == ("create", None)  # its CRD comes along
        assert preview.action("PersistentVolume", None, pv_csi) == ("create", None)

        done = restore(api, s3, restore_job(backup, RestoreRequest(namespace_mapping={objects.a: target})), ec2=ec2)
        assert done.outcome.phase == RestorePhase.COMPLETED, [i for i in done.items if i.action == "failed"]
        assert {k: v.action for k, v in done.by_key().items()} == {
            k: {"create": "created", "skip": "skipped"}[v.action] for k, v in preview.by_key().items()
        }
        with second.http() as http:
            widget = http.get(f"/apis/{objects.crd_group}/v1/namespaces/{target}/widgets/w1").json()
            assert widget["spec"] == {"size": 3, "colour": "blue"}
            crd = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{objects.crd_group}")
            assert crd.status_code == 200
            made: dict[str, str] = {}
            for name in (pv_csi, pv_tree):
                pv = http.get(f"/api/v1/persistentvolumes/{name}").json()
                assert pv["spec"]["claimRef"] == {"namespace": target, "name": f"claim-{name}"}
                handle = pv["spec"].get("csi", {}).get("volumeHandle") or pv["spec"]["awsElasticBlockStore"]["volumeID"]
                made[name] = handle.rsplit("/", 1)[-1]
                assert made[name] != volume and made[name].startswith("vol-")
                if name == pv_tree:
                    assert handle == f"aws://{REGION}a/{made[name]}"
                pvc = http.get(f"/api/v1/namespaces/{target}/persistentvolumeclaims/claim-{name}").json()
                assert pvc["spec"]["volumeName"] == name  # kept: the PV of the same name comes back
            for config in ("web-config", "db-config"):
                restored = http.get(f"/api/v1/namespaces/{target}/configmaps/{config}").json()
                original = kube.get(f"/api/v1/namespaces/{objects.a}/configmaps/{config}")
                assert without_server_fields(restored) == without_server_fields(original, target)
        described = ec2.describe_volumes(VolumeIds=list(made.values()))["Volumes"]
        for found in described:
            tags = {t["Key"]: t["Value"] for t in found["Tags"]}
            assert found["AvailabilityZone"] == f"{REGION}a" and found["SnapshotId"]
            assert tags["velero.io/restore"] == done_name(done) and tags["velero.io/pv"] in made

        # restorePVs false: the snapshot PVs are skipped; a destination in another region cannot use them.
        again = restore(
            api, s3, restore_job(backup, RestoreRequest(namespace_mapping={objects.a: target}, restore_pvs=False))
        )
        assert again.action("PersistentVolume", None, pv_csi)[0] == "skipped"
        elsewhere = RestoreRequest(namespace_mapping={objects.a: f"x-{target}"}, dry_run=True)
        other = restore(api, s3, restore_job(backup, elsewhere, region="us-west-2"), ec2=ec2)
        assert "snapshot-other-region" in {p["code"] for p in other.outcome.problems}
        assert other.action("PersistentVolume", None, pv_csi)[0] == "conflict"
    finally:
        api.close()


def done_name(result: Any) -> str:
    line: str = next(m for _, m in result.logs if m.startswith("Restoring backup"))
    return line.rsplit(" as ", 1)[1].rstrip(".")


def test_custom_resources_without_their_crd_are_conflicts(kube: Kube, s3: Any, second: KubeApiserver) -> None:
    objects = populate(kube)
    backup = f"b-{uuid.uuid4().hex[:8]}"
    assert run(kube, s3, job(backup, BackupRequest(namespaces=(objects.a,)))).outcome.phase.value == "Completed"
    target = f"nocrd-{uuid.uuid4().hex[:6]}"
    request = RestoreRequest(
        namespace_mapping={objects.a: target}, cluster_resource_mode=ClusterResourceMode.NEVER, dry_run=True
    )
    api = second.api_client()
    try:
        preview = restore(api, s3, restore_job(backup, request))
        assert [p["code"] for p in preview.outcome.problems] == ["crd-missing"]
        assert preview.action("Widget", target, "w1")[0] == "conflict"
        real = RestoreRequest(namespace_mapping={objects.a: target}, cluster_resource_mode=ClusterResourceMode.NEVER)
        done = restore(api, s3, restore_job(backup, real))
        assert done.outcome.phase == RestorePhase.PARTIALLY_FAILED
        action, reason = done.action("Widget", target, "w1")
        assert action == "failed" and "does not serve" in str(reason)
        assert (done.outcome.summary or {})["failed"] == 1
    finally:
        api.close()
