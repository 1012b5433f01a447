"""Shared set-up and checks of the engine tests: objects in a real apiserver, a backup read back from S3."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from stowage.agent.backup_engine import BackupJob, run_backup
from stowage.domain.backups import BackupOutcome, BackupRequest, backup_prefix
from tests.support.kube import Kube

BUCKET = "stowage-engine"
CLUSTER_PREFIX = "team/clusters/c-1"
T0 = dt.datetime(2026, 12, 5, 10, 0, 0, tzinfo=dt.UTC)


@dataclass
class Fixture:
    """Objects created for one test: two namespaces and what is in them."""

    a: str
    b: str
    crd_group: str
    pv_bound: str  # bound to a PVC of namespace a (PVC spec.volumeName)
    pv_claimed: str  # claimRef to a PVC of namespace b
    pv_free: str  # no claim


def crd_body(group: str) -> dict[str, Any]:
    """A namespaced CRD ``widgets.<group>`` with one served version."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def _create_widget(kube: Kube, group: str, namespace: str, name: str, labels: dict[str, str]) -> None:
    body = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": 3, "colour": "blue"},
    }
    path = f"/apis/{group}/v1/namespaces/{namespace}/widgets"
    deadline = time.monotonic() + 30
    while True:  # the CRD's endpoint appears once it is Established
        answer = kube.http.post(path, json=body)
        if answer.status_code < 300:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"POST {path}: {answer.status_code} {answer.text}")
        time.sleep(0.1)


def populate(kube: Kube) -> Fixture:
    """ConfigMaps, Secrets, a Deployment, a Service, a CRD with Widgets, PVCs and EBS PVs in two namespaces."""
    a = kube.namespace("a", labels={"team": "shop"})
    b = kube.namespace("b")
    group = f"g{uuid.uuid4().hex[:8]}.example.com"
    kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd_body(group))
    for ns in (a, b):
        kube.create(
            f"/api/v1/namespaces/{ns}/configmaps",
            {"metadata": {"name": "web-config", "labels": {"app": "web"}}, "data": {"index.html": "<h1>hi & bye</h1>"}},
        )
        kube.create(
            f"/api/v1/namespaces/{ns}/configmaps",
            {"metadata": {"name": "db-config", "labels": {"app": "db"}}, "data": {"x": "ünïcødé"}},
        )
        kube.create(
            f"/api/v1/namespaces/{ns}/configmaps",
            {"metadata": {"name": "skipped", "labels": {"velero.io/exclude-from-backup": "true"}}, "data": {}},
        )
        kube.create(
            f"/api/v1/namespaces/{ns}/secrets",
            {"metadata": {"name": "creds", "labels": {"app": "web"}}, "type": "Opaque", "data": {"k": "c2VjcmV0"}},
        )
        kube.create(
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            {
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
                    },
                },
            },
        )
        kube.create(
            f"/api/v1/namespaces/{ns}/services",
            {
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
        _create_widget(kube, group, ns, "w1", {"app": "web"})
    suffix = uuid.uuid4().hex[:6]
    pv_bound, pv_claimed, pv_free = f"pv-bound-{suffix}", f"pv-claimed-{suffix}", f"pv-free-{suffix}"
    kube.create(
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": pv_bound, "labels": {"topology.kubernetes.io/zone": "eu-west-1a"}},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0123456789abcdef0", "fsType": "ext4"},
            },
        },
    )
    kube.create(
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": pv_claimed, "labels": {"app": "web"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "awsElasticBlockStore": {"volumeID": "aws://eu-west-1b/vol-0fedcba9876543210", "fsType": "ext4"},
                "claimRef": {"namespace": b, "name": "data"},
            },
        },
    )
    kube.create(
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": pv_free},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp"}},
        },
    )
    kube.create(
        f"/api/v1/namespaces/{a}/persistentvolumeclaims",
        {
            "metadata": {"name": "data", "labels": {"app": "web"}},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}},
                "volumeName": pv_bound,
            },
        },
    )
    kube.create(
        f"/api/v1/namespaces/{b}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    return Fixture(a, b, group, pv_bound, pv_claimed, pv_free)


def job(name: str, request: BackupRequest, *, labels: dict[str, str] | None = None) -> BackupJob:
    """A job writing into the test bucket under the test cluster's prefix."""
    return BackupJob(
        backup_name=name,
        backup_uid=str(uuid.uuid4()),
        cluster_prefix=CLUSTER_PREFIX,
        bucket=BUCKET,
        location_name="primary",
        request=request,
        created_at=T0,
        expires_at=T0 + dt.timedelta(hours=request.duration_hours),
        labels=labels or {"stowage.io/cluster": "c-1"},
    )


@dataclass
class Run:
    """A finished backup run: its outcome and what the callbacks saw."""

    outcome: BackupOutcome
    progress: list[tuple[int, int]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)


def run(kube: Kube, s3: Any, backup: BackupJob, **kwargs: Any) -> Run:
    """Run the engine with recording callbacks."""
    progress: list[tuple[int, int]] = []
    logs: list[tuple[str, str]] = []
    kwargs.setdefault("snapshotter", None)
    kwargs.setdefault("cancelled", lambda: False)
    outcome = run_backup(
        backup,
        api=kube.api,
        s3=s3,
        progress=lambda done, total: progress.append((done, total)),
        log=lambda level, message: logs.append((level, message)),
        **kwargs,
    )
    return Run(outcome, progress, logs)


@dataclass
class Stored:
    """A backup read back from the bucket."""

    keys: set[str]
    backup: dict[str, Any]
    manifest: dict[str, Any]
    members: list[tarfile.TarInfo]
    files: dict[str, bytes]
    resource_list: dict[str, list[str]]
    results: dict[str, Any]
    volume_snapshots: Any
    volume_info: Any
    logs: str

    def items(self) -> dict[str, dict[str, Any]]:
        """Plain item paths (not the preferred-version copies) and their parsed JSON."""
        return {
            path: json.loads(data)
            for path, data in self.files.items()
            if path.startswith("resources/") and "-preferredversion/" not in path
        }

    def names(self, group_resource: str, namespace: str | None = None) -> set[str]:
        """Names of the stored items of one resource (in one namespace, or cluster-scoped)."""
        scope = f"namespaces/{namespace}" if namespace else "cluster"
        prefix = f"resources/{group_resource}/{scope}/"
        return {p[len(prefix) : -5] for p in self.files if p.startswith(prefix)}


def read_backup(s3: Any, name: str, *, bucket: str = BUCKET, cluster_prefix: str = CLUSTER_PREFIX) -> Stored:
    """Download every object of a backup and check the manifest against them."""
    folder = backup_prefix(cluster_prefix, name)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder + "/")
    keys = {obj["Key"][len(folder) + 1 :] for page in pages for obj in page.get("Contents", [])}

    def get(relative: str) -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=f"{folder}/{relative}")["Body"].read())

    manifest = json.loads(get(f"{name}-stowage-manifest.json"))
    assert manifest["algorithm"] == "SHA-256"
    assert {o["key"] for o in manifest["objects"]} == keys - {f"{name}-stowage-manifest.json"}
    for entry in manifest["objects"]:
        body = get(entry["key"])
        assert len(body) == entry["size"], entry["key"]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["key"]
    tarball = get(f"{name}.tar.gz")
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            handle = archive.extractfile(member)
            assert handle is not None, member.name
            files[member.name] = handle.read()
    return Stored(
        keys=keys,
        backup=json.loads(get("velero-backup.json")),
        manifest=manifest,
        members=members,
        files=files,
        resource_list=json.loads(gzip.decompress(get(f"{name}-resource-list.json.gz"))),
        results=json.loads(gzip.decompress(get(f"{name}-results.gz"))),
        volume_snapshots=json.loads(gzip.decompress(get(f"{name}-volumesnapshots.json.gz"))),
        volume_info=json.loads(gzip.decompress(get(f"{name}-volumeinfo.json.gz"))),
        logs=gzip.decompress(get(f"{name}-logs.gz")).decode(),
    )


def api_path(stored: Stored, plain: str) -> str:
    """The URL path to GET the object stored at ``plain``."""
    parts = plain.split("/")
    group_resource = parts[1]
    resource, _, group = group_resource.partition(".")
    rest = parts[2:]
    version = next(
        p.split("/")[2].removesuffix("-preferredversion")
        for p in stored.files
        if p.startswith(f"resources/{group_resource}/") and p.split("/")[2].endswith("-preferredversion")
    )
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    name = rest[-1].removesuffix(".json")
    if rest[0] == "namespaces":
        return f"{base}/namespaces/{rest[1]}/{resource}/{name}"
    return f"{base}/{resource}/{name}"


def check_layout(stored: Stored, name: str) -> None:
    """Keys, tar members, preferred-version copies and the resource list agree with Velero's layout."""
    assert stored.keys == {
        "velero-backup.json",
        f"{name}.tar.gz",
        f"{name}-resource-list.json.gz",
        f"{name}-results.gz",
        f"{name}-logs.gz",
        f"{name}-volumesnapshots.json.gz",
        f"{name}-volumeinfo.json.gz",
        f"{name}-stowage-manifest.json",
    }
    assert all(m.isreg() for m in stored.members)
    assert stored.files["metadata/version"] == b"1.1.0\n"
    items = stored.items()
    listed: set[tuple[str, str]] = set()
    for plain, obj in items.items():
        parts = plain.split("/")
        copy_dir = [p for p in stored.files if p.startswith(f"resources/{parts[1]}/") and "-preferredversion/" in p]
        version = copy_dir[0].split("/")[2].removesuffix("-preferredversion")
        preferred = "/".join([*parts[:2], f"{version}-preferredversion", *parts[2:]])
        assert stored.files[preferred] == stored.files[plain], plain
        meta = obj["metadata"]
        entry = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        listed.add((f"{obj['apiVersion']}/{obj['kind']}", entry))
        assert obj["apiVersion"].endswith(version)
    from_list = {(key, entry) for key, entries in stored.resource_list.items() for entry in entries}
    assert from_list == listed
    for entries in stored.resource_list.values():
        assert entries == sorted(entries), [(a, b) for a, b in zip(entries, sorted(entries)) if a != b][:3]


def check_items_equal_get(kube: Kube, stored: Stored, namespaces: set[str], cluster_names: set[str]) -> int:
    """Every stored item of the given namespaces and cluster-scoped names equals ``GET`` of it; returns the count."""
    checked = 0
    for plain, obj in stored.items().items():
        meta = obj["metadata"]
        if meta.get("namespace") in namespaces or (not meta.get("namespace") and meta["name"] in cluster_names):
            assert obj == kube.get(api_path(stored, plain)), plain
            checked += 1
    return checked
