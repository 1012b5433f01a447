"""/healthz, /readyz and /metrics of a real server process (uvicorn), against ministack and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agents.helpers import agent_client, register
from tests.support.aws_accounts import AwsAccounts
from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.servers import StowageServer

REGION = "eu-west-1"


def scrape(server: StowageServer) -> dict[str, float]:
    """Every sample of /metrics as ``name{label="value",...}`` -> value (parsed by prometheus_client)."""
    answer = httpx.get(f"{server.url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_health_readiness_and_metrics_are_served_without_a_token(server: StowageServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["revision"]
    samples = scrape(server)
    # Process collectors share the runtime's registry; every Stowage family is declared from the start.
    assert samples["process_open_fds{}"] > 0
    assert samples["stowage_agent_heartbeats_total{}"] >= 0
    with server.client() as http:
        assert "/metrics" not in http.get("/openapi.json").json()["paths"]


def test_counters_move_after_a_validation_a_heartbeat_and_a_vending_call(server_factory: Any, aws: AwsAccounts) -> None:
    server: StowageServer = server_factory(extra_env=aws.control_plane_env())
    before = scrape(server)
    with server.client() as http:
        external_id = http.get("/api/v1/projects/default").json()["externalId"]
        bucket = aws.create_bucket(f"metrics-{uuid.uuid4().hex[:8]}", REGION)
        role_arn = aws.create_role(f"stowage-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id)
        location = http.post(
            "/api/v1/projects/default/backup-locations",
            json={
                "name": "primary",
                "provider": "aws",
                "bucket": bucket,
                "region": REGION,
                "credentials": {"type": "sts", "roleArn": role_arn},
            },
        )
        assert location.status_code == 201, location.text
        failing = http.post(
            "/api/v1/projects/default/backup-locations/validate",
            json={
                "name": "other",
                "provider": "aws",
                "bucket": bucket,
                "region": REGION,
                "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/missing"},
            },
        )
        assert failing.status_code == 200 and not failing.json()["ok"]
        cluster = register(http, "prod-eu")
    with agent_client(server, cluster["agentToken"]) as agent:
        assert agent.post("/api/v1/agent/heartbeat", json={"version": "test"}).status_code == 200
        url = f"/api/v1/agent/locations/{location.json()['id']}/credentials"
        assert agent.get(url).status_code == 200
        assert agent.get(url).status_code == 200  # answered from memory
        assert agent.get("/api/v1/agent/locations/no-such-location/credentials").status_code == 404
    after = scrape(server)

    def moved(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("stowage_agent_heartbeats_total{}") == 1
    assert moved('stowage_validations_total{result="ok"}') == 1
    assert moved('stowage_validations_total{result="failed"}') == 1
    assert moved('stowage_validation_checks_failed_total{check="assume-role"}') == 1
    assert moved("stowage_validation_duration_seconds_count{}") == 2
    assert moved('stowage_vending_requests_total{result="issued"}') == 1
    assert moved('stowage_vending_requests_total{result="cached"}') == 1
    assert moved('stowage_vending_requests_total{result="refused"}') == 1
    assert moved('stowage_vending_cache_total{outcome="hit"}') == 1
    assert moved('stowage_vending_cache_total{outcome="miss"}') == 2
    # The passing validation (with and without External ID), the failing one (both attempts), one vend.
    assert moved('stowage_sts_assume_role_calls_total{result="ok"}') >= 2
    assert moved('stowage_sts_assume_role_calls_total{result="cloud_access_denied"}') >= 2
    assert moved("stowage_sts_assume_role_duration_seconds_count{}") >= 4


def test_readyz_is_503_with_the_reason_when_postgresql_is_gone(server_factory: Any) -> None:
    url = create_pg_database()
    dropped = False
    try:
        server: StowageServer = server_factory(database_url=url)
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        drop_pg_database(url)
        dropped = True
        answer = httpx.get(f"{server.url}/readyz", timeout=30)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["status"] == "not ready" and body["reason"].startswith("database unreachable")
        assert "does not exist" in body["reason"] or "terminat" in body["reason"]
        # Liveness stays green: the process itself is fine, only its dependency is not.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        if not dropped:
            drop_pg_database(url)


def test_readyz_is_503_when_migrations_are_behind(server_factory: Any) -> None:
    url = create_pg_database()
    try:
        server: StowageServer = server_factory(database_url=url)
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0001'")
        answer = httpx.get(f"{server.url}/readyz", timeout=30)
        assert answer.status_code == 503, answer.text
        reason = answer.json()["reason"]
        assert reason.startswith("migrations not applied: database at 0001, code expects")
    finally:
        server.stop()
        drop_pg_database(url)


@pytest.mark.parametrize("path", ["/metrics", "/readyz"])
def test_writes_to_health_endpoints_are_not_500(server: StowageServer, path: str) -> None:
    assert httpx.post(f"{server.url}{path}").status_code == 405
