"""A restore as the stowage-agent ServiceAccount on a real kube-apiserver with ``--authorization-mode=RBAC``.

The manifests (deploy/agent/rbac.yaml and deploy/agent/restore/rbac.yaml) are applied, a namespace is backed up
by the admin with the real backup engine into ministack, and the real restore engine runs with a kubeconfig
holding the ServiceAccount's TokenRequest token, into a new namespace (namespaceMapping: the test apiserver has no
controller-manager, so deleted namespaces stay Terminating). The namespace holds RBAC objects that grant more
than the agent holds, so ``escalate`` and ``bind`` are exercised. Then ``create`` is removed from the restore
ClusterRole: every item fails with the apiserver's own message naming the verb and the resource.

The set-up helpers are copied from tests/deploy/test_agent_rbac.py (backups), which also covers TokenRequest.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stowage.agent.backup_engine import run_backup
from stowage.agent.kube import api_client
from stowage.domain.backups import BackupPhase, BackupRequest
from stowage.domain.restores import RestorePhase, RestoreRequest
from tests.backups.helpers import job
from tests.deploy.manifests import DEPLOY, documents, one
from tests.restores.helpers import BUCKET, REGION, Restored, restore, restore_job
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import KubeApiserver, apiserver_binary, start_kube_apiserver

pytestmark = pytest.mark.timeout(300)
NAMESPACE = "stowage-system"
AGENT = "system:serviceaccount:stowage-system:stowage-agent"
RESTORE_ROLE = "/apis/rbac.authorization.k8s.io/v1/clusterroles/stowage-agent-restore"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
OBJECTS = (
    ("Namespace", NAMESPACE),
    ("ServiceAccount", "stowage-agent"),
    ("ClusterRole", "stowage-agent-backup"),
    ("ClusterRoleBinding", "stowage-agent-backup"),
    ("ClusterRole", "stowage-agent-restore"),
    ("ClusterRoleBinding", "stowage-agent-restore"),
)


@pytest.fixture(scope="module")
def rbac_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiserver]:
    try:
        apiserver_binary()
    except RuntimeError as exc:
        pytest.skip(f"no kube-apiserver: {exc}")
    server = start_kube_apiserver(tmp_path_factory.mktemp("kube-rbac-restore"), authorization_mode="RBAC")
    yield server
    server.stop()


def _path(doc: dict[str, Any]) -> str:
    kind = doc["kind"]
    if kind == "Namespace":
        return "/api/v1/namespaces"
    if kind == "ServiceAccount":
        return f"/api/v1/namespaces/{doc['metadata']['namespace']}/serviceaccounts"
    return f"{RBAC}/" + {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[kind]


def _apply(admin: httpx.Client, doc: dict[str, Any]) -> None:
    """Create the object, or put the manifest back over what an earlier test changed."""
    name = doc["metadata"]["name"]
    answer = admin.post(_path(doc), json=doc)
    if answer.status_code == 409:
        current = admin.get(f"{_path(doc)}/{name}").json()
        doc = {**doc, "metadata": {**doc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        answer = admin.put(f"{_path(doc)}/{name}", json=doc)
    assert answer.status_code in (200, 201), answer.text


def _as_agent(server: KubeApiserver, admin: httpx.Client, tmp: Path) -> tuple[Path, str]:
    """Apply the backup and restore manifests' RBAC objects; a kubeconfig with the ServiceAccount's token."""
    docs = documents(DEPLOY / "agent") + documents(DEPLOY / "agent" / "restore")
    for kind, name in OBJECTS:
        _apply(admin, one(docs, kind, name))
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    answer = admin.post(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/stowage-agent/token", json=request)
    assert answer.status_code == 201, answer.text
    token = str(answer.json()["status"]["token"])
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
    return path, token


def _allowed(server: KubeApiserver, token: str, verb: str, resource: str, namespace: str) -> bool:
    """What RBAC answers the ServiceAccount now (a SelfSubjectAccessReview)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace}},
    }
    answer = httpx.post(
        f"{server.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        json=review,
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=str(server.tls.ca_path)),
    )
    assert answer.status_code == 201, answer.text
    return bool(answer.json()["status"]["allowed"])


def _wait_allowed(server: KubeApiserver, token: str, verb: str, resource: str, namespace: str, want: bool) -> None:
    """Wait until the RBAC authorizer's cache follows a changed ClusterRole."""
    deadline = time.monotonic() + 20
    while _allowed(server, token, verb, resource, namespace) != want:
        assert time.monotonic() < deadline, f"{verb} {resource} is still {not want} for the agent"
        time.sleep(0.2)


def _source(admin: httpx.Client) -> str:
    """A namespace with ConfigMaps, a Secret, a ServiceAccount, and RBAC objects granting what the agent lacks."""
    namespace = f"shop-{uuid.uuid4().hex[:6]}"
    assert admin.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).status_code == 201

    def create(path: str, body: dict[str, Any]) -> None:
        answer = admin.post(path, json=body)
        assert answer.status_code == 201, answer.text

    for i in range(3):
        create(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": {"k": str(i)}})
    create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "creds"}, "type": "Opaque", "data": {"k": "c2VjcmV0"}},
    )
    create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "robot"}})
    # `delete` is not the agent's: restoring this Role needs `escalate`, its binding needs `bind`.
    create(
        f"{RBAC}/namespaces/{namespace}/roles",
        {
            "metadata": {"name": "cleaner"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "delete"]}],
        },
    )
    subjects = [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}]
    create(
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "robot-cleaner"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cleaner"},
            "subjects": subjects,
        },
    )
    # A binding to one of Kubernetes' own ClusterRoles: `bind` on clusterroles. cluster-admin, not admin: admin is
    # aggregated, and without a controller-manager its rules stay empty (anyone could bind it).
    create(
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "robot-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": subjects,
        },
    )
    return namespace


def _without(admin: httpx.Client, *verbs: str) -> None:
    """Remove verbs from the restore ClusterRole (and rules left with none)."""
    role = admin.get(RESTORE_ROLE).json()
    rules = [{**rule, "verbs": [v for v in rule["verbs"] if v not in verbs]} for rule in role["rules"]]
    role["rules"] = [rule for rule in rules if rule["verbs"]]
    assert admin.put(RESTORE_ROLE, json=role).status_code == 200


def _backup_as_admin(server: KubeApiserver, s3: Any, namespace: str) -> str:
    name = f"b-{uuid.uuid4().hex[:8]}"
    outcome = run_backup(
        job(name, BackupRequest(namespaces=(namespace,))),
        api=server.api_client(),
        s3=s3,
        snapshotter=None,
        progress=lambda *_: None,
        log=lambda *_: None,
        cancelled=lambda: False,
    )
    assert outcome.phase == BackupPhase.COMPLETED, outcome.failure_reason
    return name


def _restore_as_agent(kubeconfig: Path, s3: Any, backup: str, source: str, target: str) -> Restored:
    request = RestoreRequest(include_namespaces=(source,), namespace_mapping={source: target})
    return restore(api_client(str(kubeconfig)), s3, restore_job(backup, request))


@pytest.fixture
def s3(aws: AwsAccounts) -> Any:
    aws.create_bucket(BUCKET, region=REGION)
    return aws.client("s3", region=REGION)


def test_restore_as_the_service_account_succeeds_with_the_manifests(
    rbac_apiserver: KubeApiserver, s3: Any, tmp_path: Path
) -> None:
    with rbac_apiserver.http() as admin:
        kubeconfig, token = _as_agent(rbac_apiserver, admin, tmp_path)
        source = _source(admin)
        backup = _backup_as_admin(rbac_apiserver, s3, source)
        target = f"copy-{uuid.uuid4().hex[:6]}"
        # The agent can create in the new namespace but never delete (neither role has it).
        assert _allowed(rbac_apiserver, token, "create", "configmaps", target)
        assert not _allowed(rbac_apiserver, token, "delete", "configmaps", target)

        result = _restore_as_agent(kubeconfig, s3, backup, source, target)
        failed = [i for i in result.items if i.action == "failed"]
        assert result.outcome.phase == RestorePhase.COMPLETED, (result.outcome, failed)
        created = {(i.kind, i.name) for i in result.items if i.action == "created"}
        assert {
            ("Namespace", target),
            ("ConfigMap", "cm-0"),
            ("ConfigMap", "cm-2"),
            ("Secret", "creds"),
            ("ServiceAccount", "robot"),
            ("Role", "cleaner"),
            ("RoleBinding", "robot-cleaner"),
            ("RoleBinding", "robot-admin"),
        } <= created, created
        assert admin.get(f"/api/v1/namespaces/{target}/configmaps/cm-1").json()["data"] == {"k": "1"}
        role = admin.get(f"{RBAC}/namespaces/{target}/roles/cleaner").json()
        assert role["rules"][0]["verbs"] == ["get", "list", "delete"]
        binding = admin.get(f"{RBAC}/namespaces/{target}/rolebindings/robot-admin").json()
        assert binding["subjects"][0]["namespace"] == target  # the mapping reaches the subjects


def test_without_create_the_restore_fails_naming_the_verb_and_the_resource(
    rbac_apiserver: KubeApiserver, s3: Any, tmp_path: Path
) -> None:
    with rbac_apiserver.http() as admin:
        kubeconfig, token = _as_agent(rbac_apiserver, admin, tmp_path)
        source = _source(admin)
        backup = _backup_as_admin(rbac_apiserver, s3, source)
        target = f"nocreate-{uuid.uuid4().hex[:6]}"
        _without(admin, "create")
        try:
            _wait_allowed(rbac_apiserver, token, "create", "configmaps", target, want=False)
            result = _restore_as_agent(kubeconfig, s3, backup, source, target)
        finally:
            _apply(admin, one(documents(DEPLOY / "agent" / "restore"), "ClusterRole", "stowage-agent-restore"))
        assert admin.get(f"/api/v1/namespaces/{target}").status_code == 404  # nothing was written

    outcome = result.outcome
    assert outcome.phase in (RestorePhase.FAILED, RestorePhase.PARTIALLY_FAILED), outcome
    assert outcome.items_restored == 0 and outcome.summary == {"failed": outcome.total_items}, outcome.summary
    reasons = {(i.kind, i.name): str(i.reason) for i in result.items}
    # The apiserver's Status message: who, which verb, which resource (and where).
    namespace_reason = reasons[("Namespace", target)]
    assert f'User "{AGENT}" cannot create resource "namespaces"' in namespace_reason, namespace_reason
    assert "403 Forbidden" in namespace_reason, namespace_reason
    configmap = reasons[("ConfigMap", "cm-0")]
    assert f'cannot create resource "configmaps" in API group "" in the namespace "{target}"' in configmap, configmap
    assert 'cannot create resource "rolebindings"' in reasons[("RoleBinding", "robot-admin")]


def test_without_escalate_and_bind_rbac_objects_fail_and_the_rest_is_restored(
    rbac_apiserver: KubeApiserver, s3: Any, tmp_path: Path
) -> None:
    with rbac_apiserver.http() as admin:
        kubeconfig, token = _as_agent(rbac_apiserver, admin, tmp_path)
        source = _source(admin)
        backup = _backup_as_admin(rbac_apiserver, s3, source)
        target = f"noescalate-{uuid.uuid4().hex[:6]}"
        _without(admin, "escalate", "bind")
        try:
            deadline = time.monotonic() + 20
            while True:  # the authorizer's cache follows the change within a moment
                review = _allowed(rbac_apiserver, token, "bind", "clusterroles", target)
                if not review or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            result = _restore_as_agent(kubeconfig, s3, backup, source, target)
        finally:
            _apply(admin, one(documents(DEPLOY / "agent" / "restore"), "ClusterRole", "stowage-agent-restore"))

    assert result.outcome.phase == RestorePhase.PARTIALLY_FAILED, result.outcome
    action = {(i.kind, i.name): (i.action, str(i.reason)) for i in result.items}
    assert action[("ConfigMap", "cm-0")][0] == "created" and action[("ServiceAccount", "robot")][0] == "created"
    # Kubernetes' privilege-escalation guard: the Role grants `delete`, which the agent does not hold.
    verdict, reason = action[("Role", "cleaner")]
    assert verdict == "failed" and "attempting to grant RBAC permissions not currently held" in reason, reason
    assert "delete" in reason, reason
    verdict, reason = action[("RoleBinding", "robot-admin")]
    assert verdict == "failed" and "permissions not currently held" in reason, reason
