"""The Kubernetes manifests and Dockerfiles in deploy/: well-formed, least privilege, consistent with the code.

No Docker engine runs on these machines (only the client), so the images are not built here; what can be
checked is: every COPY source exists, every path and flag the manifests use is one the code knows, and
(tests/deploy/test_agent_install.py) the agent image's install step works in a fresh venv.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from stowage.config import Settings
from tests.deploy.manifests import DEPLOY, REPO, copies, documents, instructions, one

AGENT = documents(DEPLOY / "agent")
RESTORE = documents(DEPLOY / "agent" / "restore")
CONTROL_PLANE = documents(DEPLOY / "control-plane")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_every_object_names_its_kind_version_and_namespace() -> None:
    for doc in AGENT + RESTORE + CONTROL_PLANE:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "stowage"
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] in ("stowage-system", "stowage"), doc["metadata"]


def test_backup_role_reads_everything_and_writes_nothing() -> None:
    role = one(AGENT, "ClusterRole", "stowage-agent-backup")
    assert role["rules"] == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]
    binding = one(AGENT, "ClusterRoleBinding", "stowage-agent-backup")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stowage-agent", "namespace": "stowage-system"}]
    one(AGENT, "ServiceAccount", "stowage-agent")
    one(AGENT, "Namespace", "stowage-system")
    # The restore role is not in the backup-only install (kubectl apply -f deploy/agent/ does not recurse).
    assert not [d for d in AGENT if d["metadata"]["name"] == "stowage-agent-restore"]


def test_restore_role_is_separate_and_never_deletes() -> None:
    role = one(RESTORE, "ClusterRole", "stowage-agent-restore")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {"create", "update", "patch", "escalate", "bind"}
    assert "delete" not in verbs and "deletecollection" not in verbs and "*" not in verbs
    binding = one(RESTORE, "ClusterRoleBinding", "stowage-agent-restore")
    assert binding["roleRef"]["name"] == "stowage-agent-restore"
    assert binding["subjects"][0]["name"] == "stowage-agent"


def test_agent_deployment_runs_the_agent_with_its_token_file_and_probes() -> None:
    deployment = one(AGENT, "Deployment", "stowage-agent")
    pod = deployment["spec"]["template"]["spec"]
    agent = container(deployment)
    assert pod["serviceAccountName"] == "stowage-agent"
    args = agent["args"]
    token_file = args[args.index("--token-file") + 1]
    assert args[args.index("--server") + 1] == "$(STOWAGE_SERVER)"
    assert "STOWAGE_SERVER" in {e["name"] for e in agent["env"]}
    mount = next(m for m in agent["volumeMounts"] if token_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret_name = volume["secret"]["secretName"]
    secret = one(AGENT, "Secret", secret_name)
    assert token_file.rsplit("/", 1)[1] in secret["stringData"]
    assert volume["secret"]["items"][0]["path"] == token_file.rsplit("/", 1)[1]
    # Probes reach the health port the agent is told to open, on the paths it serves.
    port = int(args[args.index("--health-port") + 1])
    assert args[args.index("--health-address") + 1] == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {"health": port}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert agent["resources"]["requests"] and agent["resources"]["limits"]["memory"]


def test_every_agent_flag_in_the_manifest_is_one_the_agent_knows() -> None:
    agent = container(one(AGENT, "Deployment", "stowage-agent"))
    help_text = subprocess.run(
        [sys.executable, "-m", "stowage.agent", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    for flag in (a for a in agent["args"] if a.startswith("--")):
        assert re.search(rf"{flag}\b", help_text), f"{flag} is not an option of the agent"
    assert agent["command"] == ["stowage-agent"]


@pytest.mark.parametrize(
    "deployment", [one(AGENT, "Deployment", "stowage-agent"), one(CONTROL_PLANE, "Deployment", "stowage")]
)
def test_pods_run_as_non_root_on_a_read_only_root(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # A read-only root still needs a writable /tmp (temporary files of backups, Python's tempfile).
    assert "/tmp" in {m["mountPath"] for m in main["volumeMounts"]}


def test_control_plane_two_replicas_postgres_probes_service_and_budget() -> None:
    deployment = one(CONTROL_PLANE, "Deployment", "stowage")
    main = container(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in main["env"]}
    assert env["STOWAGE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "stowage"
    assert env["STOWAGE_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "stowage"
    secret = one(CONTROL_PLANE, "Secret", "stowage")
    for variable in env.values():
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secret["stringData"], ref
    assert secret["stringData"]["database-url"].startswith("postgresql://")
    # Every STOWAGE_* name set is a real setting (a typo would be ignored silently by pydantic-settings).
    config = one(CONTROL_PLANE, "ConfigMap", "stowage")
    fields = {f"STOWAGE_{name.upper()}" for name in Settings.model_fields}
    assert set(env) | set(config["data"]) <= fields, (set(env) | set(config["data"])) - fields
    service = one(CONTROL_PLANE, "Service", "stowage")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert {p["name"] for p in main["ports"]} == {"http"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    budget = one(CONTROL_PLANE, "PodDisruptionBudget", "stowage")
    assert budget["spec"]["minAvailable"] == 1 and budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_health_paths_are_served() -> None:
    server = (REPO / "src/stowage/server.py").read_text()
    assert '"/healthz"' in server and '"/readyz"' in server


@pytest.mark.parametrize("name", ["Dockerfile.agent", "Dockerfile.control-plane"])
def test_dockerfiles_copy_existing_files_and_run_as_non_root(name: str) -> None:
    path = DEPLOY / name
    steps = instructions(path)
    assert [s for s in steps if s.keyword == "FROM"]
    assert all(s.arguments.startswith("python:3.11-slim") for s in steps if s.keyword == "FROM")
    for sources, _destination in copies(path):
        for source in sources:
            assert (REPO / source).exists(), f"{name}: COPY {source} does not exist (build context: the repository)"
    final = [s for s in steps if s.stage == max(x.stage for x in steps)]
    user = [s.arguments for s in final if s.keyword == "USER"]
    assert user and not user[-1].startswith(("0", "root")), user
    assert any(s.keyword == "ENTRYPOINT" for s in final)


def test_the_agent_image_copies_only_what_the_agent_distribution_packages() -> None:
    copied = {source for sources, _ in copies(DEPLOY / "Dockerfile.agent") for source in sources}
    assert {"src/stowage/agent", "src/stowage/aws", "src/stowage/domain"} <= copied
    assert not {"src/stowage/server.py", "src/stowage/api", "src/stowage/store", "src/stowage/web"} & copied
    assert not [s for s in copied if s in ("src", "src/stowage", ".")]
