"""Scheduled re-validation: two real server processes on one real PostgreSQL database, and SQLite in-process.

The control plane has no AWS identity here, so every scheduled validation ends `Unavailable`; what is under
test is that each due validation runs exactly once and its outcome is recorded.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from stowage.store.database import Database
from stowage.store.tables import Location, ValidationRecord
from tests.support.databases import drop_pg_database

FAST = {"STOWAGE_SCHEDULER_TICK_SECONDS": "1"}


def _create(server, names: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    with server.client() as http:
        for name in names:
            body = {
                "name": name,
                "bucket": f"{name}-bucket",
                "region": "us-east-1",
                "skipValidation": True,
                "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/r"},
            }
            answer = http.post("/api/v1/projects/default/backup-locations", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


def _make_due(url: str, ids: list[str]) -> None:
    db = Database(url)
    with db.session() as session:
        session.execute(
            update(Location)
            .where(Location.id.in_(ids))
            .values(next_validation_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    db.dispose()


def _scheduled_counts(url: str, ids: list[str]) -> dict[str, int]:
    db = Database(url)
    with db.session() as session:
        rows = session.execute(
            select(ValidationRecord.location_id, func.count())
            .where(ValidationRecord.location_id.in_(ids), ValidationRecord.trigger == "schedule")
            .group_by(ValidationRecord.location_id)
        ).all()
    db.dispose()
    return {location_id: int(count) for location_id, count in rows}


def _wait_for_all(url: str, ids: list[str], timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = _scheduled_counts(url, ids)
        if len(counts) == len(ids):
            return counts
        time.sleep(0.5)
    pytest.fail(f"not every due location was re-validated in {timeout} s: {counts}")


def test_two_servers_on_one_postgres_run_each_due_validation_exactly_once(pg_url: str, server_factory) -> None:  # type: ignore[no-untyped-def]
    first = server_factory(database_url=pg_url, extra_env=FAST)
    second = server_factory(database_url=pg_url, extra_env={**FAST, "STOWAGE_ADMIN_TOKEN": first.admin_token})
    ids = _create(first, [f"due-{i}" for i in range(8)])
    _make_due(pg_url, ids)
    _wait_for_all(pg_url, ids)
    time.sleep(4)  # several more ticks on both servers: nothing may run twice
    assert _scheduled_counts(pg_url, ids) == dict.fromkeys(ids, 1)
    with second.client(first.admin_token) as http:
        location = http.get(f"/api/v1/projects/default/backup-locations/{ids[0]}").json()
        history = http.get(f"/api/v1/projects/default/backup-locations/{ids[0]}/validations").json()
    assert location["status"] == "Unavailable" and location["lastValidatedAt"]
    assert history[0]["trigger"] == "schedule" and history[0]["report"]["ok"] is False


def test_sqlite_server_runs_scheduled_validations_in_process(server_factory) -> None:  # type: ignore[no-untyped-def]
    srv = server_factory(extra_env=FAST)
    url = f"sqlite:///{srv.data_dir / 'stowage.db'}"
    ids = _create(srv, ["solo-a", "solo-b"])
    _make_due(url, ids)
    _wait_for_all(url, ids)
    time.sleep(3)
    assert _scheduled_counts(url, ids) == dict.fromkeys(ids, 1)


def test_a_server_whose_database_vanished_still_stops_promptly(pg_url: str, server_factory) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM must end the process even while procrastinate and the change feed retry a lost database."""
    srv = server_factory(database_url=pg_url)
    drop_pg_database(pg_url)
    started = time.monotonic()
    srv.stop()  # SIGTERM, then SIGKILL after 10 s
    assert time.monotonic() - started < 8
