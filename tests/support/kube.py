"""A real kube-apiserver (v1.20.2) with a real etcd for tests: a pytest plugin.

Register it with ``pytest_plugins = [..., "tests.support.kube"]`` (tests/conftest.py). Fixtures:

* ``kube_apiserver`` (session): etcd (Debian's ``etcd-server``) and the apiserver built by
  ``scripts/kube-apiserver``, both on free 127.0.0.1 ports with their data in the session's temp directory.
  HTTPS with a throw-away CA, ``--insecure-port=0``, a static admin token (group ``system:masters``),
  ``--authorization-mode=AlwaysAllow``, ``--disable-admission-plugins=ServiceAccount`` and service-account
  keys made with ``cryptography``. Waits for ``/readyz``, writes a kubeconfig, and stops both by PID at the
  end. Skips (with the reason) only when the apiserver binary cannot be built.
* ``kube`` (function): a ``Kube`` handle: the kubeconfig path, an ``ApiClient`` and ``namespace()`` for fresh,
  uniquely named namespaces.

Known limits (there is no controller-manager, scheduler or kubelet): a deleted namespace stays
``Terminating`` with its objects forever, nothing is garbage-collected, Deployments create no ReplicaSets or
Pods, PVCs never bind by themselves (set ``spec.volumeName``/``claimRef`` yourself) and no ServiceAccount
token Secrets appear. Every test shares the one apiserver, so cluster-wide lists also show other tests'
objects.

``start_kube_apiserver`` starts the same pair outside pytest (the backup benchmark uses it); pass
``authorization_mode="RBAC"`` for RBAC (the admin token stays in ``system:masters``).
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.ministack import TlsMaterial, make_tls_material
from tests.support.processes import free_port, spawn, stop, wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kube-apiserver"


def apiserver_binary() -> Path:
    """The cached kube-apiserver binary (built on first use by scripts/kube-apiserver); RuntimeError if it fails."""
    try:
        answer = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=True, timeout=3600, cwd=REPO)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RuntimeError(f"scripts/kube-apiserver could not build the apiserver: {str(detail)[-2000:]}") from exc
    path = Path(answer.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise RuntimeError(f"scripts/kube-apiserver printed {path}, which is not a file")
    return path


@dataclass
class KubeApiserver:
    """A running etcd + kube-apiserver pair."""

    url: str
    token: str
    kubeconfig: Path
    tls: TlsMaterial
    workdir: Path
    _procs: list[Any] = field(default_factory=list, repr=False)

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for the admin user."""
        from stowage.agent.kube import api_client

        return api_client(str(self.kubeconfig))

    def http(self) -> httpx.Client:
        """An httpx client with the admin token that trusts the apiserver's CA."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=ssl.create_default_context(cafile=str(self.tls.ca_path)),
            timeout=60,
        )

    def stop(self) -> None:
        """Stop the apiserver, then etcd, by PID."""
        while self._procs:
            stop(self._procs.pop())


def _service_account_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _kubeconfig(path: Path, url: str, ca: Path, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }
    # JSON is YAML: the kubernetes client's kubeconfig loader reads it as is.
    path.write_text(json.dumps(config, indent=2))


def start_kube_apiserver(
    workdir: Path, *, authorization_mode: str = "AlwaysAllow", timeout: float = 120
) -> KubeApiserver:
    """Start etcd and kube-apiserver on free 127.0.0.1 ports; their state lives in ``workdir``."""
    binary = apiserver_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBE"))}
    procs: list[Any] = []
    try:
        client_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd_log = workdir / "etcd.log"
        etcd = spawn(
            [
                "etcd",
                "--name=stowage-test",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=stowage-test=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
                "--logger=zap",
                # Tests and benchmarks want speed, not durability across power loss.
                "--unsafe-no-fsync",
            ],
            env=env,
            log=etcd_log,
            cwd=workdir,
        )
        procs.append(etcd)

        def etcd_healthy() -> bool:
            return httpx.get(f"{etcd_url}/health", timeout=2).status_code == 200

        wait_until(etcd_healthy, timeout=timeout, what="etcd", proc=etcd, log=etcd_log)

        tls = make_tls_material(workdir / "tls")
        token = secrets.token_urlsafe(24)
        tokens = workdir / "tokens.csv"
        tokens.write_text(f'{token},admin,admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        sa_key = workdir / "service-account.key"
        _service_account_key(sa_key)
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        log = workdir / "kube-apiserver.log"
        apiserver = spawn(
            [
                str(binary),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                "--insecure-port=0",
                f"--cert-dir={workdir / 'certs'}",
                f"--tls-cert-file={tls.cert_path}",
                f"--tls-private-key-file={tls.key_path}",
                f"--token-auth-file={tokens}",
                f"--authorization-mode={authorization_mode}",
                "--disable-admission-plugins=ServiceAccount",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--etcd-servers={etcd_url}",
                "--allow-privileged=true",
                "--v=0",
            ],
            env=env,
            log=log,
            cwd=workdir,
        )
        procs.append(apiserver)
        context = ssl.create_default_context(cafile=str(tls.ca_path))

        def ready() -> bool:
            answer = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"}, verify=context, timeout=5)
            return answer.status_code == 200

        wait_until(ready, timeout=timeout, what="kube-apiserver", proc=apiserver, log=log)
        kubeconfig = workdir / "kubeconfig"
        _kubeconfig(kubeconfig, url, tls.ca_path, token)
        return KubeApiserver(url=url, token=token, kubeconfig=kubeconfig, tls=tls, workdir=workdir, _procs=procs)
    except BaseException:
        while procs:
            stop(procs.pop())
        raise


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiserver]:
    """One etcd + kube-apiserver for the whole session (skipped only when the binary cannot be built)."""
    try:
        apiserver_binary()
    except RuntimeError as exc:
        pytest.skip(f"no kube-apiserver: {exc}")
    server = start_kube_apiserver(tmp_path_factory.mktemp("kube"))
    yield server
    server.stop()


@dataclass
class Kube:
    """What a test gets: the kubeconfig, an ApiClient and fresh namespaces."""

    server: KubeApiserver
    api: Any
    http: httpx.Client
    namespaces: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig file."""
        return self.server.kubeconfig

    def namespace(self, prefix: str = "t", labels: dict[str, str] | None = None) -> str:
        """Create a namespace with a unique name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            body["metadata"]["labels"] = labels
        self.create("/api/v1/namespaces", body)
        self.namespaces.append(name)
        return name

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST an object to a collection path and return what the server stored."""
        answer = self.http.post(path, json=body)
        if answer.status_code >= 300:
            raise AssertionError(f"POST {path}: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result

    def get(self, path: str) -> dict[str, Any]:
        """GET one object."""
        answer = self.http.get(path)
        if answer.status_code != 200:
            raise AssertionError(f"GET {path}: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
def kube(kube_apiserver: KubeApiserver) -> Iterator[Kube]:
    """The session's apiserver with a fresh ApiClient; namespaces made by ``namespace()`` are deleted after."""
    api = kube_apiserver.api_client()
    with kube_apiserver.http() as http:
        handle = Kube(server=kube_apiserver, api=api, http=http)
        yield handle
        for name in handle.namespaces:
            # Stays Terminating (no namespace controller), but marks the namespace as done with.
            http.delete(f"/api/v1/namespaces/{name}")
    api.close()
