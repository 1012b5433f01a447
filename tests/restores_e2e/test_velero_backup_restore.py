"""A backup written by Velero (built by the test from Velero's documented layout, no Stowage manifest) is
synced from the bucket, listed, and restored through the API by the real agent process into a real
kube-apiserver, with ministack (AUTH=true) holding the bucket.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.backup_sync.helpers import write_velero_backup
from tests.support.kube import Kube
from tests.support.stack import PREFIX, REGION, Stack


@dataclass
class _Owner:
    """What ``write_velero_backup`` needs: the bucket, the cluster's prefix, and the owner's S3 client."""

    stack: Stack
    cluster_prefix: str

    @property
    def bucket(self) -> str:
        return self.stack.bucket

    def owner_s3(self) -> Any:
        return self.stack.aws.client("s3", region=REGION)


def test_a_velero_backup_is_synced_listed_and_restored(stack_factory: Callable[..., Stack], kube: Kube) -> None:
    stack = stack_factory()
    cluster = stack.cluster("from-velero")
    stack.start_agent(cluster, kube)
    source_namespace = f"velero-{uuid.uuid4().hex[:6]}"
    write_velero_backup(
        _Owner(stack, f"{PREFIX}/clusters/{cluster['id']}"), "nightly-velero", namespace=source_namespace
    )

    synced = stack.http.post("/api/v1/projects/default/clusters/from-velero/backups/sync")
    assert synced.status_code == 200, synced.text
    assert [b["backupName"] for b in synced.json()["imported"]] == ["nightly-velero"]
    listed = stack.http.get("/api/v1/projects/default/clusters/from-velero/backups").json()["items"]
    (backup,) = [b for b in listed if b["backupName"] == "nightly-velero"]
    assert backup["origin"] == "velero" and backup["phase"] == "Completed"

    target = f"restored-{uuid.uuid4().hex[:6]}"
    answer = stack.http.post(
        "/api/v1/projects/default/clusters/from-velero/backups/nightly-velero/restores",
        json={"namespaceMapping": {source_namespace: target}},
    )
    assert answer.status_code == 202, answer.text
    name = answer.json()["restoreName"]
    deadline = time.monotonic() + 120
    while True:
        restore = stack.http.get(f"/api/v1/projects/default/clusters/from-velero/restores/{name}").json()
        if restore["phase"] in ("Completed", "PartiallyFailed", "Failed"):
            break
        assert time.monotonic() < deadline, restore
        time.sleep(0.3)
    # No manifest (Velero writes none): restored with a warning, not refused.
    assert restore["phase"] == "Completed", restore
    assert any(p.get("code") == "no-manifest" for p in restore["problems"]), restore["problems"]
    configmaps = kube.http.get(f"/api/v1/namespaces/{target}/configmaps").json()["items"]
    data = {c["metadata"]["name"]: c.get("data") for c in configmaps if c["metadata"]["name"] != "kube-root-ca.crt"}
    assert data == {"web-config": {"a": "1"}, "db-config": {"b": "2"}}
