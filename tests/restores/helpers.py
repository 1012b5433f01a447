"""Shared set-up of the restore engine tests: a backup taken with the real backup engine, a restore run recorded."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from stowage.agent.restore_engine import RestoreJob, run_restore
from stowage.domain.backups import backup_prefix
from stowage.domain.restores import ItemResult, RestoreOutcome, RestoreRequest
from tests.backups.helpers import BUCKET as BACKUP_BUCKET
from tests.backups.helpers import CLUSTER_PREFIX

BUCKET = BACKUP_BUCKET  # the backup engine helpers write there
REGION = "eu-west-1"
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")
RESTORE_LABELS = ("velero.io/backup-name", "velero.io/restore-name")


def restore_job(backup: str, request: RestoreRequest, *, region: str = REGION, name: str | None = None) -> RestoreJob:
    """A restore of a backup of the test cluster prefix, with its own folder."""
    name = name or f"r-{uuid.uuid4().hex[:8]}"
    return RestoreJob(
        restore_name=name,
        restore_uid=str(uuid.uuid4()),
        backup_name=backup,
        backup_prefix=backup_prefix(CLUSTER_PREFIX, backup),
        restore_prefix=f"{CLUSTER_PREFIX}/restores/{name}",
        bucket=BUCKET,
        request=request,
        region=region,
    )


@dataclass
class Restored:
    """A finished restore run: its outcome and what the callbacks saw."""

    outcome: RestoreOutcome
    items: list[ItemResult] = field(default_factory=list)
    progress: list[tuple[int, int]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)

    def by_key(self) -> dict[tuple[str, str | None, str], ItemResult]:
        """Items by (kind, namespace, name)."""
        return {(i.kind, i.namespace, i.name): i for i in self.items}

    def action(self, kind: str, namespace: str | None, name: str) -> tuple[str, str | None]:
        item = self.by_key()[(kind, namespace, name)]
        return item.action, item.reason


def restore(api: Any, s3: Any, job: RestoreJob, *, ec2: Any = None, **kwargs: Any) -> Restored:
    """Run the restore engine with recording callbacks."""
    result = Restored(outcome=None)  # type: ignore[arg-type]
    result.outcome = run_restore(
        job,
        api=api,
        s3=s3,
        ec2=ec2,
        progress=lambda done, total: result.progress.append((done, total)),
        log=lambda level, message: result.logs.append((level, message)),
        items=result.items.extend,
        cancelled=kwargs.pop("cancelled", lambda: False),
        **kwargs,
    )
    return result


def without_server_fields(obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """An object minus what the apiserver populates and Velero's restore labels (optionally moved to a namespace)."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    for key in SERVER_METADATA:
        meta.pop(key, None)
    labels = meta.get("labels") or {}
    for key in RESTORE_LABELS:
        labels.pop(key, None)
    if "labels" in meta and not labels:
        meta.pop("labels")
    out.pop("status", None)
    if namespace is not None:
        meta["namespace"] = namespace
    if out.get("kind") == "Service":
        out["spec"].pop("clusterIP", None)
        out["spec"].pop("clusterIPs", None)
        for port in out["spec"].get("ports") or ():
            port.pop("nodePort", None)
    return out
