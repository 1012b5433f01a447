"""The pure rules of sync and verification: reading velero-backup.json back, and comparing with a manifest."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from stowage.domain.backup_sync import (
    ORIGIN_SYNC,
    ORIGIN_VELERO,
    NotImportable,
    StoredObject,
    hash_problem,
    listing_problems,
    no_manifest,
    parse_go_duration,
    parse_manifest,
    read_backup_document,
    request_of,
    result_messages,
    selector_string,
    snapshot_records,
)
from stowage.domain.backups import BackupPhase, BackupRequest, ClusterResourceMode
from stowage.domain.velero import BackupStatus, backup_document, encode_json, label_selector_object

T0 = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)


def _document(**status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Backup",
        "apiVersion": "velero.io/v1",
        "metadata": {"name": "b1", "creationTimestamp": "2026-12-05T10:00:00Z"},
        "spec": {},
        "status": {"phase": "Completed", "startTimestamp": "2026-12-05T10:00:00Z", **status},
    }
    return body


@pytest.mark.parametrize(
    "selector",
    ["app=web", "app=web,tier=db", "env in (prod,staging)", "env notin (dev)", "legacy", "!legacy", "a=b,!c,d in (e)"],
)
def test_selectors_survive_the_round_trip_through_velero(selector: str) -> None:
    again = selector_string(label_selector_object(selector))
    assert again is not None
    assert label_selector_object(again) == label_selector_object(selector)


def test_go_durations() -> None:
    assert parse_go_duration("720h0m0s") == 720 * 3600
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("90m0.5s") == 5400.5
    assert parse_go_duration("0") == 0
    for bad in ("", "72", "h", "1d", "1h garbage", None, 5):
        assert parse_go_duration(bad) is None, bad


def test_what_stowage_writes_reads_back_as_the_same_request_and_times() -> None:
    request = BackupRequest(
        namespaces=("a", "b"),
        excluded_namespaces=("c",),
        included_resources=("configmaps", "deployments.apps"),
        excluded_resources=("secrets",),
        label_selector="app=web,tier in (a,b)",
        cluster_resource_mode=ClusterResourceMode.NEVER,
        include_all_disks=True,
        duration_hours=48,
    )
    status = BackupStatus(
        phase=BackupPhase.PARTIALLY_FAILED,
        started_at=T0,
        completed_at=T0 + dt.timedelta(minutes=2),
        total_items=10,
        items_backed_up=9,
        warnings=1,
        errors=1,
    )
    document = backup_document(
        name="b1", uid="u-1", request=request, location_name="primary", labels={"velero.io/schedule-name": "nightly"},
        created_at=T0, expires_at=T0 + dt.timedelta(hours=48), status=status,
    )  # fmt: skip
    found = read_backup_document(encode_json(document), "b1")
    assert found.request == request
    assert found.phase is BackupPhase.PARTIALLY_FAILED
    assert (found.created_at, found.started_at) == (T0, T0)
    assert found.completed_at == T0 + dt.timedelta(minutes=2)
    assert found.expires_at == T0 + dt.timedelta(hours=48)
    assert (found.total_items, found.items_backed_up, found.uid, found.schedule_name) == (10, 9, "u-1", "nightly")


def test_velero_semantics_of_the_spec() -> None:
    assert request_of({"includedNamespaces": ["*"], "includedResources": ["*"]}, has_snapshots=False) == BackupRequest()
    assert request_of({"includeClusterResources": True}, has_snapshots=False).cluster_resource_mode.value == "Always"
    assert request_of({}, has_snapshots=False).cluster_resource_mode.value == "Auto"
    # snapshotVolumes unset means "when a snapshot location exists": the snapshots in the bucket tell.
    assert request_of({}, has_snapshots=True).include_all_disks
    assert not request_of({"snapshotVolumes": False}, has_snapshots=False).include_all_disks


def test_no_expiration_means_the_default_duration_from_the_start() -> None:
    found = read_backup_document(json.dumps(_document()).encode(), "b1", default_hours=720)
    assert found.expires_at == T0 + dt.timedelta(hours=720)


@pytest.mark.parametrize(
    ("raw", "folder", "reason"),
    [
        (b"{", "b1", "not JSON"),
        (b"[]", "b1", "not a Velero Backup object"),
        (json.dumps({**_document(), "kind": "Restore"}).encode(), "b1", "not a Velero Backup object"),
        (json.dumps(_document()).encode(), "b2", "names backup 'b1', but its folder is 'b2'"),
        (json.dumps(_document(phase="InProgress")).encode(), "b1", "unfinished: status.phase is 'InProgress'"),
        (json.dumps(_document(phase="WaitingForPluginOperations")).encode(), "b1", "unfinished"),
        (json.dumps(_document(phase="")).encode(), "b1", "unfinished: status.phase is 'empty'"),
        (json.dumps(_document()).encode(), "Not_A_Name", "not a valid backup name"),
    ],
)
def test_what_is_not_imported_says_why(raw: bytes, folder: str, reason: str) -> None:
    with pytest.raises(NotImportable, match=reason):
        read_backup_document(raw, folder)


def test_results_and_snapshots_side_files() -> None:
    warnings, errors = result_messages(
        {"warnings": {"velero": ["v"], "cluster": ["c"], "namespaces": {"shop": ["n1", "n2"]}}, "errors": {}}
    )
    assert [(m.message, m.namespace) for m in warnings] == [("v", None), ("c", None), ("n1", "shop"), ("n2", "shop")]
    assert errors == [] and result_messages(None) == ([], [])
    records = snapshot_records(
        [
            {"spec": {"PersistentVolumeName": "pv-1", "providerVolumeID": "vol-1", "volumeAZ": "eu-west-1a"},
             "status": {"providerSnapshotID": "snap-1", "phase": "Completed"}},
            {"spec": {"persistentVolumeName": "pv-2"}, "status": {"providerSnapshotID": "snap-2"}},
            {"spec": {"persistentVolumeName": "pv-3"}, "status": {"phase": "Failed"}},
            "junk",
        ],
        "eu-west-1",
    )  # fmt: skip
    assert [(r.pv_name, r.snapshot_id, r.availability_zone) for r in records] == [
        ("pv-1", "snap-1", "eu-west-1a"),
        ("pv-2", "snap-2", None),
    ]
    assert snapshot_records(None, "eu-west-1") == []


def test_listing_and_hash_problems() -> None:
    digest = "a" * 64
    manifest = {"b1.tar.gz": (10, digest), "b1-logs.gz": (5, digest), "velero-backup.json": (3, digest)}
    listed = [
        StoredObject("b1.tar.gz", 10),
        StoredObject("b1-logs.gz", 6),
        StoredObject("b1-stowage-manifest.json", 100),
        StoredObject("extra.bin", 1),
    ]
    to_hash, problems = listing_problems(manifest, listed, "b1")
    assert to_hash == ["b1.tar.gz"]
    assert [(p.key, p.problem, p.expected_size, p.actual_size) for p in problems] == [
        ("b1-logs.gz", "size mismatch", 5, 6),
        ("velero-backup.json", "missing", 3, None),
        ("extra.bin", "extra", None, 1),
    ]
    assert hash_problem("b1.tar.gz", (10, digest), (10, digest)) is None
    changed = hash_problem("b1.tar.gz", (10, digest), (10, "b" * 64))
    assert changed is not None and changed.problem == "hash mismatch" and changed.actual_sha256 == "b" * 64
    gone = hash_problem("b1.tar.gz", (10, digest), None)
    assert gone is not None and gone.problem == "missing"


def test_manifests_and_their_absence() -> None:
    good = {"algorithm": "SHA-256", "objects": [{"key": "k", "size": 1, "sha256": "0" * 64}]}
    assert parse_manifest(json.dumps(good).encode()) == {"k": (1, "0" * 64)}
    for bad in ({"algorithm": "MD5", "objects": []}, {"algorithm": "SHA-256"}, {**good, "objects": [{"key": "k"}]}):
        with pytest.raises(ValueError):
            parse_manifest(json.dumps(bad).encode())
    velero = no_manifest("b1", ORIGIN_VELERO)
    assert not velero.ok and velero.problems[0].message == "no manifest: written by Velero; integrity cannot be checked"
    lost = no_manifest("b1", ORIGIN_SYNC)
    assert not lost.ok and "missing from the bucket" in lost.problems[0].message
