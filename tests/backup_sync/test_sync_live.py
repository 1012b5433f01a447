"""Backup sync and verification against a real server and ministack (``AUTH=true``) with a real STS location.

Backups are written into a cluster's prefix by the bucket's owner, never through Stowage: one built from Velero's
documented layout, one by Stowage's own engine (``run_backup``) against the real kube-apiserver. Sync must import
finished ones with their origin, phase, expiry and request, skip unfinished ones, and never import twice, also
with two servers on one PostgreSQL database syncing at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from stowage.agent.backup_engine import BackupJob, run_backup
from stowage.domain.backup_sync import NO_MANIFEST_VELERO
from stowage.domain.backups import BackupRequest
from stowage.store.database import Database
from stowage.store.tables import Backup
from tests.backup_sync.helpers import REGION, live_stack, write_velero_backup
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube
from tests.support.servers import StowageServer


def _names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(i["backupName"] for i in items)


def test_a_velero_backup_is_imported_listed_and_read_and_unfinished_ones_never(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer]
) -> None:
    live = live_stack(aws, server_factory)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    resources = write_velero_backup(live, "velero-nightly", started=started)
    write_velero_backup(
        live,
        "velero-no-expiry",
        phase="PartiallyFailed",
        started=started,
        expiration=None,
        results={"errors": {"namespaces": {"shop": ["error restoring x"]}}, "warnings": {"velero": ["slow"]}},
    )
    write_velero_backup(live, "half-done", finished=False)
    write_velero_backup(live, "still-running", phase="InProgress")
    write_velero_backup(live, "long-gone", started=started - dt.timedelta(days=10))

    first = live.sync()
    assert _names(first["imported"]) == ["velero-nightly", "velero-no-expiry"]
    assert first["known"] == 0 and first["failedLocations"] == []
    skipped = {s["name"]: s["reason"] for s in first["skipped"]}
    assert set(skipped) == {"half-done", "still-running", "long-gone"}
    assert "no velero-backup.json" in skipped["half-done"] and "never imported" in skipped["half-done"]
    assert "InProgress" in skipped["still-running"]
    assert "expired" in skipped["long-gone"]

    backup = live.http.get(live.url("velero-nightly")).json()
    assert backup["origin"] == "velero"
    assert backup["phase"] == "Completed"
    assert dt.datetime.fromisoformat(backup["expirationTime"]) == started + dt.timedelta(hours=72)
    assert dt.datetime.fromisoformat(backup["startTime"]) == started
    assert backup["namespaces"] == ["shop"]
    assert backup["includedResources"] == ["configmaps", "namespaces"]
    assert backup["labelSelector"] == "app=web"
    assert backup["includeClusterResourceMode"] == "Never"
    assert backup["durationInHours"] == 72
    assert backup["progress"] == {"totalItems": 3, "itemsBackedUp": 3}
    assert backup["backupLocationName"] == "primary"
    assert backup["storagePrefix"] == f"{live.cluster_prefix}/backups/velero-nightly"
    assert backup["sizeBytes"] > 0

    other = live.http.get(live.url("velero-no-expiry")).json()
    assert other["phase"] == "PartiallyFailed"
    # No status.expiration: the default duration (720 h) from its start.
    assert dt.datetime.fromisoformat(other["expirationTime"]) == started + dt.timedelta(hours=720)
    assert (other["warnings"], other["errors"]) == (1, 1)

    listed = live.http.get(live.url()).json()
    assert _names(listed["items"]) == ["velero-nightly", "velero-no-expiry"]
    contents = live.http.get(live.url("velero-nightly", "contents")).json()
    assert contents["resources"] == resources and contents["totalItems"] == 3
    logs = live.http.get(live.url("velero-nightly", "logs")).json()
    assert logs == {"lines": [], "nextAfter": 0, "finished": True}

    again = live.sync()
    assert again["imported"] == [] and again["known"] == 2
    assert {s["name"] for s in again["skipped"]} == {"half-done", "still-running", "long-gone"}
    assert live.http.get(live.url()).json()["total"] == 2

    verified = live.http.post(live.url("velero-nightly", "verify"))
    assert verified.status_code == 200, verified.text
    assert verified.json() == {
        "ok": False,
        "checkedObjects": 0,
        "problems": [
            {
                "key": "velero-nightly-stowage-manifest.json",
                "problem": "no manifest",
                "message": NO_MANIFEST_VELERO,
                "expectedSha256": None,
                "actualSha256": None,
                "expectedSize": None,
                "actualSize": None,
            }
        ],
    }

    # Deleting a synced backup removes its objects like any other; the unfinished folder is left alone.
    assert live.keys("velero-nightly")
    assert live.http.delete(live.url("velero-nightly")).status_code == 202
    deadline = time.monotonic() + 30
    while live.http.get(live.url("velero-nightly")).status_code != 404:
        assert time.monotonic() < deadline, live.http.get(live.url("velero-nightly")).json()
        time.sleep(0.3)
    assert live.keys("velero-nightly") == []
    assert live.keys("half-done")
    # Once gone from the bucket, a sync does not bring it back.
    assert _names(live.sync()["imported"]) == []


def test_a_stowage_backup_whose_record_was_lost_comes_back_as_synced_and_verifies(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer], kube: Kube
) -> None:
    live = live_stack(aws, server_factory)
    namespace = kube.namespace("sync")
    for i in range(3):
        kube.create(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": {"i": "x"}})
    created = live.http.post(live.url(), json={"backupName": "app-1", "namespaces": [namespace]})
    assert created.status_code == 202, created.text
    # Stowage's own engine writes the backup into the cluster's prefix (the owner's client stands in for the agent's).
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    job = BackupJob(
        backup_name="app-1",
        backup_uid=created.json()["id"],
        cluster_prefix=live.cluster_prefix,
        bucket=live.bucket,
        location_name="primary",
        request=BackupRequest(namespaces=(namespace,), duration_hours=48),
        created_at=now,
        expires_at=now + dt.timedelta(hours=48),
        labels={"stowage.io/cluster": live.cluster["name"]},
    )
    outcome = run_backup(
        job,
        api=kube.api,
        s3=live.owner_s3(),
        snapshotter=None,
        progress=lambda done, total: None,
        log=lambda level, message: None,
        cancelled=lambda: False,
    )
    assert outcome.phase.value == "Completed", outcome
    # The record is lost (another control plane, a restored database, ...): the bucket still has the backup.
    db = Database(f"sqlite:///{live.server.data_dir / 'stowage.db'}")
    try:
        with db.session() as session:
            session.query(Backup).filter(Backup.name == "app-1").delete()
    finally:
        db.dispose()
    assert live.http.get(live.url("app-1")).status_code == 404

    synced = live.sync()
    assert _names(synced["imported"]) == ["app-1"]
    backup = live.http.get(live.url("app-1")).json()
    assert backup["origin"] == "sync"
    assert backup["phase"] == "Completed"
    assert backup["namespaces"] == [namespace]
    assert backup["includeClusterResourceMode"] == "Auto"
    assert backup["durationInHours"] == 48
    assert dt.datetime.fromisoformat(backup["expirationTime"]) == now + dt.timedelta(hours=48)
    contents = live.http.get(live.url("app-1", "contents")).json()
    assert contents["resources"]["v1/ConfigMap"] == [f"{namespace}/cm-{i}" for i in range(3)]

    good = live.http.post(live.url("app-1", "verify")).json()
    assert good == {"ok": True, "checkedObjects": 7, "problems": []}

    s3 = live.owner_s3()
    folder = f"{live.cluster_prefix}/backups/app-1"
    tarball = s3.get_object(Bucket=live.bucket, Key=f"{folder}/app-1.tar.gz")["Body"].read()
    tampered = bytes([tarball[0] ^ 0xFF]) + tarball[1:]  # same size, other bytes
    s3.put_object(Bucket=live.bucket, Key=f"{folder}/app-1.tar.gz", Body=tampered)
    s3.delete_object(Bucket=live.bucket, Key=f"{folder}/app-1-logs.gz")
    s3.put_object(Bucket=live.bucket, Key=f"{folder}/stray.txt", Body=b"not ours")
    resource_list = s3.get_object(Bucket=live.bucket, Key=f"{folder}/app-1-resource-list.json.gz")["Body"].read()
    s3.put_object(Bucket=live.bucket, Key=f"{folder}/app-1-resource-list.json.gz", Body=resource_list + b"\0")

    bad = live.http.post(live.url("app-1", "verify")).json()
    assert bad["ok"] is False and bad["checkedObjects"] == 7
    problems = {p["key"]: p for p in bad["problems"]}
    assert set(problems) == {"app-1.tar.gz", "app-1-logs.gz", "stray.txt", "app-1-resource-list.json.gz"}
    hashed = problems["app-1.tar.gz"]
    assert hashed["problem"] == "hash mismatch"
    assert hashed["actualSize"] == hashed["expectedSize"] == len(tarball)
    assert hashed["expectedSha256"] != hashed["actualSha256"]
    assert hashed["actualSha256"] == hashlib.sha256(tampered).hexdigest()
    assert hashed["expectedSha256"] == hashlib.sha256(tarball).hexdigest()
    assert problems["app-1-logs.gz"]["problem"] == "missing" and problems["app-1-logs.gz"]["actualSize"] is None
    assert problems["stray.txt"]["problem"] == "extra" and problems["stray.txt"]["actualSize"] == 8
    sized = problems["app-1-resource-list.json.gz"]
    assert sized["problem"] == "size mismatch"
    assert (sized["expectedSize"], sized["actualSize"]) == (len(resource_list), len(resource_list) + 1)


def test_the_periodic_sync_imports_without_being_asked(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer]
) -> None:
    live = live_stack(aws, server_factory, env={"STOWAGE_BACKUP_SYNC_INTERVAL_MINUTES": "0.02"})
    write_velero_backup(live, "found-by-the-tick")
    deadline = time.monotonic() + 40
    while True:
        items = live.http.get(live.url()).json()["items"]
        if items:
            break
        assert time.monotonic() < deadline, "the periodic sync did not import the backup"
        time.sleep(0.5)
    assert _names(items) == ["found-by-the-tick"] and items[0]["origin"] == "velero"


def test_two_servers_on_postgresql_syncing_at_once_import_each_backup_once(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer], pg_url: str
) -> None:
    live = live_stack(aws, server_factory, database_url=pg_url)
    second = server_factory(
        database_url=pg_url,
        extra_env={**aws.control_plane_env(REGION), "STOWAGE_ADMIN_TOKEN": live.server.admin_token},
    )
    names = [f"v-{i}-{uuid.uuid4().hex[:4]}" for i in range(6)]
    for name in names:
        write_velero_backup(live, name)
    answers: list[dict[str, Any]] = []
    problems: list[BaseException] = []
    start = threading.Barrier(4)

    def sync(server: StowageServer) -> None:
        try:
            with server.client(token=live.server.admin_token) as client:
                start.wait()
                answers.append(live.sync(client))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            problems.append(exc)

    threads = [threading.Thread(target=sync, args=(s,)) for s in (live.server, second, live.server, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not problems, problems
    imported = [b["backupName"] for a in answers for b in a["imported"]]
    assert sorted(imported) == sorted(names), imported
    assert all(a["known"] + len(a["imported"]) == len(names) for a in answers), answers
    assert live.http.get(live.url(), params={"limit": 50}).json()["total"] == len(names)


def test_sync_and_verify_refusals(aws: AwsAccounts, server_factory: Callable[..., StowageServer]) -> None:
    live = live_stack(aws, server_factory)
    created = live.http.post(live.url(), json={"backupName": "waiting"})
    assert created.status_code == 202
    early = live.http.post(live.url("waiting", "verify"))
    assert early.status_code == 409 and "only a Completed or PartiallyFailed" in early.json()["message"]
    assert live.http.post(live.url("nope", "verify")).status_code == 404
    answer = live.http.post("/api/v1/projects/default/clusters/nope/backups/sync")
    assert answer.status_code == 404 and "No cluster 'nope'" in answer.json()["message"]
    # A location whose bucket cannot be read is reported, not a 500.
    broken = {
        "name": "broken",
        "bucket": f"missing-{uuid.uuid4().hex[:8]}",
        "region": REGION,
        "credentials": {"type": "sts", "roleArn": live.location["credentials"]["roleArn"]},
        "skipValidation": True,
    }
    assert live.http.post("/api/v1/projects/default/backup-locations", json=broken).status_code == 201
    result = live.sync()
    assert [f["locationName"] for f in result["failedLocations"]] == ["broken"]
    assert result["failedLocations"][0]["reason"]
    # Viewers may verify but not sync.
    viewer = live.http.post("/api/v1/tokens", json={"name": "v", "role": "viewer"})
    assert viewer.status_code == 201, viewer.text
    with live.server.client(token=viewer.json()["token"]) as client:
        refused = client.post(live.url("sync"))
        assert refused.status_code == 403, refused.text
