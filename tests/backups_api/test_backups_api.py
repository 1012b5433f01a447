"""Backups through the real HTTP API of a real server process: requests, validation, roles, the agents' job
protocol (claim, lease, progress, logs, completion), lost agents, and schedules.

The agent is played over its real wire protocol with the cluster's agent token (no Kubernetes here: the
engine's own tests and the round trip in ``test_round_trip.py`` use a real kube-apiserver).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from stowage.store.database import Database
from stowage.store.tables import Backup, BackupSchedule
from tests.agents.helpers import agent_client, create_location, register
from tests.support.servers import StowageServer

FAST = {"STOWAGE_SCHEDULER_TICK_SECONDS": "1", "STOWAGE_BACKUP_LEASE_SECONDS": "5"}
BACKUPS = "/api/v1/projects/default/clusters/{cluster}/backups"


def _setup(server: StowageServer, cluster: str = "prod") -> tuple[httpx.Client, dict[str, Any]]:
    http = server.client()
    if not http.get("/api/v1/projects/default/backup-locations").json()["items"]:
        create_location(http, "primary")
    return http, register(http, cluster)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def test_backup_requests_are_validated_with_clear_messages(server: StowageServer) -> None:
    http, cluster = _setup(server, "validated")
    url = BACKUPS.format(cluster=cluster["name"])
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"backupName": "Nightly_1"}, "backupName", "nightly-1"),
        ({"backupName": "ok", "labelSelector": "app=web,,"}, "labelSelector", "kubectl get -l"),
        ({"backupName": "ok", "namespaces": ["Prod"]}, "namespaces", "namespace name"),
        ({"backupName": "ok", "namespaces": ["a"], "excludedNamespaces": ["a"]}, "excludedNamespaces", "both"),
        ({"backupName": "ok", "includedResources": ["Deployments!"]}, "includedResources", "resource name"),
        ({"backupName": "ok", "backupLocationId": "nope"}, "backupLocationId", "stowage locations list"),
    ]
    for body, field, hint in cases:
        answer = http.post(url, json=body)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()
        assert error["details"]["field"] == field, error
        assert hint in error["message"], error
    # Schema-level refusals are 422 too, never 500.
    for body in ({"backupName": "ok", "durationInHours": 0}, {"backupName": "ok", "includeClusterResourceMode": "x"}):
        assert http.post(url, json=body).status_code == 422
    assert http.post(url, json={"backupName": "ok", "typo": 1}).status_code == 422
    assert http.post(BACKUPS.format(cluster="ghost"), json={"backupName": "ok"}).status_code == 404

    created = http.post(url, json={"backupName": "first"})
    assert created.status_code == 202, created.text
    duplicate = http.post(url, json={"backupName": "first"})
    assert duplicate.status_code == 409 and "already has a backup named 'first'" in duplicate.json()["message"]


def test_a_project_without_a_location_is_told_to_add_one(server_factory: Any) -> None:
    server = server_factory()
    with server.client() as http:
        cluster = register(http, "lonely")
        answer = http.post(BACKUPS.format(cluster=cluster["name"]), json={"backupName": "b1"})
    assert answer.status_code == 409
    assert "no default backup location" in answer.json()["message"]


def test_roles_viewer_reads_editor_backs_up_admin_deletes(server: StowageServer) -> None:
    http, cluster = _setup(server, "roles")
    url = BACKUPS.format(cluster=cluster["name"])
    tokens = {}
    for role in ("viewer", "editor"):
        tokens[role] = http.post("/api/v1/tokens", json={"name": f"{role}-t", "role": role}).json()["token"]
    with server.client(tokens["viewer"]) as viewer:
        assert viewer.post(url, json={"backupName": "v1"}).status_code == 403
        assert viewer.get(url).status_code == 200
    with server.client(tokens["editor"]) as editor:
        assert editor.post(url, json={"backupName": "e1"}).status_code == 202
        assert editor.delete(f"{url}/e1").status_code == 403
    assert http.delete(f"{url}/e1").status_code == 202


def test_job_protocol_claim_progress_logs_and_completion(server: StowageServer) -> None:
    http, cluster = _setup(server, "protocol")
    other = register(http, "other")
    url = BACKUPS.format(cluster=cluster["name"])
    body = {
        "backupName": "full",
        "namespaces": ["shop", "web"],
        "excludedResources": ["secrets"],
        "labelSelector": "app in (a,b)",
        "includeClusterResourceMode": "Never",
        "includeAllDisks": True,
        "durationInHours": 48,
    }
    created = http.post(url, json=body).json()
    assert created["phase"] == "New" and created["progress"] == {"totalItems": 0, "itemsBackedUp": 0}
    expires = datetime.fromisoformat(created["expirationTime"]) - datetime.fromisoformat(created["createdAt"])
    assert expires == timedelta(hours=48)
    assert created["storagePrefix"].endswith(f"clusters/{cluster['id']}/backups/full")

    with agent_client(server, cluster["agentToken"]) as agent, agent_client(server, other["agentToken"]) as stranger:
        work = agent.post("/api/v1/agent/heartbeat", json={"version": "t"}).json()["work"]
        assert [w["kind"] for w in work] == ["backup"]
        job = work[0]
        assert job["params"]["request"]["namespaces"] == ["shop", "web"]
        assert job["params"]["labels"]["velero.io/storage-location"] == "primary"
        assert stranger.post("/api/v1/agent/heartbeat", json={}).json()["work"] == []
        assert stranger.post(f"/api/v1/agent/jobs/{job['id']}/claim").status_code == 404

        claim = agent.post(f"/api/v1/agent/jobs/{job['id']}/claim")
        assert claim.status_code == 200, claim.text
        assert claim.json()["leaseSeconds"] > 0
        again = agent.post(f"/api/v1/agent/jobs/{job['id']}/claim")
        assert again.status_code == 409 and again.json()["details"]["phase"] == "InProgress"
        assert agent.post("/api/v1/agent/heartbeat", json={}).json()["work"] == []

        lines = [{"at": _now(), "level": "info", "message": f"listed page {i}"} for i in range(3)]
        progress = agent.post(
            f"/api/v1/agent/jobs/{job['id']}/progress", json={"totalItems": 10, "itemsBackedUp": 4, "logs": lines}
        )
        assert progress.status_code == 200 and progress.json()["cancel"] is False
        running = http.get(f"{url}/full").json()
        assert running["phase"] == "InProgress" and running["progress"] == {"totalItems": 10, "itemsBackedUp": 4}
        page = http.get(f"{url}/full/logs").json()
        assert [x["message"] for x in page["lines"]] == ["listed page 0", "listed page 1", "listed page 2"]
        assert page["finished"] is False
        tail = http.get(f"{url}/full/logs", params={"after": page["nextAfter"]}).json()
        assert tail["lines"] == []
        contents = http.get(f"{url}/full/contents")
        assert contents.status_code == 409 and "once it has completed" in contents.json()["message"]

        done = agent.post(
            f"/api/v1/agent/jobs/{job['id']}/complete",
            json={
                "phase": "PartiallyFailed",
                "totalItems": 10,
                "itemsBackedUp": 10,
                "sizeBytes": 12345,
                "warnings": [{"message": "skipped", "namespace": "shop", "resource": "pods", "name": "p"}],
                "errors": [{"message": "snapshot of PV pv-1 failed: add ec2:CreateSnapshot"}],
                "volumeSnapshots": [
                    {"pvName": "pv-0", "snapshotId": "snap-1", "volumeId": "vol-1", "region": "eu-west-1"}
                ],
                "logs": [{"at": _now(), "level": "info", "message": "done"}],
            },
        )
        assert done.status_code == 200, done.text
        # Reporting after the end is refused: the agent stops working on it.
        late = agent.post(f"/api/v1/agent/jobs/{job['id']}/progress", json={})
        assert late.status_code == 409

    final = http.get(f"{url}/full").json()
    assert final["phase"] == "PartiallyFailed"
    assert (final["warnings"], final["errors"], final["volumeSnapshots"], final["sizeBytes"]) == (1, 1, 1, 12345)
    assert final["startTime"] and final["completionTime"]
    logs = http.get(f"{url}/full/logs").json()
    assert logs["finished"] is True and logs["lines"][-1]["message"] == "done"
    listing = http.get(url).json()
    assert listing["total"] >= 1 and listing["items"][0]["backupName"] == "full"
    # The outcome is in /metrics too (one PartiallyFailed backup of 10 objects so far on this server).
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'stowage_backups_total{phase="PartiallyFailed"} 1.0' in metrics, metrics[:2000]
    # The agent's job reports count as heartbeats: the cluster stayed connected.
    assert http.get(f"/api/v1/projects/default/clusters/{cluster['id']}").json()["status"] == "connected"


def test_a_vanished_agent_leaves_a_failed_backup_with_the_reason(server_factory: Any) -> None:
    server = server_factory(extra_env=FAST)
    http, cluster = _setup(server, "vanish")
    url = BACKUPS.format(cluster=cluster["name"])
    http.post(url, json={"backupName": "orphan"})
    with agent_client(server, cluster["agentToken"]) as agent:
        job = agent.post("/api/v1/agent/heartbeat", json={}).json()["work"][0]
        assert agent.post(f"/api/v1/agent/jobs/{job['id']}/claim").status_code == 200
        deadline = time.monotonic() + 30
        while http.get(f"{url}/orphan").json()["phase"] == "InProgress" and time.monotonic() < deadline:
            time.sleep(0.5)
        backup = http.get(f"{url}/orphan").json()
        assert backup["phase"] == "Failed"
        assert "stopped reporting" in backup["failureReason"] and "run the backup again" in backup["failureReason"]
        # An agent that comes back late is told to stop.
        assert agent.post(f"/api/v1/agent/jobs/{job['id']}/progress", json={}).status_code == 409


def test_schedules_validate_and_fire(server_factory: Any) -> None:
    server = server_factory(extra_env=FAST)
    http, cluster = _setup(server, "sched")
    url = f"/api/v1/projects/default/clusters/{cluster['name']}/backup-schedule"
    assert http.get(url).status_code == 404
    bad_cron = http.put(url, json={"backupPrefix": "daily", "schedule": "every day"})
    assert bad_cron.status_code == 422 and bad_cron.json()["details"]["field"] == "schedule"
    long_prefix = http.put(url, json={"backupPrefix": "p" * 50, "schedule": "0 0 * * 0"})
    assert long_prefix.status_code == 422 and "at most" in long_prefix.json()["message"]

    saved = http.put(url, json={"backupPrefix": "weekly", "schedule": "0 0 * * 0", "namespaces": ["shop"]})
    assert saved.status_code == 200, saved.text
    schedule = saved.json()
    assert schedule["preset"] == "weekly" and schedule["paused"] is False
    assert datetime.fromisoformat(schedule["nextRunAt"]).weekday() == 6  # Sunday, midnight UTC

    paused = http.post(f"{url}/pause", json={"paused": True}).json()
    assert paused["paused"] is True
    http.post(f"{url}/pause", json={"paused": False})

    # Make it due (the test controls the clock through the due time) and let the tick fire it.
    due = datetime(2026, 1, 4, 0, 0, tzinfo=UTC)
    db = Database(f"sqlite:///{server.data_dir / 'stowage.db'}")
    try:
        with db.session() as session:
            session.execute(update(BackupSchedule).values(next_run_at=due))
        deadline = time.monotonic() + 20
        name = f"weekly-{cluster['name']}-20260104000000"
        while (
            time.monotonic() < deadline
            and http.get(f"{BACKUPS.format(cluster=cluster['name'])}/{name}").status_code == 404
        ):
            time.sleep(0.3)
        backup = http.get(f"{BACKUPS.format(cluster=cluster['name'])}/{name}").json()
        assert backup["scheduleName"] == "weekly" and backup["namespaces"] == ["shop"]
        assert backup["createdBy"] == "schedule"
        after = http.get(url).json()
        assert after["lastBackupName"] == name and datetime.fromisoformat(after["nextRunAt"]) > datetime.now(UTC)
    finally:
        db.dispose()
    assert http.delete(url).status_code == 204
    assert http.get(url).status_code == 404


@pytest.mark.pg
def test_two_servers_on_postgres_create_each_scheduled_backup_exactly_once(pg_url: str, server_factory: Any) -> None:
    first = server_factory(database_url=pg_url, extra_env=FAST)
    second = server_factory(database_url=pg_url, extra_env={**FAST, "STOWAGE_ADMIN_TOKEN": first.admin_token})
    http, _ = _setup(first, "seed")
    clusters = [register(http, f"pg-{i}") for i in range(5)]
    for cluster in clusters:
        answer = http.put(
            f"/api/v1/projects/default/clusters/{cluster['id']}/backup-schedule",
            json={"backupPrefix": "nightly", "schedule": "0 2 * * *"},
        )
        assert answer.status_code == 200, answer.text
    db = Database(pg_url)
    try:
        for round_ in range(3):
            due = datetime(2026, 3, 1 + round_, 2, 0, tzinfo=UTC)
            with db.session() as session:
                session.execute(update(BackupSchedule).values(next_run_at=due))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with db.session() as session:
                    count = session.scalar(select(func.count()).select_from(Backup))
                if count == len(clusters) * (round_ + 1):
                    break
                time.sleep(0.3)
            time.sleep(2.5)  # both servers have ticked at least twice more: nothing may be created again
        with db.session() as session:
            names = session.scalars(select(Backup.name)).all()
    finally:
        db.dispose()
    assert len(names) == len(set(names)) == len(clusters) * 3
    with second.client(first.admin_token) as other:
        listed = other.get(f"/api/v1/projects/default/clusters/{clusters[0]['id']}/backups")
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 3
