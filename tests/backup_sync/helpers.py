"""A live stack (server, ministack bucket, STS role, location, cluster) and backups written the way Velero does.

``write_velero_backup`` builds a backup from Velero's documented layout (velero.io "Output file format" and
``pkg/persistence/object_store.go``): ``velero-backup.json``, ``<name>.tar.gz`` with ``metadata/version`` and
``resources/<resource>[.<group>]/{cluster|namespaces/<ns>}/<name>.json`` (plus the ``<version>-preferredversion``
copies), and the gzipped side files. It is written as the bucket's owner, not through Stowage.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.agents.helpers import register
from tests.support.aws_accounts import AwsAccounts
from tests.support.servers import StowageServer

REGION = "eu-west-1"
PREFIX = "team-a"
FAST = {"STOWAGE_SCHEDULER_TICK_SECONDS": "1", "STOWAGE_BACKUP_SYNC_INTERVAL_MINUTES": "0"}


@dataclass
class Live:
    """A server wired to ministack with a location on a real bucket (STS role) and one registered cluster."""

    server: StowageServer
    aws: AwsAccounts
    http: httpx.Client
    bucket: str
    location: dict[str, Any]
    cluster: dict[str, Any]

    @property
    def cluster_prefix(self) -> str:
        """Where the cluster's backups live in the bucket."""
        return f"{PREFIX}/clusters/{self.cluster['id']}"

    def url(self, *parts: str) -> str:
        """An API path under the cluster's backups."""
        return "/".join(["/api/v1/projects/default/clusters", self.cluster["name"], "backups", *parts])

    def owner_s3(self) -> Any:
        """The bucket owner's S3 client (not Stowage's)."""
        return self.aws.client("s3", region=REGION)

    def sync(self, client: httpx.Client | None = None) -> dict[str, Any]:
        """POST .../backups/sync and return the answer."""
        answer = (client or self.http).post(self.url("sync"))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def keys(self, name: str) -> list[str]:
        """Keys of one backup's folder (as the owner)."""
        return self.aws.object_keys(self.bucket, f"{self.cluster_prefix}/backups/{name}/")


def live_stack(
    aws: AwsAccounts,
    server_factory: Callable[..., StowageServer],
    *,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Live:
    """Start a server, make a bucket and an STS role with the project's External ID, add the location and a cluster."""
    extra = {**aws.control_plane_env(REGION), **FAST, **(env or {})}
    server = server_factory(database_url=database_url, extra_env=extra)
    http = server.client()
    external_id = http.get("/api/v1/projects/default").json()["externalId"]
    bucket = aws.create_bucket(f"sync-{uuid.uuid4().hex[:8]}", REGION)
    role = aws.create_role(f"r-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id, prefix=PREFIX)
    body = {
        "name": "primary",
        "bucket": bucket,
        "region": REGION,
        "prefix": PREFIX,
        "credentials": {"type": "sts", "roleArn": role},
        "skipValidation": True,
    }
    answer = http.post("/api/v1/projects/default/backup-locations", json=body)
    assert answer.status_code == 201, answer.text
    cluster = register(http, f"prod-{uuid.uuid4().hex[:4]}")
    return Live(server, aws, http, bucket, answer.json(), cluster)


def _gz(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def velero_tarball(namespace: str, configmaps: dict[str, dict[str, str]]) -> tuple[bytes, dict[str, list[str]]]:
    """A Velero tarball of one namespace with ConfigMaps, and its resource list."""
    files: dict[str, bytes] = {"metadata/version": b"1.1.0\n"}
    ns_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    body = json.dumps(ns_object).encode()
    files[f"resources/namespaces/cluster/{namespace}.json"] = body
    files[f"resources/namespaces/v1-preferredversion/cluster/{namespace}.json"] = body
    for name, data in configmaps.items():
        item = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
            "data": data,
        }
        body = json.dumps(item).encode()
        files[f"resources/configmaps/namespaces/{namespace}/{name}.json"] = body
        files[f"resources/configmaps/v1-preferredversion/namespaces/{namespace}/{name}.json"] = body
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(content))
    resources = {"v1/ConfigMap": sorted(f"{namespace}/{n}" for n in configmaps), "v1/Namespace": [namespace]}
    return buffer.getvalue(), resources


def velero_backup_document(
    name: str,
    *,
    namespace: str,
    phase: str = "Completed",
    started: dt.datetime,
    expiration: dt.datetime | None,
    ttl: str = "72h0m0s",
    items: int = 3,
    errors: int = 0,
) -> dict[str, Any]:
    """``velero-backup.json`` as Velero 1.13 writes it for ``velero backup create NAME --include-namespaces NS
    --include-resources configmaps,namespaces --selector app=web --include-cluster-resources=false --ttl 72h``."""
    status: dict[str, Any] = {
        "version": 1,
        "formatVersion": "1.1.0",
        "phase": phase,
        "startTimestamp": _time(started),
        "completionTimestamp": _time(started + dt.timedelta(seconds=12)),
        "progress": {"totalItems": items, "itemsBackedUp": items},
    }
    if expiration is not None:
        status["expiration"] = _time(expiration)
    if errors:
        status["errors"] = errors
    return {
        "kind": "Backup",
        "apiVersion": "velero.io/v1",
        "metadata": {
            "name": name,
            "namespace": "velero",
            "uid": str(uuid.uuid4()),
            "creationTimestamp": _time(started),
            "labels": {"velero.io/storage-location": "default"},
        },
        "spec": {
            "includedNamespaces": [namespace],
            "includedResources": ["configmaps", "namespaces"],
            "labelSelector": {"matchLabels": {"app": "web"}},
            "includeClusterResources": False,
            "ttl": ttl,
            "storageLocation": "default",
            "volumeSnapshotLocations": ["default"],
            "defaultVolumesToFsBackup": False,
            "hooks": {},
            "metadata": {},
        },
        "status": status,
    }


def write_velero_backup(
    live: Live,
    name: str,
    *,
    namespace: str = "shop",
    phase: str = "Completed",
    started: dt.datetime | None = None,
    expiration: dt.datetime | str | None = "default",
    finished: bool = True,
    results: dict[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Write a Velero backup into the cluster's prefix as the bucket owner; returns its resource list.

    ``finished=False`` leaves out ``velero-backup.json``, as a backup whose writer has not finished (or died)."""
    s3 = live.owner_s3()
    folder = f"{live.cluster_prefix}/backups/{name}"
    start = started or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    expires = start + dt.timedelta(hours=72) if expiration == "default" else expiration
    assert not isinstance(expires, str)
    tarball, resources = velero_tarball(namespace, {"web-config": {"a": "1"}, "db-config": {"b": "2"}})
    objects = {
        f"{name}.tar.gz": tarball,
        f"{name}-logs.gz": gzip.compress(b'time="2026-12-05T10:00:00Z" level=info msg="Backup completed"\n'),
        f"{name}-resource-list.json.gz": _gz(resources),
        f"{name}-results.gz": _gz(results or {"errors": {}, "warnings": {}}),
        f"{name}-volumesnapshots.json.gz": _gz(None),
        f"{name}-podvolumebackups.json.gz": _gz(None),
        f"{name}-csi-volumesnapshots.json.gz": _gz(None),
    }
    for relative, body in objects.items():
        s3.put_object(Bucket=live.bucket, Key=f"{folder}/{relative}", Body=body)
    if finished:
        document = velero_backup_document(name, namespace=namespace, phase=phase, started=start, expiration=expires)
        # Velero uploads velero-backup.json last (persistBackup): its presence marks the backup as complete.
        s3.put_object(Bucket=live.bucket, Key=f"{folder}/velero-backup.json", Body=json.dumps(document).encode())
    return resources


def add_manifest(live: Live, name: str) -> int:
    """Write Stowage's SHA-256 manifest over every object of a backup folder (as another Stowage would); returns
    how many objects it lists."""
    s3 = live.owner_s3()
    folder = f"{live.cluster_prefix}/backups/{name}"
    entries = []
    for key in sorted(live.keys(name)):
        body = s3.get_object(Bucket=live.bucket, Key=key)["Body"].read()
        entries.append({"key": key[len(folder) + 1 :], "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    manifest = {"algorithm": "SHA-256", "objects": entries}
    s3.put_object(Bucket=live.bucket, Key=f"{folder}/{name}-stowage-manifest.json", Body=json.dumps(manifest).encode())
    return len(entries)
