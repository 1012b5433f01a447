"""Velero's layout builders: paths, keys, velero-backup.json, label selectors, results and the manifest."""

from __future__ import annotations

import datetime as dt

from stowage.domain import velero
from stowage.domain.backups import BackupPhase, BackupRequest, ClusterResourceMode

T0 = dt.datetime(2026, 12, 5, 10, 0, 0, 123000, tzinfo=dt.UTC)


def test_item_paths_and_resource_list_names() -> None:
    assert velero.item_paths("configmaps", "v1", "shop", "web") == (
        "resources/configmaps/namespaces/shop/web.json",
        "resources/configmaps/v1-preferredversion/namespaces/shop/web.json",
    )
    assert velero.item_paths("storageclasses.storage.k8s.io", "v1", None, "gp3") == (
        "resources/storageclasses.storage.k8s.io/cluster/gp3.json",
        "resources/storageclasses.storage.k8s.io/v1-preferredversion/cluster/gp3.json",
    )
    assert velero.group_resource("deployments", "apps") == "deployments.apps"
    assert velero.group_resource("pods", "") == "pods"
    assert velero.resource_list_key(velero.api_version("apps", "v1"), "Deployment") == "apps/v1/Deployment"
    assert velero.resource_list_key(velero.api_version("", "v1"), "ConfigMap") == "v1/ConfigMap"
    assert velero.resource_list_entry("shop", "web") == "shop/web"
    assert velero.resource_list_entry(None, "gp3") == "gp3"


def test_object_keys_of_a_backup() -> None:
    objects = velero.BackupObjects.of("p/clusters/c1", "nightly")
    assert objects.key(objects.backup_json) == "p/clusters/c1/backups/nightly/velero-backup.json"
    assert objects.tarball == "nightly.tar.gz"
    assert objects.side_files == (
        "nightly-resource-list.json.gz",
        "nightly-results.gz",
        "nightly-logs.gz",
        "nightly-volumesnapshots.json.gz",
        "nightly-volumeinfo.json.gz",
    )
    assert objects.manifest == "nightly-stowage-manifest.json"
    assert velero.METADATA_VERSION_CONTENT == b"1.1.0\n"


def test_label_selector_object_as_parse_to_label_selector_makes_it() -> None:
    assert velero.label_selector_object(None) is None
    assert velero.label_selector_object("  ") is None
    assert velero.label_selector_object("app=web,tier==front") == {"matchLabels": {"app": "web", "tier": "front"}}
    assert velero.label_selector_object("env in (prod, staging),tier!=cache,!legacy,owner") == {
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "tier", "operator": "NotIn", "values": ["cache"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "owner", "operator": "Exists"},
        ]
    }
    selector = velero.label_selector_object("app=web,env notin (dev),!legacy")
    assert velero.selector_matches(selector, {"app": "web", "env": "prod"})
    assert not velero.selector_matches(selector, {"app": "web", "env": "dev"})
    assert not velero.selector_matches(selector, {"app": "web", "legacy": "1"})
    assert not velero.selector_matches(selector, {})
    assert velero.selector_matches(None, {})


def test_backup_document_fields() -> None:
    request = BackupRequest(
        namespaces=("shop",),
        excluded_resources=("secrets",),
        label_selector="app=web",
        cluster_resource_mode=ClusterResourceMode.NEVER,
        include_all_disks=True,
        duration_hours=48,
    )
    document = velero.backup_document(
        name="nightly",
        uid="u-1",
        request=request,
        location_name="primary",
        labels={"a": "b"},
        created_at=T0,
        expires_at=T0 + dt.timedelta(hours=48),
        status=velero.BackupStatus(
            phase=BackupPhase.PARTIALLY_FAILED,
            started_at=T0,
            completed_at=T0 + dt.timedelta(seconds=5),
            total_items=10,
            items_backed_up=9,
            warnings=1,
            errors=2,
            snapshots_attempted=2,
            snapshots_completed=1,
        ),
    )
    assert document["kind"] == "Backup" and document["apiVersion"] == "velero.io/v1"
    assert document["metadata"] == {
        "name": "nightly",
        "namespace": "velero",
        "uid": "u-1",
        "creationTimestamp": "2026-12-05T10:00:00Z",
        "labels": {"a": "b", "velero.io/storage-location": "primary"},
    }
    spec = document["spec"]
    assert spec["includedNamespaces"] == ["shop"] and "excludedNamespaces" not in spec
    assert spec["includedResources"] == ["*"] and spec["excludedResources"] == ["secrets"]
    assert spec["labelSelector"] == {"matchLabels": {"app": "web"}}
    assert spec["includeClusterResources"] is False and spec["snapshotVolumes"] is True
    assert spec["ttl"] == "48h0m0s" and spec["storageLocation"] == "primary"
    status = document["status"]
    assert status["formatVersion"] == "1.1.0" and status["phase"] == "PartiallyFailed"
    assert status["startTimestamp"] == "2026-12-05T10:00:00Z"
    assert status["completionTimestamp"] == "2026-12-05T10:00:05Z"
    assert status["expiration"] == "2026-12-07T10:00:00Z"
    assert status["progress"] == {"totalItems": 10, "itemsBackedUp": 9}
    assert (status["warnings"], status["errors"]) == (1, 2)
    assert (status["volumeSnapshotsAttempted"], status["volumeSnapshotsCompleted"]) == (2, 1)
    auto = velero.backup_document(
        name="n",
        uid="u",
        request=BackupRequest(),
        location_name="l",
        labels={},
        created_at=T0,
        expires_at=T0,
        status=velero.BackupStatus(BackupPhase.COMPLETED, T0, T0, 0, 0, 0, 0),
    )
    assert "includeClusterResources" not in auto["spec"] and "warnings" not in auto["status"]


def test_results_and_manifest_documents() -> None:
    warnings = [velero.ResultMessage("w1"), velero.ResultMessage("w2", namespace="shop")]
    errors = [velero.ResultMessage("e1", cluster=True)]
    assert velero.results_document(warnings, errors) == {
        "errors": {"cluster": ["e1"]},
        "warnings": {"velero": ["w1"], "namespaces": {"shop": ["w2"]}},
    }
    assert velero.manifest_document([velero.ManifestEntry("n.tar.gz", 3, "ab")]) == {
        "algorithm": "SHA-256",
        "objects": [{"key": "n.tar.gz", "size": 3, "sha256": "ab"}],
    }
    assert velero.go_duration(720) == "720h0m0s"
    assert velero.timestamp(dt.datetime(2026, 1, 2, 3, 4, 5, 999)) == "2026-01-02T03:04:05Z"
