"""A server wired to ministack with a location, agents started on demand, and a server restart on the same port.

Like ``tests/backups_e2e``'s stack, but each agent's AWS endpoint (S3 and EC2) and kubeconfig are chosen by the
test, so a fault proxy or a slow proxy can sit in front of either.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agents.helpers import register
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube
from tests.support.processes import free_port, spawn, stop, wait_until
from tests.support.servers import StowageServer

REGION = "eu-west-1"
PREFIX = "team-f"


def restart_server(server: StowageServer, *, down_seconds: float = 0.0) -> float:
    """Stop the server process and start it again on the same port, data directory and database.

    Returns how long the API was unreachable (from the stop until ``/healthz`` answers again). The new process
    replaces the old one inside ``server``, so the fixture that started it also stops it.
    """
    started = time.monotonic()
    server.stop()
    time.sleep(down_seconds)
    log = server.log.with_name(f"{server.log.stem}-restarted-{int(time.time())}.log")
    proc = spawn([sys.executable, "-m", "stowage.entry", "serve"], env=server.env, log=log)
    server._proc = proc
    wait_until(
        lambda: httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200,
        timeout=60,
        what="the restarted stowage serve",
        proc=proc,
        log=log,
    )
    return time.monotonic() - started


@dataclass
class FaultStack:
    """A server with a bucket, a role and a default location; agents the test starts."""

    server: StowageServer
    aws: AwsAccounts
    http: httpx.Client
    bucket: str
    location: dict[str, Any]
    tmp: Path
    agents: list[subprocess.Popen[bytes]]

    def cluster(self, name: str) -> dict[str, Any]:
        return register(self.http, name)

    def start_agent(
        self, cluster: dict[str, Any], kubeconfig: Path, *, aws_endpoint: str | None = None
    ) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_"))}
        env.update(
            {
                # S3 and EC2 of the agent (brokered mode: it has no AWS identity and never calls STS).
                "AWS_ENDPOINT_URL": aws_endpoint or self.aws.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            }
        )
        log = self.tmp / f"agent-{cluster['name']}-{len(self.agents)}.log"
        proc = spawn(
            [
                sys.executable,
                "-m",
                "stowage.entry",
                "agent",
                "--server",
                self.server.url,
                "--token",
                cluster["agentToken"],
                "--kubeconfig",
                str(kubeconfig),
                "--backoff-max",
                "2",
            ],
            env=env,
            log=log,
        )
        self.agents.append(proc)
        return proc

    def agent_log(self, index: int = -1) -> str:
        logs = sorted(self.tmp.glob("agent-*.log"), key=lambda p: p.stat().st_mtime)
        return logs[index].read_text() if logs else ""

    def backup(self, cluster: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(f"/api/v1/projects/default/clusters/{cluster}/backups", json=body)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    def get(self, cluster: str, name: str) -> dict[str, Any]:
        return dict(self.http.get(f"/api/v1/projects/default/clusters/{cluster}/backups/{name}").json())

    def wait(self, cluster: str, name: str, phases: set[str], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                backup = self.get(cluster, name)
            except httpx.HTTPError:
                backup = {"phase": "(server unreachable)"}
            if backup.get("phase") in phases:
                return backup
            if time.monotonic() > deadline:
                raise AssertionError(f"backup {name} is {backup.get('phase')}, not {phases}: {backup}")
            time.sleep(0.2)

    def owner_s3(self) -> Any:
        return self.aws.client("s3", region=REGION)


@pytest.fixture
def fault_stack(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer], tmp_path: Path
) -> Iterator[Callable[..., FaultStack]]:
    """Make a ``FaultStack`` (extra ``STOWAGE_*`` settings as keyword arguments); agents stopped at the end."""
    stacks: list[FaultStack] = []

    def make(**env: str) -> FaultStack:
        server = server_factory(
            extra_env={**aws.control_plane_env(REGION), "STOWAGE_SCHEDULER_TICK_SECONDS": "1", **env}
        )
        http = server.client()
        external_id = http.get("/api/v1/projects/default").json()["externalId"]
        bucket = aws.create_bucket(f"ft-{uuid.uuid4().hex[:8]}", REGION)
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
        assert answer.status_code in (200, 201), answer.text
        stack = FaultStack(server, aws, http, bucket, answer.json(), tmp_path, [])
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for proc in stack.agents:
            stop(proc)
        stack.http.close()


def many_configmaps(kube: Kube, count: int, size: int = 1024) -> str:
    """A fresh namespace with ``count`` ConfigMaps of about ``size`` random (incompressible) bytes each."""
    namespace = kube.namespace("faults")
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    def create(i: int) -> None:
        body = {
            "metadata": {"name": f"cm-{i:05d}"},
            "binaryData": {"blob": base64.b64encode(os.urandom(size)).decode()},
        }
        answer = kube.http.post(path, json=body)
        assert answer.status_code == 201, answer.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    return namespace


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


@dataclass
class OwnPostgres:
    """A throw-away PostgreSQL server of this test alone (so restarting it disturbs no one else)."""

    directory: Path
    port: int
    log: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        assert PG_BIN is not None
        subprocess.run(
            [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-l", str(self.log), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("start", "-w", "-o", options)

    def stop(self) -> None:
        self._ctl("stop", "-w", "-m", "fast")

    def restart(self) -> None:
        """Stop (fast: every connection is cut) and start again."""
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


def _as_postgres() -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """initdb + pg_ctl on a free port in a temp directory; stopped and removed at the end."""
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL NOT TESTED: no /usr/lib/postgresql/*/bin/initdb on this machine")
    directory = Path(tempfile.mkdtemp(prefix="stowage-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    subprocess.run(
        [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(directory / "data"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg = OwnPostgres(directory, free_port(), directory / "postgres.log")
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg.stop()
        shutil.rmtree(directory, ignore_errors=True)
