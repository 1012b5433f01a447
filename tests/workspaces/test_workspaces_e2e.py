"""Workspaces end to end: three clusters, each a real kube-apiserver, two of them with a real agent process and
one whose agent is disconnected; ministack (AUTH=true) holds the bucket.

A workspace backup yields two backups (each in its own cluster prefix) and one reported skip; after the
ConfigMaps are deleted, a workspace restore brings them back on both clusters. (Deleted namespaces would stay
Terminating here, as there is no controller-manager, so the test deletes objects, not namespaces.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.kube import Kube, KubeApiserver, start_kube_apiserver
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def second_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiserver]:
    server = start_kube_apiserver(Path(tmp_path_factory.mktemp("ws-kube-2")))
    yield server
    server.stop()


def _fill(kube: Kube, namespace: str, count: int) -> None:
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for i in range(count):
        kube.create(
            f"/api/v1/namespaces/{namespace}/configmaps",
            {"metadata": {"name": f"cm-{i}", "labels": {"app": "shop"}}, "data": {"i": str(i)}},
        )


def _configmaps(kube: Kube, namespace: str) -> set[str]:
    items = kube.http.get(f"/api/v1/namespaces/{namespace}/configmaps").json()["items"]
    return {i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("cm-")}


def _wait(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_workspace_backup_skips_the_disconnected_cluster_and_restore_brings_both_back(
    stack_factory: Callable[..., Stack], kube: Kube, second_apiserver: KubeApiserver
) -> None:
    stack = stack_factory()
    api2 = second_apiserver.api_client()
    with second_apiserver.http() as http2:
        kube2 = Kube(server=second_apiserver, api=api2, http=http2)
        namespace = f"shop-{int(time.time() * 1000) % 10**8}"
        _fill(kube, namespace, 5)
        _fill(kube2, namespace, 7)
        one, two, three = stack.cluster("ws-one"), stack.cluster("ws-two"), stack.cluster("ws-three")
        stack.start_agent(one, kube)
        stack.start_agent(two, kube2)
        for cluster in (one, two):  # connected once their agents heartbeat
            _wait(
                lambda c=cluster: (
                    stack.http.get(f"/api/v1/projects/default/clusters/{c['id']}").json()["status"] == "connected"
                ),
                "the agents to connect",
            )
        base = "/api/v1/projects/default/workspaces"
        created = stack.http.post(base, json={"name": "shop", "clusterIds": [one["id"], two["id"], three["id"]]})
        assert created.status_code == 201, created.text

        backup = stack.http.post(f"{base}/shop/backups", json={"backupName": "wb", "namespaces": [namespace]})
        assert backup.status_code == 202, backup.text
        body = backup.json()
        assert sorted(c["clusterName"] for c in body["clusters"]) == ["ws-one", "ws-two"]
        assert [s["clusterName"] for s in body["skipped"]] == ["ws-three"]

        def backed_up() -> bool:
            parts = stack.http.get(f"{base}/shop/backups/wb").json()["clusters"]
            return all(p["phase"] in ("Completed", "PartiallyFailed", "Failed") for p in parts)

        _wait(backed_up, "both backups")
        done = stack.http.get(f"{base}/shop/backups/wb").json()
        assert {p["phase"] for p in done["clusters"]} == {"Completed"}, done
        assert done["phase"] == "PartiallyFailed"  # one cluster was skipped: reported, never silent
        for cluster in (one, two):  # each backup in its own cluster prefix
            keys = stack.aws.object_keys(stack.bucket, f"team-a/clusters/{cluster['id']}/backups/wb-{cluster['name']}/")
            assert any(k.endswith("velero-backup.json") for k in keys)

        for k, n in ((kube, 5), (kube2, 7)):
            for i in range(n):
                k.http.delete(f"/api/v1/namespaces/{namespace}/configmaps/cm-{i}")
            assert _configmaps(k, namespace) == set()

        restore = stack.http.post(f"{base}/shop/backups/wb/restores", json={"includeNamespaces": [namespace]})
        assert restore.status_code == 202, restore.text
        assert sorted(p["clusterName"] for p in restore.json()["clusters"]) == ["ws-one", "ws-two"]

        def restored() -> bool:
            (latest,) = stack.http.get(f"{base}/shop/restores").json()
            return all(p["phase"] in ("Completed", "PartiallyFailed", "Failed") for p in latest["clusters"])

        _wait(restored, "both restores")
        (latest,) = stack.http.get(f"{base}/shop/restores").json()
        assert {p["phase"] for p in latest["clusters"]} == {"Completed"}, latest
        assert _configmaps(kube, namespace) == {f"cm-{i}" for i in range(5)}
        assert _configmaps(kube2, namespace) == {f"cm-{i}" for i in range(7)}

        report = stack.http.get("/api/v1/projects/default/protection").json()
        risks = {c["clusterName"]: c["protection"]["risk"] for c in report["clusters"]}
        assert risks == {"ws-one": "on_time", "ws-two": "on_time", "ws-three": "never"}
    api2.close()
