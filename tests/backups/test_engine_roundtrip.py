"""The backup engine on a real kube-apiserver and a real S3 (ministack, AUTH=true): filters, modes, layout.

Every stored item of the test's own namespaces (and its own cluster-scoped objects) is compared with ``GET``
of the object in JSON terms. The apiserver is shared by the session, so cluster-wide backups also hold other
tests' objects; those are checked for layout only.
"""

from __future__ import annotations

from typing import Any

import pytest

from stowage.agent.volumes import SnapshotFailed, SnapshotResult
from stowage.domain.backups import BackupPhase, BackupRequest, ClusterResourceMode, VolumeSnapshotRecord
from tests.backups.helpers import (
    BUCKET,
    Fixture,
    check_items_equal_get,
    check_layout,
    job,
    populate,
    read_backup,
    run,
)
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def s3(aws: AwsAccounts) -> Any:
    """The bucket owner's S3 client with a fresh bucket."""
    aws.create_bucket(BUCKET, region="us-east-1")
    return aws.client("s3", region="us-east-1")


@pytest.fixture
def objects(kube: Kube) -> Fixture:
    """Objects of several kinds in two fresh namespaces."""
    return populate(kube)


def own(objects: Fixture) -> set[str]:
    return {objects.pv_bound, objects.pv_claimed, objects.pv_free, f"widgets.{objects.crd_group}", objects.a, objects.b}


def test_everything_auto_backs_up_all_namespaces_and_cluster_resources(kube: Kube, s3: Any, objects: Fixture) -> None:
    result = run(kube, s3, job("everything", BackupRequest()))
    assert result.outcome.phase == BackupPhase.COMPLETED, result.outcome
    stored = read_backup(s3, "everything")
    check_layout(stored, "everything")
    for ns in (objects.a, objects.b):
        assert stored.names("configmaps", ns) == {"web-config", "db-config"}  # the excluded-label one is not
        assert stored.names("secrets", ns) == {"creds"}
        assert stored.names("deployments.apps", ns) == {"web"}
        assert stored.names("services", ns) == {"web"}
        assert stored.names(f"widgets.{objects.crd_group}", ns) == {"w1"}
        assert stored.names("persistentvolumeclaims", ns) == {"data"}
    assert {objects.pv_bound, objects.pv_claimed, objects.pv_free} <= stored.names("persistentvolumes")
    assert f"widgets.{objects.crd_group}" in stored.names("customresourcedefinitions.apiextensions.k8s.io")
    assert {objects.a, objects.b} <= stored.names("namespaces")
    assert stored.names("priorityclasses.scheduling.k8s.io")  # every cluster-scoped resource
    # Velero's defaults: events once (core), never events.k8s.io as well.
    assert not [p for p in stored.files if p.startswith("resources/events.events.k8s.io/")]
    assert check_items_equal_get(kube, stored, {objects.a, objects.b}, own(objects)) == 2 * 7 + 3 + 1 + 2

    backup = stored.backup
    assert backup["kind"] == "Backup" and backup["apiVersion"] == "velero.io/v1"
    assert backup["metadata"]["namespace"] == "velero" and backup["metadata"]["name"] == "everything"
    assert backup["metadata"]["labels"] == {"stowage.io/cluster": "c-1", "velero.io/storage-location": "primary"}
    assert backup["metadata"]["creationTimestamp"] == "2026-12-05T10:00:00Z"
    assert backup["spec"]["includedNamespaces"] == ["*"] and "includeClusterResources" not in backup["spec"]
    assert backup["spec"]["ttl"] == "720h0m0s" and backup["spec"]["storageLocation"] == "primary"
    status = backup["status"]
    assert status["formatVersion"] == "1.1.0" and status["phase"] == "Completed"
    assert status["expiration"] == "2027-01-04T10:00:00Z"
    items = len(stored.items())
    assert status["progress"] == {"totalItems": items, "itemsBackedUp": items}
    assert result.outcome.items_backed_up == items and result.outcome.total_items == items
    assert result.outcome.size_bytes == sum(o["size"] for o in stored.manifest["objects"])
    assert result.progress[-1] == (items, items)
    assert stored.volume_snapshots is None and stored.volume_info == []
    assert stored.results == {"errors": {}, "warnings": {}}
    assert "Starting backup everything" in stored.logs


def test_namespace_filter_in_auto_mode_takes_only_related_cluster_resources(
    kube: Kube, s3: Any, objects: Fixture
) -> None:
    request = BackupRequest(namespaces=(objects.a,))
    result = run(kube, s3, job("only-a", request))
    assert result.outcome.phase == BackupPhase.COMPLETED, result.outcome
    stored = read_backup(s3, "only-a")
    check_layout(stored, "only-a")
    namespaces = {p.split("/")[3] for p in stored.files if p.split("/")[2:3] == ["namespaces"]}
    assert namespaces == {objects.a}
    # The PV bound to a's PVC and the CRD of a's widgets; nothing else cluster-scoped but a's Namespace.
    assert stored.names("persistentvolumes") == {objects.pv_bound}
    assert stored.names("customresourcedefinitions.apiextensions.k8s.io") == {f"widgets.{objects.crd_group}"}
    assert stored.names("namespaces") == {objects.a}
    cluster_dirs = {p.split("/")[1] for p in stored.files if "/cluster/" in p}
    assert cluster_dirs == {"persistentvolumes", "customresourcedefinitions.apiextensions.k8s.io", "namespaces"}
    assert check_items_equal_get(kube, stored, {objects.a}, own(objects)) == 7 + 3
    assert stored.backup["spec"]["includedNamespaces"] == [objects.a]


def test_claim_ref_relates_a_pv_to_a_pvc(kube: Kube, s3: Any, objects: Fixture) -> None:
    result = run(kube, s3, job("only-b", BackupRequest(namespaces=(objects.b,))))
    assert result.outcome.phase == BackupPhase.COMPLETED
    stored = read_backup(s3, "only-b")
    assert stored.names("persistentvolumes") == {objects.pv_claimed}


def test_exclusions_and_never_mode(kube: Kube, s3: Any, objects: Fixture) -> None:
    request = BackupRequest(
        namespaces=(objects.a, objects.b),
        excluded_namespaces=(objects.b,),
        excluded_resources=("secrets", "deployments.apps"),
        cluster_resource_mode=ClusterResourceMode.NEVER,
    )
    result = run(kube, s3, job("never", request))
    assert result.outcome.phase == BackupPhase.COMPLETED
    stored = read_backup(s3, "never")
    check_layout(stored, "never")
    assert not stored.names("secrets", objects.a) and not stored.names("deployments.apps", objects.a)
    assert stored.names("configmaps", objects.a) == {"web-config", "db-config"}
    assert not [p for p in stored.files if f"/namespaces/{objects.b}/" in p]
    # Only the Namespace objects of backed-up namespaces are cluster-scoped (Velero always keeps them).
    assert {p.split("/")[1] for p in stored.files if "/cluster/" in p} == {"namespaces"}
    assert stored.names("namespaces") == {objects.a}
    assert stored.backup["spec"]["includeClusterResources"] is False
    assert stored.backup["spec"]["excludedNamespaces"] == [objects.b]
    assert stored.backup["spec"]["excludedResources"] == ["secrets", "deployments.apps"]
    check_items_equal_get(kube, stored, {objects.a}, own(objects))


def test_included_resources_label_selector_and_always(kube: Kube, s3: Any, objects: Fixture) -> None:
    request = BackupRequest(
        namespaces=(objects.a, objects.b),
        included_resources=("configmaps", f"widgets.{objects.crd_group}", "persistentvolumes"),
        label_selector="app in (web)",
        cluster_resource_mode=ClusterResourceMode.ALWAYS,
    )
    result = run(kube, s3, job("selected", request))
    assert result.outcome.phase == BackupPhase.COMPLETED
    stored = read_backup(s3, "selected")
    check_layout(stored, "selected")
    for ns in (objects.a, objects.b):
        assert stored.names("configmaps", ns) == {"web-config"}
        assert stored.names(f"widgets.{objects.crd_group}", ns) == {"w1"}
        assert not stored.names("secrets", ns) and not stored.names("services", ns)
    # Always: every PV the selector matches, related or not; no other cluster resource was included.
    assert objects.pv_claimed in stored.names("persistentvolumes")
    assert objects.pv_bound not in stored.names("persistentvolumes")
    assert {p.split("/")[1] for p in stored.files if "/cluster/" in p} == {"persistentvolumes", "namespaces"}
    # Namespaces holding backed-up items come along even when their labels do not match the selector.
    assert stored.names("namespaces") == {objects.a, objects.b}
    assert stored.backup["spec"]["labelSelector"] == {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]
    }
    assert stored.backup["spec"]["includeClusterResources"] is True
    check_items_equal_get(kube, stored, {objects.a, objects.b}, own(objects))


def test_missing_namespace_is_a_warning(kube: Kube, s3: Any, objects: Fixture) -> None:
    result = run(kube, s3, job("missing", BackupRequest(namespaces=(objects.a, "no-such-ns"))))
    assert result.outcome.phase == BackupPhase.COMPLETED
    assert any("no-such-ns" in w.message for w in result.outcome.warnings)
    stored = read_backup(s3, "missing")
    assert stored.results["warnings"]["namespaces"]["no-such-ns"]


class FakeSnapshotter:
    """Snapshots the CSI PV, fails the in-tree one (as stowage.agent.volumes would on a denied call)."""

    def __init__(self, fail: str) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def snapshot(self, pv: Any, *, backup_name: str, labels: Any) -> SnapshotResult | None:
        name = pv["metadata"]["name"]
        self.calls.append(name)
        spec = pv["spec"]
        if "csi" not in spec and "awsElasticBlockStore" not in spec:
            return None
        if name == self.fail:
            raise SnapshotFailed(
                f"PV {name}: ec2:CreateSnapshot was denied. Add ec2:CreateSnapshot to the role's permission policy.",
                pv_name=name,
            )
        record = VolumeSnapshotRecord(
            name, "snap-0123456789abcdef0", spec["csi"]["volumeHandle"], "eu-west-1a", "eu-west-1"
        )
        return SnapshotResult(
            record=record,
            velero_snapshot={
                "spec": {"PersistentVolumeName": name},
                "status": {"providerSnapshotID": record.snapshot_id},
            },
            volume_info={"pvName": name, "backupMethod": "NativeSnapshot"},
        )


def test_disks_are_snapshotted_and_a_failed_snapshot_is_partially_failed(kube: Kube, s3: Any, objects: Fixture) -> None:
    snapshotter = FakeSnapshotter(fail=objects.pv_claimed)
    request = BackupRequest(namespaces=(objects.a, objects.b), include_all_disks=True)
    result = run(kube, s3, job("disks", request), snapshotter=snapshotter)
    outcome = result.outcome
    assert sorted(snapshotter.calls) == sorted([objects.pv_bound, objects.pv_claimed])  # the related PVs only
    assert outcome.phase == BackupPhase.PARTIALLY_FAILED
    assert [s.pv_name for s in outcome.snapshots] == [objects.pv_bound]
    assert len(outcome.errors) == 1 and objects.pv_claimed in outcome.errors[0].message
    stored = read_backup(s3, "disks")
    check_layout(stored, "disks")
    assert stored.volume_snapshots == [
        {"spec": {"PersistentVolumeName": objects.pv_bound}, "status": {"providerSnapshotID": "snap-0123456789abcdef0"}}
    ]
    assert stored.volume_info == [{"pvName": objects.pv_bound, "backupMethod": "NativeSnapshot"}]
    status = stored.backup["status"]
    assert status["phase"] == "PartiallyFailed" and status["errors"] == 1
    assert status["volumeSnapshotsAttempted"] == 2 and status["volumeSnapshotsCompleted"] == 1
    assert stored.backup["spec"]["snapshotVolumes"] is True
    assert objects.pv_claimed in stored.results["errors"]["cluster"][0]
