"""PostgreSQL restarted under a running server: it recovers without a restart of its own.

The test runs its own throw-away PostgreSQL (initdb + pg_ctl on a free port), so restarting it (``pg_ctl stop -m
fast``: every connection cut) disturbs no other test. After the restart the API answers again within seconds,
``/readyz`` is ready, writes succeed, and the scheduler keeps ticking: a backup claimed by an agent that then
goes silent is failed by the lost-job check, which only the scheduler's periodic tick runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import psycopg

from tests.agents.helpers import agent_client, create_location, register
from tests.faults.conftest import OwnPostgres
from tests.support.servers import StowageServer


def _periodic_defers(database_url: str) -> int:
    """The latest timestamp for which procrastinate deferred a periodic tick (0 before the first)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT coalesce(max(defer_timestamp), 0) FROM procrastinate_periodic_defers").fetchone()
    return int(row[0]) if row else 0


def test_the_server_recovers_when_postgresql_restarts(
    own_postgres: OwnPostgres, server_factory: Callable[..., StowageServer]
) -> None:
    # own_postgres first: fixtures end in reverse order, so the server stops before its database does.
    database_url = own_postgres.create_database(f"stowage_{uuid.uuid4().hex[:8]}")
    server = server_factory(
        database_url=database_url,
        extra_env={"STOWAGE_SCHEDULER_TICK_SECONDS": "1", "STOWAGE_BACKUP_LEASE_SECONDS": "5"},
    )
    http = server.client()
    http.timeout = httpx.Timeout(10)
    assert http.get("/api/v1/projects").status_code == 200
    create_location(http, "primary")
    cluster = register(http, "pg-restart")
    # Fill the pools: requests and the scheduler have connections open when the database goes away.
    for _ in range(20):
        assert http.get("/api/v1/projects").status_code == 200
    time.sleep(2)
    ticks_before = _periodic_defers(database_url)
    assert ticks_before > 0, "the scheduler never ticked before the restart"

    restarted_at = time.monotonic()
    own_postgres.restart()
    restart_seconds = time.monotonic() - restarted_at

    failures: list[str] = []
    recovered: float | None = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer = http.get("/api/v1/projects")
        except httpx.HTTPError as exc:
            failures.append(type(exc).__name__)
        else:
            if answer.status_code == 200:
                recovered = time.monotonic() - restarted_at
                break
            failures.append(str(answer.status_code))
        time.sleep(0.2)
    assert recovered is not None, f"the API did not recover within 30 s: {failures[-5:]}; see {server.log}"
    ready = http.get("/readyz")
    # Every request after the first success is served (the pool has thrown out every dead connection).
    later = [http.get("/api/v1/projects").status_code for _ in range(20)]

    # The scheduler: a backup claimed by an "agent" that never reports must be failed by the lost-job check.
    created = http.post("/api/v1/projects/default/clusters/pg-restart/backups", json={"backupName": "after-restart"})
    assert created.status_code == 202, created.text
    with agent_client(server, cluster["agentToken"]) as agent:
        work = agent.post("/api/v1/agent/heartbeat", json={"version": "test"}).json()["work"]
        job = next(w for w in work if w["kind"] == "backup")
        assert agent.post(f"/api/v1/agent/jobs/{job['id']}/claim").status_code == 200
    failed_after: float | None = None
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        backup = http.get("/api/v1/projects/default/clusters/pg-restart/backups/after-restart").json()
        if backup["phase"] == "Failed":
            failed_after = time.monotonic() - restarted_at
            break
        time.sleep(0.5)
    ticks_after = _periodic_defers(database_url)
    http.close()
    print(
        f"\nPostgreSQL restarted in {restart_seconds:.1f} s: API answered again {recovered:.1f} s after the restart "
        f"began, {len(failures)} failed requests on the way ({sorted(set(failures))}); readyz {ready.status_code}; "
        f"next 20 requests {sorted(set(later))}; scheduler ticks deferred up to {ticks_after - ticks_before} s "
        f"after the last one before; silent agent's backup failed by the tick "
        f"{f'{failed_after:.1f} s' if failed_after else 'never'} after the restart"
    )
    assert recovered < 15
    assert ready.status_code == 200, ready.text
    assert later == [200] * 20
    assert failed_after is not None, f"the scheduler stopped ticking after the database restart; see {server.log}"
    assert "stopped reporting" in backup["failureReason"]
    assert ticks_after > ticks_before + restart_seconds
