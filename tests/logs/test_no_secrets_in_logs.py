"""A full run against a real server and ministack (AUTH=true): every log line is JSON and no secret is in any.

The run: an API token created and used, a web sign-in with the admin password (a wrong one first), a location
validated live and created (STS role), one with static keys, a cluster registered, the agent's token rotated,
heartbeats, credentials vended over HTTP, and the agent process itself (``--once`` and ``--check``). Then every
line of the server's log and of the agent's stderr is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.agents.helpers import agent_client, register
from tests.support.aws_accounts import SECRET, AwsAccounts
from tests.support.servers import StowageServer
from tests.web.support import ADMIN_PASSWORD, WebClient, web_env

REGION = "eu-west-1"
STATIC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + uuid.uuid4().hex[:10]


def _agent(server: StowageServer, aws: AwsAccounts, token_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_"))}
    # Brokered mode: the agent has no AWS keys of its own; only the emulator's address.
    env.update({"AWS_ENDPOINT_URL": aws.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"})
    command = [sys.executable, "-m", "stowage.agent", "--server", server.url, "--token-file", str(token_file), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_a_full_run_logs_json_lines_with_request_ids_and_no_secret(
    aws: AwsAccounts, server_factory: Callable[..., StowageServer], tmp_path: Path
) -> None:
    env = {**aws.control_plane_env(), **web_env(), "STOWAGE_SCHEDULER_ENABLED": "true", "STOWAGE_LOG_LEVEL": "DEBUG"}
    server = server_factory(extra_env=env)
    secrets: dict[str, str] = {
        "admin token": server.admin_token,
        "admin password": ADMIN_PASSWORD,
        "control plane's AWS secret key": SECRET,
        "static secret key": STATIC_SECRET,
    }
    ids_sent: list[str] = []

    with server.client() as http:
        # An API token, created and used.
        created = http.post("/api/v1/tokens", json={"name": "ci", "role": "admin"})
        assert created.status_code == 201, created.text
        secrets["API token"] = created.json()["token"]
        with server.client(secrets["API token"]) as ci:
            answer = ci.get("/api/v1/projects", headers={"X-Request-ID": "test-run-0001"})
            assert answer.status_code == 200 and answer.headers["x-request-id"] == "test-run-0001"
            ids_sent.append("test-run-0001")
        # Refused with a token in the query string and a bad bearer: both end up in access lines.
        assert http.get("/api/v1/projects", params={"token": secrets["API token"]}, headers={"Authorization": ""})
        wrong = server.client("stw_wrong_" + uuid.uuid4().hex).get("/api/v1/projects")
        assert wrong.status_code == 401
        secrets["wrong token"] = wrong.request.headers["authorization"].split()[1]

        # A location with a real role, validated live; one with static keys.
        external_id = http.get("/api/v1/projects/default").json()["externalId"]
        bucket = aws.create_bucket(f"logs-{uuid.uuid4().hex[:8]}", REGION)
        role_arn = aws.create_role(f"stowage-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id)
        spec: dict[str, Any] = {
            "name": "primary",
            "provider": "aws",
            "bucket": bucket,
            "region": REGION,
            "credentials": {"type": "sts", "roleArn": role_arn},
        }
        report = http.post("/api/v1/projects/default/backup-locations/validate", json=spec)
        assert report.status_code == 200 and report.json()["ok"], report.text
        location = http.post("/api/v1/projects/default/backup-locations", json=spec)
        assert location.status_code == 201, location.text
        static = {
            **spec,
            "name": "static",
            "credentials": {"type": "static", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": STATIC_SECRET},
            "skipValidation": True,
        }
        made = http.post("/api/v1/projects/default/backup-locations", json=static)
        assert made.status_code == 201, made.text

        # A cluster, its token rotated once (both tokens are secrets), heartbeats and vending.
        cluster = register(http, "prod")
        secrets["first agent token"] = cluster["agentToken"]
        rotated = http.post(f"/api/v1/projects/default/clusters/{cluster['id']}/rotate-token")
        assert rotated.status_code == 200, rotated.text
        secrets["agent token"] = rotated.json()["agentToken"]
        with agent_client(server, secrets["agent token"]) as agent:
            assert agent.post("/api/v1/agent/heartbeat", json={"version": "test"}).status_code == 200
            vended = agent.get(f"/api/v1/agent/locations/{location.json()['id']}/credentials")
            assert vended.status_code == 200, vended.text
            secrets["vended secret key"] = vended.json()["SecretAccessKey"]
            secrets["vended session token"] = vended.json()["Token"]

    # The web UI: a failed sign-in, then the right password, a page, sign-out.
    web = WebClient(server)
    assert web.login(password="wrong-" + ADMIN_PASSWORD).status_code != 303
    assert web.login().status_code == 303
    assert web.get("/projects/default/settings/backup-locations").status_code == 200
    secrets["session cookie"] = next(iter(web.http.cookies.values()))

    # The agent process: one heartbeat, then a check that reaches the bucket with vended credentials.
    token_file = tmp_path / "agent-token"
    token_file.write_text(secrets["agent token"] + "\n")
    once = _agent(server, aws, token_file, "--once")
    assert once.returncode == 0, once.stderr
    check = _agent(server, aws, token_file, "--check", location.json()["id"])
    assert '"agent.check.' in check.stderr, check.stderr
    server.stop()  # flushes the shutdown lines too

    server_lines = server.log.read_text().splitlines()
    agent_lines = (once.stderr + check.stderr).splitlines()
    assert len(server_lines) > 30 and len(agent_lines) >= 3
    parsed: list[dict[str, Any]] = []
    for source, text_lines in (("server", server_lines), ("agent", agent_lines)):
        for line in text_lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AssertionError(f"{source} log line is not JSON: {line!r}") from exc
            assert isinstance(record, dict) and {"time", "level", "event"} <= set(record), line
            if source == "server":
                parsed.append(record)

    access = [r for r in parsed if r["logger"] == "uvicorn.access"]
    assert len(access) >= 15
    assert all(r.get("requestId") and r.get("path") and r.get("status") for r in access)
    assert {r["requestId"] for r in access} >= set(ids_sent)
    assert len({r["requestId"] for r in access}) == len(access)  # one id per request
    assert any(r["logger"].startswith("procrastinate") for r in parsed)
    assert any(r["logger"] == "stowage.server" and r["event"] == "listening" for r in parsed)

    assert all(len(value) >= 8 for value in secrets.values()), secrets.keys()
    for source, text_lines in (("server", server_lines), ("agent", agent_lines)):
        for line in text_lines:
            for name, value in secrets.items():
                assert value not in line, f"the {name} is in a {source} log line: {line[:300]}"
