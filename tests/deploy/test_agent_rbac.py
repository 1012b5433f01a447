"""The agent's manifests on a real kube-apiserver with ``--authorization-mode=RBAC``: a backup as the
stowage-agent ServiceAccount succeeds with exactly deploy/agent/rbac.yaml (and cannot write), and fails with a
403 once ``list`` is removed from the ClusterRole, and the reason carries the apiserver's Status message (verb and
resource) and the remedy.

The ServiceAccount's token is a real one from the TokenRequest API (the apiserver has a service-account
signing key; no controller-manager is needed for that, unlike token Secrets, which v1.20 only fills in with the
controller-manager running). Restores are not covered yet: the restore engine does not exist.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stowage.agent.backup_engine import run_backup
from stowage.agent.kube import api_client
from stowage.domain.backups import BackupPhase, BackupRequest
from tests.backups.helpers import BUCKET, job
from tests.deploy.manifests import DEPLOY, documents, one
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import KubeApiserver, apiserver_binary, start_kube_apiserver

pytestmark = pytest.mark.timeout(300)
NAMESPACE = "stowage-system"
ROLE = "/apis/rbac.authorization.k8s.io/v1/clusterroles/stowage-agent-backup"


@pytest.fixture(scope="module")
def rbac_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiserver]:
    try:
        apiserver_binary()
    except RuntimeError as exc:
        pytest.skip(f"no kube-apiserver: {exc}")
    server = start_kube_apiserver(tmp_path_factory.mktemp("kube-rbac"), authorization_mode="RBAC")
    yield server
    server.stop()


def _admin(server: KubeApiserver) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.token}"},
        verify=str(server.tls.ca_path),
        timeout=30,
    )


def _path(doc: dict[str, Any]) -> str:
    plural = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts"}
    if doc["kind"] in plural:
        prefix = "/api/v1" + (f"/namespaces/{doc['metadata']['namespace']}" if doc["kind"] == "ServiceAccount" else "")
        return f"{prefix}/{plural[doc['kind']]}"
    return (
        "/apis/rbac.authorization.k8s.io/v1/"
        + {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[doc["kind"]]
    )


def _as_agent(server: KubeApiserver, admin: httpx.Client, tmp: Path) -> Path:
    """Apply the manifests' Namespace and RBAC objects and write a kubeconfig with the ServiceAccount's token."""
    docs = documents(DEPLOY / "agent")
    for kind, name in (
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "stowage-agent"),
        ("ClusterRole", "stowage-agent-backup"),
        ("ClusterRoleBinding", "stowage-agent-backup"),
    ):
        doc = one(docs, kind, name)
        answer = admin.post(_path(doc), json=doc)
        if answer.status_code == 409:  # applied by an earlier test, maybe changed since: put the manifest back
            current = admin.get(f"{_path(doc)}/{name}").json()
            doc = {**doc, "metadata": {**doc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            answer = admin.put(f"{_path(doc)}/{name}", json=doc)
        assert answer.status_code in (200, 201), answer.text
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    answer = admin.post(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/stowage-agent/token", json=request)
    assert answer.status_code == 201, answer.text
    token = answer.json()["status"]["token"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "rbac", "cluster": {"server": server.url, "certificate-authority": str(server.tls.ca_path)}}
        ],
        "users": [{"name": "stowage-agent", "user": {"token": token}}],
        "contexts": [{"name": "rbac", "context": {"cluster": "rbac", "user": "stowage-agent"}}],
        "current-context": "rbac",
    }
    path = tmp / "agent-kubeconfig"
    path.write_text(json.dumps(config))
    # The token authenticates as the ServiceAccount, and RBAC lets it list Secrets (a SelfSubjectAccessReview).
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "secrets"}},
    }
    answer = httpx.post(
        f"{server.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        json=review,
        headers={"Authorization": f"Bearer {token}"},
        verify=str(server.tls.ca_path),
    )
    assert answer.status_code == 201 and answer.json()["status"]["allowed"] is True, answer.text
    return path


def _backup(kubeconfig: Path, s3: Any, name: str, namespace: str) -> Any:
    return run_backup(
        job(name, BackupRequest(namespaces=(namespace,))),
        api=api_client(str(kubeconfig)),
        s3=s3,
        snapshotter=None,
        progress=lambda *_: None,
        log=lambda *_: None,
        cancelled=lambda: False,
    )


def test_backup_as_the_service_account_and_without_list(
    rbac_apiserver: KubeApiserver, aws: AwsAccounts, tmp_path: Path
) -> None:
    aws.create_bucket(BUCKET, region="us-east-1")
    s3 = aws.client("s3", region="us-east-1")
    with _admin(rbac_apiserver) as admin:
        kubeconfig = _as_agent(rbac_apiserver, admin, tmp_path)
        namespace = "shop"
        assert admin.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).status_code in (201, 409)
        for i in range(3):
            body = {"metadata": {"name": f"cm-{i}"}, "data": {"k": str(i)}}
            assert admin.post(f"/api/v1/namespaces/{namespace}/configmaps", json=body).status_code in (201, 409)
        secret = {"metadata": {"name": "creds"}, "type": "Opaque", "data": {"k": "c2VjcmV0"}}
        assert admin.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret).status_code in (201, 409)

        # The ServiceAccount cannot write: the backup role is read-only.
        with httpx.Client(verify=str(rbac_apiserver.tls.ca_path)) as plain:
            token = json.loads(kubeconfig.read_text())["users"][0]["user"]["token"]
            denied = plain.post(
                f"{rbac_apiserver.url}/api/v1/namespaces/{namespace}/configmaps",
                json={"metadata": {"name": "x"}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert denied.status_code == 403, denied.text

        outcome = _backup(kubeconfig, s3, "rbac-ok", namespace)
        assert outcome.phase == BackupPhase.COMPLETED, outcome.failure_reason
        assert outcome.items_backed_up >= 5  # 3 ConfigMaps, the Secret, the Namespace (and the default token-less SA)

        outcome = _backup_without_list(admin, kubeconfig, s3, namespace)
    assert outcome.phase == BackupPhase.FAILED
    reason = outcome.failure_reason or ""
    assert "403 Forbidden" in reason and "list" in reason, reason


def _backup_without_list(admin: httpx.Client, kubeconfig: Path, s3: Any, namespace: str) -> Any:
    """Remove ``list`` from the backup ClusterRole (idempotent) and back up until RBAC has noticed."""
    role = admin.get(ROLE).json()
    role["rules"] = [{**rule, "verbs": [v for v in rule["verbs"] if v != "list"]} for rule in role["rules"]]
    assert admin.put(ROLE, json=role).status_code == 200
    deadline = time.monotonic() + 20
    while True:  # the RBAC authorizer's cache follows the change within a moment
        outcome = _backup(kubeconfig, s3, f"rbac-no-list-{time.monotonic_ns()}", namespace)
        if outcome.phase != BackupPhase.COMPLETED or time.monotonic() > deadline:
            return outcome
        time.sleep(0.5)


def test_a_missing_verb_is_named_with_the_resource(
    rbac_apiserver: KubeApiserver, aws: AwsAccounts, tmp_path: Path
) -> None:
    aws.create_bucket(BUCKET, region="us-east-1")
    s3 = aws.client("s3", region="us-east-1")
    with _admin(rbac_apiserver) as admin:
        kubeconfig = _as_agent(rbac_apiserver, admin, tmp_path)
        namespace = "named"
        assert admin.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).status_code in (201, 409)
        outcome = _backup_without_list(admin, kubeconfig, s3, namespace)
    reason = outcome.failure_reason or ""
    assert outcome.phase == BackupPhase.FAILED
    assert re.search(r'cannot list resource "[a-z]+"', reason), reason
    assert 'User "system:serviceaccount:stowage-system:stowage-agent"' in reason, reason
    resource = re.search(r'cannot list resource "([a-z]+)"', reason)
    assert resource and f"add `list` on `{resource.group(1)}`" in reason and "deploy/agent/rbac.yaml" in reason, reason
