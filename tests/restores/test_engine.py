"""The restore engine on a real kube-apiserver and a real S3 (ministack, AUTH=true).

Backups are taken with the real backup engine, then restored. The test apiserver has no controller-manager, so
a deleted namespace stays Terminating forever: restores go into new namespaces (namespaceMapping) instead of
deleting the originals, and Terminating namespaces are easy to make on purpose.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from typing import Any

import pytest

from stowage.domain.backups import BackupRequest, ClusterResourceMode, backup_prefix
from stowage.domain.restores import ExistingResourcePolicy, RestorePhase, RestoreRequest
from tests.backups.helpers import CLUSTER_PREFIX, Fixture, job, populate, read_backup, run
from tests.restores.helpers import BUCKET, REGION, restore, restore_job, without_server_fields
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube

pytestmark = pytest.mark.timeout(300)
PLAN_TO_RESULT = {"create": "created", "update": "updated", "skip": "skipped", "conflict": "failed"}


@pytest.fixture
def s3(aws: AwsAccounts) -> Any:
    aws.create_bucket(BUCKET, region=REGION)
    return aws.client("s3", region=REGION)


def backup_of(kube: Kube, s3: Any, objects: Fixture, **request: Any) -> str:
    """Back up the fixture's two namespaces (plus extras the restore tests add) and return the backup's name."""
    name = f"b-{uuid.uuid4().hex[:8]}"
    request.setdefault("namespaces", (objects.a, objects.b))
    result = run(kube, s3, job(name, BackupRequest(**request)))
    assert result.outcome.phase.value == "Completed", result.outcome
    return name


def extras(kube: Kube, namespace: str) -> None:
    """Objects whose restore changes them: a NodePort Service, a RoleBinding to a ServiceAccount, a token Secret."""
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "robot"}})
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "robot-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
        },
    )
    kube.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "edge"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 81, "targetPort": 8080}]},
        },
    )
    kube.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "metadata": {"name": "robot-token-abcde", "annotations": {"kubernetes.io/service-account.name": "robot"}},
            "type": "kubernetes.io/service-account-token",
            "data": {"token": "dG9rZW4="},
        },
    )


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_round_trip_into_new_namespaces(kube: Kube, s3: Any) -> None:
    objects = populate(kube)
    extras(kube, objects.a)
    name = backup_of(kube, s3, objects)
    stored = read_backup(s3, name)
    a2, b2 = fresh("a2"), fresh("b2")
    kube.namespaces.extend([a2, b2])
    request = RestoreRequest(namespace_mapping={objects.a: a2, objects.b: b2})
    result = restore(kube.api, s3, restore_job(name, request))
    outcome = result.outcome
    assert outcome.phase == RestorePhase.COMPLETED, (outcome, [i for i in result.items if i.action == "failed"])

    # Every namespaced item equals the backed-up one minus server fields, in its new namespace.
    mapping = {objects.a: a2, objects.b: b2}
    checked = 0
    for path, obj in stored.items().items():
        source_ns = obj["metadata"].get("namespace")
        if source_ns not in mapping or (obj["kind"] in ("Secret",) and obj.get("type", "").endswith("token")):
            continue
        target = mapping[source_ns]
        api_path = path_of(obj, target)
        restored = kube.get(api_path)
        assert restored["metadata"]["labels"]["velero.io/restore-name"] == result_name(result)
        expected = without_server_fields(obj, target)
        if obj["kind"] == "PersistentVolumeClaim" and obj["spec"].get("volumeName") == objects.pv_bound:
            # Its PV has reclaim policy Delete and no snapshot: the claim is provisioned again, as Velero does.
            expected["spec"].pop("volumeName")
        if obj["kind"] == "RoleBinding":
            expected["subjects"][0]["namespace"] = target
        assert without_server_fields(restored) == expected, path
        checked += 1
    assert checked == 2 * 7 + 3  # 7 kinds per namespace (CM x2, Secret, Deployment, Service, Widget, PVC) + extras
    # The NodePort was assigned anew (not preserved), the token Secret left to the destination.
    edge = kube.get(f"/api/v1/namespaces/{a2}/services/edge")
    assert edge["spec"]["ports"][0]["nodePort"]
    assert result.action("Secret", a2, "robot-token-abcde")[0] == "skipped"
    # Cluster-scoped: the related PVs and the CRD (Auto with a namespace filter); they exist already here.
    assert result.action("CustomResourceDefinition", None, f"widgets.{objects.crd_group}") == (
        "skipped",
        "exists, same",
    )
    action, reason = result.action("PersistentVolume", None, objects.pv_bound)
    assert action == "skipped" and "reclaim policy Delete" in str(reason)
    # claimRef moves with the mapping, so the existing PV differs from the restored one.
    assert result.action("PersistentVolume", None, objects.pv_claimed) == ("skipped", "exists, different")
    assert outcome.summary == {"created": outcome.items_restored, "skipped": 4}
    assert outcome.total_items == len(result.items) == outcome.items_restored + 4
    assert result.progress[-1] == (outcome.items_restored, outcome.total_items)

    # Velero's restore files in the restore's own folder.
    folder = f"{CLUSTER_PREFIX}/restores/{result_name(result)}"
    listing = json.loads(gzip.decompress(get(s3, f"{folder}/restore-{result_name(result)}-resource-list.json.gz")))
    assert f"{a2}/web-config(created)" in listing["v1/ConfigMap"]
    assert f"{objects.pv_claimed}(skipped)" in listing["v1/PersistentVolume"]
    results = json.loads(gzip.decompress(get(s3, f"{folder}/restore-{result_name(result)}-results.gz")))
    assert results["errors"] == {} and results["warnings"]["cluster"]
    logs = gzip.decompress(get(s3, f"{folder}/restore-{result_name(result)}-logs.gz")).decode()
    assert "Restore done" in logs


def result_name(result: Any) -> str:
    line: str = next(m for _, m in result.logs if m.startswith("Restoring backup"))
    return line.rsplit(" as ", 1)[1].rstrip(".")


def get(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def path_of(obj: dict[str, Any], namespace: str | None) -> str:
    """The URL path of an object (plural names of the kinds used here)."""
    plural = {
        "ConfigMap": "configmaps",
        "Secret": "secrets",
        "Deployment": "deployments",
        "Service": "services",
        "Widget": "widgets",
        "PersistentVolumeClaim": "persistentvolumeclaims",
        "ServiceAccount": "serviceaccounts",
        "RoleBinding": "rolebindings",
    }[obj["kind"]]
    api_version = obj["apiVersion"]
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}/{obj['metadata']['name']}"


def test_preview_plan_matches_the_restore_item_by_item(kube: Kube, s3: Any) -> None:
    objects = populate(kube)
    extras(kube, objects.a)
    name = backup_of(kube, s3, objects)
    a2, b2 = fresh("a2"), kube.namespace("b2")
    kube.namespaces.append(a2)
    # In b2 already: one object as in the backup, one different, one that the update policy cannot change.
    kube.create(
        f"/api/v1/namespaces/{b2}/configmaps",
        {"metadata": {"name": "web-config", "labels": {"app": "web"}}, "data": {"index.html": "<h1>hi & bye</h1>"}},
    )
    kube.create(f"/api/v1/namespaces/{b2}/configmaps", {"metadata": {"name": "db-config"}, "data": {"x": "old"}})
    kube.create(
        f"/api/v1/namespaces/{b2}/secrets",
        {"metadata": {"name": "creds"}, "type": "kubernetes.io/basic-auth", "data": {"username": "dQ=="}},
    )
    for policy in (ExistingResourcePolicy.NONE, ExistingResourcePolicy.UPDATE):
        request = RestoreRequest(
            namespace_mapping={objects.a: a2, objects.b: b2}, existing_resource_policy=policy, dry_run=True
        )
        preview = restore(kube.api, s3, restore_job(name, request))
        assert preview.outcome.phase == RestorePhase.COMPLETED, preview.outcome
        assert preview.outcome.items_restored == 0
        if policy == ExistingResourcePolicy.NONE:
            assert kube.http.get(f"/api/v1/namespaces/{a2}").status_code == 404  # nothing written
            assert preview.action("ConfigMap", a2, "web-config") == ("create", None)
        else:  # the first round's restore made a2
            assert preview.action("ConfigMap", a2, "web-config") == ("skip", "exists, same")
        assert kube.get(f"/api/v1/namespaces/{b2}/configmaps/db-config")["data"] == {"x": "old"}
        plan = preview.by_key()
        assert preview.action("ConfigMap", b2, "web-config") == ("skip", "exists, same")
        if policy == ExistingResourcePolicy.NONE:
            assert preview.action("ConfigMap", b2, "db-config") == ("skip", "exists, different")
            assert preview.action("Secret", b2, "creds") == ("skip", "exists, different")
        else:
            assert preview.action("ConfigMap", b2, "db-config") == ("update", "exists, different")
            action, reason = preview.action("Secret", b2, "creds")
            assert action == "conflict" and "immutable" in str(reason), reason
        # The real restore does what the preview said, item by item.
        real = restore(kube.api, s3, restore_job(name, RestoreRequest(**{**_fields(request), "dry_run": False})))
        done = real.by_key()
        assert done.keys() == plan.keys()
        for key, planned in plan.items():
            expected = PLAN_TO_RESULT[planned.action]
            assert (done[key].action, done[key].reason is None) == (expected, planned.reason is None), (key, planned)
        if policy == ExistingResourcePolicy.NONE:
            assert kube.get(f"/api/v1/namespaces/{b2}/configmaps/db-config")["data"] == {"x": "old"}
        else:
            assert kube.get(f"/api/v1/namespaces/{b2}/configmaps/db-config")["data"] == {"x": "ünïcødé"}
            assert real.outcome.phase == RestorePhase.PARTIALLY_FAILED
            assert "immutable" in str(real.action("Secret", b2, "creds")[1])


def _fields(request: RestoreRequest) -> dict[str, Any]:
    return {f: getattr(request, f) for f in request.__slots__}


def test_existing_objects_in_place_under_both_policies(kube: Kube, s3: Any) -> None:
    objects = populate(kube)
    name = backup_of(kube, s3, objects, namespaces=(objects.a,))
    kube.http.patch(
        f"/api/v1/namespaces/{objects.a}/configmaps/web-config",
        json={"data": {"index.html": "changed"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    skip = restore(kube.api, s3, restore_job(name, RestoreRequest(include_namespaces=(objects.a,))))
    assert skip.outcome.phase == RestorePhase.COMPLETED
    assert skip.action("ConfigMap", objects.a, "web-config") == ("skipped", "exists, different")
    assert skip.action("ConfigMap", objects.a, "db-config") == ("skipped", "exists, same")
    assert skip.action("Namespace", None, objects.a) == ("skipped", "exists, same")
    assert skip.outcome.items_restored == 0
    update = RestoreRequest(include_namespaces=(objects.a,), existing_resource_policy=ExistingResourcePolicy.UPDATE)
    done = restore(kube.api, s3, restore_job(name, update))
    assert done.action("ConfigMap", objects.a, "web-config") == ("updated", "exists, different")
    assert kube.get(f"/api/v1/namespaces/{objects.a}/configmaps/web-config")["data"] == {
        "index.html": "<h1>hi & bye</h1>"
    }
    assert done.action("Deployment", objects.a, "web") == ("skipped", "exists, same")


def test_tampered_tarball_is_refused(kube: Kube, s3: Any) -> None:
    objects = populate(kube)
    name = backup_of(kube, s3, objects, namespaces=(objects.a,))
    key = f"{backup_prefix(CLUSTER_PREFIX, name)}/{name}.tar.gz"
    original = get(s3, key)
    s3.put_object(Bucket=BUCKET, Key=key, Body=original[:-10] + b"0123456789")
    target = fresh("t")
    kube.namespaces.append(target)
    result = restore(kube.api, s3, restore_job(name, RestoreRequest(namespace_mapping={objects.a: target})))
    assert result.outcome.phase == RestorePhase.FAILED
    reason = str(result.outcome.failure_reason)
    import hashlib

    assert key in reason and hashlib.sha256(original).hexdigest() in reason
    assert hashlib.sha256(original[:-10] + b"0123456789").hexdigest() in reason and "Restore an older backup" in reason
    assert result.items == [] and kube.http.get(f"/api/v1/namespaces/{target}").status_code == 404


def velero_tarball(namespace: str) -> bytes:
    """A tarball as Velero 1.x writes it (with the preferred-version copies)."""
    entries = {
        "metadata/version": b"1.1.0\n",
        f"resources/namespaces/cluster/{namespace}.json": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"from": "velero"}, "uid": "u-1", "resourceVersion": "9"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
        f"resources/configmaps/namespaces/{namespace}/settings.json": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace, "uid": "u-2", "resourceVersion": "10"},
            "data": {"mode": "velero"},
        },
        f"resources/deployments.apps/namespaces/{namespace}/api.json": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": namespace, "generation": 3},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "a", "image": "x"}]},
                },
            },
            "status": {"replicas": 1},
        },
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for path, value in list(entries.items()):
            paths = [path]
            parts = path.split("/")
            if parts[0] == "resources":
                version = "v1"
                paths.append("/".join([*parts[:2], f"{version}-preferredversion", *parts[2:]]))
            for member in paths:
                data = value if isinstance(value, bytes) else json.dumps(value).encode()
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_backup_in_veleros_layout_without_manifest_restores(kube: Kube, s3: Any) -> None:
    source = fresh("velero")
    name = f"velero-{uuid.uuid4().hex[:6]}"
    folder = backup_prefix(CLUSTER_PREFIX, name)
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/{name}.tar.gz", Body=velero_tarball(source))
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/{name}-volumesnapshots.json.gz", Body=gzip.compress(b"null"))
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{folder}/velero-backup.json",
        Body=json.dumps({"kind": "Backup", "apiVersion": "velero.io/v1", "metadata": {"name": name}}).encode(),
    )
    target = fresh("from-velero")
    kube.namespaces.append(target)
    result = restore(kube.api, s3, restore_job(name, RestoreRequest(namespace_mapping={source: target})))
    assert result.outcome.phase == RestorePhase.COMPLETED, result.outcome
    assert [p["code"] for p in result.outcome.problems] == ["no-manifest"]
    assert any(level == "warning" and "no Stowage manifest" in m for level, m in result.logs)
    assert result.outcome.summary == {"created": 3}
    assert kube.get(f"/api/v1/namespaces/{target}/configmaps/settings")["data"] == {"mode": "velero"}
    assert kube.get(f"/api/v1/namespaces/{target}")["metadata"]["labels"]["from"] == "velero"
    assert kube.get(f"/apis/apps/v1/namespaces/{target}/deployments/api")["spec"]["replicas"] == 1


def test_a_terminating_namespace_is_found_once_and_its_items_fail(kube: Kube, s3: Any) -> None:
    objects = populate(kube)
    name = backup_of(kube, s3, objects, namespaces=(objects.a,), cluster_resource_mode=ClusterResourceMode.NEVER)
    dying = kube.namespace("dying")
    kube.create(f"/api/v1/namespaces/{dying}/configmaps", {"metadata": {"name": "keep"}})
    assert kube.http.delete(f"/api/v1/namespaces/{dying}").status_code == 200  # stays Terminating here
    request = RestoreRequest(namespace_mapping={objects.a: dying})
    preview = restore(
        kube.api, s3, restore_job(name, RestoreRequest(namespace_mapping={objects.a: dying}, dry_run=True))
    )
    assert [p["code"] for p in preview.outcome.problems] == ["namespace-terminating"]
    assert {i.action for i in preview.items} == {"conflict"}
    real = restore(kube.api, s3, restore_job(name, request))
    assert real.outcome.phase == RestorePhase.PARTIALLY_FAILED
    assert {i.action for i in real.items} == {"failed"} and len({i.reason for i in real.items}) == 1
    assert "Terminating" in str(real.items[0].reason)
    assert sum("Terminating in the destination" in m for _, m in real.logs) == 1


def test_preserved_node_ports_clash(kube: Kube, s3: Any) -> None:
    objects = populate(kube)
    extras(kube, objects.a)
    name = backup_of(kube, s3, objects, namespaces=(objects.a,), cluster_resource_mode=ClusterResourceMode.NEVER)
    port = kube.get(f"/api/v1/namespaces/{objects.a}/services/edge")["spec"]["ports"][0]["nodePort"]
    target = fresh("np")
    kube.namespaces.append(target)
    request = RestoreRequest(namespace_mapping={objects.a: target}, preserve_node_ports=True, dry_run=True)
    preview = restore(kube.api, s3, restore_job(name, request))
    assert [p["code"] for p in preview.outcome.problems] == ["nodeport-clash"]
    action, reason = preview.action("Service", target, "edge")
    assert action == "conflict" and str(port) in str(reason)
    real = restore(
        kube.api, s3, restore_job(name, RestoreRequest(namespace_mapping={objects.a: target}, preserve_node_ports=True))
    )
    action, reason = real.action("Service", target, "edge")
    assert action == "failed" and "already allocated" in str(reason), reason
    assert {i.action for i in real.items if i.name != "edge"} <= {"created", "skipped"}
