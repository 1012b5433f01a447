"""Two real server processes on one real PostgreSQL database: what one changes, the other's caches drop at once.

Each server caches an authenticated agent token (~5 s) and a location (5 s) in memory. Without the change
feed the second server would keep accepting a revoked token, and serving an edited location, until those
entries expire; the assertions below allow 2 s, well under the cache lifetimes, so they fail without it.

``pg_url`` comes before ``server_factory`` in each signature so that the servers stop before their database
is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.servers import StowageServer

LOCATIONS = "/api/v1/projects/default/backup-locations"
PROMPTLY = 2.0


def _eventually(check: Callable[[], bool], what: str, within: float = PROMPTLY) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within} s")


def _pair(server_factory: Callable[..., StowageServer], pg_url: str) -> tuple[StowageServer, StowageServer]:
    first = server_factory(database_url=pg_url)
    second = server_factory(database_url=pg_url, extra_env={"STOWAGE_ADMIN_TOKEN": first.admin_token})
    return first, second


def test_a_token_revoked_on_one_server_is_refused_by_the_other(
    pg_url: str, server_factory: Callable[..., StowageServer]
) -> None:
    first, second = _pair(server_factory, pg_url)
    with first.client() as admin:
        token = admin.post("/api/v1/projects/default/clusters", json={"name": "edge"}).json()["agentToken"]
        with second.client(token) as agent:
            beat = agent.post("/api/v1/agent/heartbeat", json={"version": "1.0"})
            assert beat.status_code == 200, beat.text  # the second server now has the token in its cache
            assert admin.post("/api/v1/projects/default/clusters/edge/revoke-token").status_code == 200
            took = _eventually(
                lambda: agent.post("/api/v1/agent/heartbeat", json={"version": "1.0"}).status_code == 401,
                "refusing the revoked token on the other server",
            )
    assert took < PROMPTLY


def test_a_location_edited_on_one_server_is_served_fresh_by_the_other(
    pg_url: str, server_factory: Callable[..., StowageServer]
) -> None:
    first, second = _pair(server_factory, pg_url)
    body: dict[str, Any] = {
        "name": "shared",
        "bucket": "shared-bucket",
        "region": "us-east-1",
        "prefix": "before",
        "skipValidation": True,
        "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/r"},
    }
    with first.client() as admin:
        location = admin.post(LOCATIONS, json=body).json()
        token = admin.post("/api/v1/projects/default/clusters", json={"name": "reader"}).json()["agentToken"]
        with second.client(token) as agent:
            path = f"/api/v1/agent/locations/{location['id']}"

            def prefix() -> Any:
                return agent.get(path).json().get("prefix")

            assert prefix() == "before"  # cached on the second server
            edited = admin.patch(f"{LOCATIONS}/{location['id']}", json={"prefix": "after", "skipValidation": True})
            assert edited.status_code == 200, edited.text
            _eventually(lambda: prefix() == "after", "serving the edited location from the other server")
            assert admin.delete(f"{LOCATIONS}/{location['id']}").status_code == 204
            _eventually(lambda: agent.get(path).status_code == 404, "forgetting the deleted location")


def test_the_feed_survives_a_lost_connection(pg_url: str, server_factory: Callable[..., StowageServer]) -> None:
    """Killing the listening backend: the server reconnects and keeps hearing notices."""
    first, second = _pair(server_factory, pg_url)
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN stowage_changes%'"
        ).fetchall()
    assert len(killed) == 2  # one listener per server
    with first.client() as admin:
        token = admin.post("/api/v1/projects/default/clusters", json={"name": "again"}).json()["agentToken"]
        with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {token}"}) as agent:
            assert agent.post("/api/v1/agent/heartbeat", json={"version": "1"}).status_code == 200
            time.sleep(1.5)  # the retry delay after the lost connection
            assert admin.post("/api/v1/projects/default/clusters/again/revoke-token").status_code == 200
            _eventually(
                lambda: agent.post("/api/v1/agent/heartbeat", json={"version": "1"}).status_code == 401,
                "refusing the revoked token after the feed reconnected",
            )
