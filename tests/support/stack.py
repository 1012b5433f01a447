"""A whole Stowage for end-to-end tests: a server wired to ministack (AUTH=true), a bucket, a role trusted
with the project's External ID, an STS location, and real agent processes (``stowage agent --kubeconfig``)
for clusters whose Kubernetes API is a real kube-apiserver.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.agents.helpers import agent_client, register
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube
from tests.support.processes import spawn, stop
from tests.support.servers import StowageServer

REGION = "eu-west-1"
PREFIX = "team-a"
BOTO = Config(retries={"max_attempts": 1}, parameter_validation=False)


@dataclass
class Stack:
    """A server wired to the emulator, a bucket, a role with the project's External ID, and a location."""

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
        self, cluster: dict[str, Any], kube: Kube, *, s3_endpoint: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_"))}
        env.update(
            {
                # Only the emulator's endpoints: the agent has no AWS identity of its own (brokered mode).
                "AWS_ENDPOINT_URL": self.aws.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            }
        )
        if s3_endpoint:
            env["AWS_ENDPOINT_URL_S3"] = s3_endpoint
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
                str(kubeconfig or kube.kubeconfig),
                "--backoff-max",
                "2",
            ],
            env=env,
            log=log,
        )
        self.agents.append(proc)
        return proc

    def backup(self, cluster: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(f"/api/v1/projects/default/clusters/{cluster}/backups", json=body)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    def wait(self, cluster: str, name: str, phases: set[str], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            backup = self.http.get(f"/api/v1/projects/default/clusters/{cluster}/backups/{name}").json()
            if backup["phase"] in phases:
                return dict(backup)
            if time.monotonic() > deadline:
                raise AssertionError(f"backup {name} is {backup['phase']}, not {phases}: {backup}")
            time.sleep(0.2)

    def owner_s3(self) -> Any:
        return self.aws.client("s3", region=REGION)

    def agent_s3(self, cluster: dict[str, Any]) -> Any:
        with agent_client(self.server, cluster["agentToken"]) as agent:
            creds = agent.get(f"/api/v1/agent/locations/{self.location['id']}/credentials").json()
        return boto3.client(
            "s3",
            endpoint_url=self.aws.endpoint,
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["Token"],
            config=BOTO,
        )


@pytest.fixture
def stack_factory(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer], tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(**env: str) -> Stack:
        server = server_factory(
            extra_env={**aws.control_plane_env(REGION), "STOWAGE_SCHEDULER_TICK_SECONDS": "1", **env}
        )
        http = server.client()
        external_id = http.get("/api/v1/projects/default").json()["externalId"]
        bucket = aws.create_bucket(f"rt-{uuid.uuid4().hex[:8]}", REGION)
        role = aws.create_role(f"r-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id, prefix=PREFIX)
        body = {
            "name": "primary",
            "bucket": bucket,
            "region": REGION,
            "prefix": PREFIX,
            "credentials": {"type": "sts", "roleArn": role},
            "skipValidation": True,
        }
        location = http.post("/api/v1/projects/default/backup-locations", json=body).json()
        stack = Stack(server, aws, http, bucket, location, tmp_path, [])
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for proc in stack.agents:
            stop(proc)
        stack.http.close()
