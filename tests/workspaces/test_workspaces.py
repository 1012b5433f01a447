"""Workspaces: the service on a real SQLite database with a clock the test controls (RPO status flips), and
the HTTP API of a real server process (CRUD, validation, roles, skipped clusters, protection report).

The agents are played over the services' job protocol in-process here; the real agent processes against
real kube-apiservers are in ``test_workspaces_e2e.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from stowage.domain.access import Principal
from stowage.domain.backups import BackupOutcome, BackupPhase, BackupRequest
from stowage.domain.protection import Risk, assess
from stowage.services.backups import BackupService
from stowage.services.clusters import AgentPrincipal, ClusterService
from stowage.services.restores import RestoreService
from stowage.services.tenancy import TenancyService
from stowage.services.workspaces import WorkspaceService, roll_up_phase
from stowage.store.database import Database
from stowage.store.tables import Cluster, Location, Project
from tests.agents.helpers import agent_client, create_location, register
from tests.support.servers import StowageServer


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    db: Database
    clock: Clock
    principal: Principal
    clusters: dict[str, str]
    backups: BackupService
    workspaces: WorkspaceService

    def heartbeat(self, *names: str) -> None:
        with self.db.session() as session:
            for name in names:
                session.execute(
                    update(Cluster).where(Cluster.id == self.clusters[name]).values(last_heartbeat_at=self.clock.now)
                )

    def agent(self, name: str) -> AgentPrincipal:
        with self.db.session() as session:
            project = session.query(Project).one()
            return AgentPrincipal(self.clusters[name], name, project.id, project.name, project.tenant_id, None)

    def finish(self, name: str, backup_id: str, phase: BackupPhase = BackupPhase.COMPLETED) -> None:
        agent = self.agent(name)
        self.backups.claim(agent, backup_id)
        self.backups.complete(agent, backup_id, BackupOutcome(phase=phase, total_items=3, items_backed_up=3))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(f"sqlite:///{tmp_path / 'ws.db'}")
    db.migrate()
    clock = Clock(datetime(2026, 12, 1, 1, 0, tzinfo=UTC))
    tenancy = TenancyService(db)
    tenancy.bootstrap(data_dir=tmp_path, admin_token="stw_admin_token_for_tests")
    principal = tenancy.authenticate("stw_admin_token_for_tests")
    clusters = ClusterService(db=db)
    ids = {name: clusters.register(principal, "default", name=name)[1].id for name in ("one", "two", "three")}
    with db.session() as session:
        project = session.query(Project).one()
        session.add(
            Location(
                project_id=project.id,
                name="primary",
                provider="aws",
                bucket="b",
                region="eu-west-1",
                credential_type="sts",
                role_arn="arn:aws:iam::222222222222:role/r",
                is_default=True,
            )
        )
    backups = BackupService(db=db, locations=None, storage=None, ref_factory=lambda *a: None, clock=clock)  # type: ignore[arg-type]
    restores = RestoreService(db=db, clock=clock)
    workspaces = WorkspaceService(db=db, backups=backups, restores=restores, clock=clock, rpo_grace=timedelta(hours=1))
    yield World(db, clock, principal, ids, backups, workspaces)
    db.dispose()


def test_a_workspace_backup_skips_disconnected_clusters_and_reports_them(world: World) -> None:
    ws = world.workspaces.create(world.principal, "default", name="payments", cluster_refs=["one", "two", "three"])
    assert [c.name for c in ws.clusters] == ["one", "three", "two"]
    world.heartbeat("one", "two")  # three's agent never connected
    backup = world.workspaces.backup(world.principal, "default", "payments", name="b1", request=BackupRequest())
    assert sorted(p.cluster_name for p in backup.parts) == ["one", "two"]
    assert [s["clusterName"] for s in backup.skipped] == ["three"]
    assert "disconnected" in backup.skipped[0]["reason"]
    assert backup.phase == "New"
    for part in backup.parts:
        world.finish(part.cluster_name, world.backups.get(world.principal, "default", part.cluster_id, part.name).id)
    done = world.workspaces.get_backup(world.principal, "default", "payments", "b1")
    # Both backups completed, but a cluster was skipped: the request as a whole is not Completed.
    assert done.phase == "PartiallyFailed"
    assert {p.phase for p in done.parts} == {"Completed"}


def test_rpo_status_flips_to_late_then_missed_when_scheduled_runs_leave_no_backup(world: World) -> None:
    world.workspaces.create(world.principal, "default", name="core", cluster_refs=["one", "two"])
    statuses, _ = world.workspaces.protection(world.principal, "default")
    assert {s.name: s.protection.risk for s in statuses} == {"one": Risk.NEVER, "three": Risk.NEVER, "two": Risk.NEVER}

    world.workspaces.set_schedule(
        world.principal,
        "default",
        "core",
        backup_prefix="daily",
        schedule="0 2 * * *",
        paused=False,
        request=BackupRequest(),
    )
    # 02:00 on Dec 1: the schedule fires (the test's clock), both agents are connected and finish by 02:05.
    world.clock.now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    world.heartbeat("one", "two")
    assert world.workspaces.create_due_scheduled() == ["daily-20261201020000"]
    assert world.workspaces.create_due_scheduled() == []  # exactly once
    world.clock.now = datetime(2026, 12, 1, 2, 5, tzinfo=UTC)
    scheduled = world.workspaces.get_backup(world.principal, "default", "core", "daily-20261201020000")
    for part in scheduled.parts:
        world.finish(part.cluster_name, world.backups.get(world.principal, "default", part.cluster_id, part.name).id)

    def risks() -> dict[str, Risk]:
        clusters, workspaces = world.workspaces.protection(world.principal, "default")
        found = {s.name: s.protection.risk for s in clusters}
        found["core"] = workspaces[0].protection.risk
        return found

    world.clock.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert risks() == {"one": Risk.ON_TIME, "two": Risk.ON_TIME, "three": Risk.NEVER, "core": Risk.ON_TIME}
    # Dec 2, 02:30: the 02:00 run is due but within its grace hour.
    world.clock.now = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
    assert risks()["core"] is Risk.ON_TIME
    # Dec 2, 04:00: the control plane was down, nothing ran: late.
    world.clock.now = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    assert risks() == {"one": Risk.LATE, "two": Risk.LATE, "three": Risk.NEVER, "core": Risk.LATE}
    # Dec 3, 04:00: two runs in a row left nothing: missed.
    world.clock.now = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
    assert risks()["core"] is Risk.MISSED
    _, workspaces = world.workspaces.protection(world.principal, "default")
    assert workspaces[0].protection.next_scheduled_at is not None

    # A backup that fails makes the cluster "failing" whatever the schedule says.
    world.heartbeat("one")
    failed = world.backups.create(world.principal, "default", "one", name="manual", request=BackupRequest())
    world.finish("one", failed.id, BackupPhase.FAILED)
    assert risks()["one"] is Risk.FAILING


def test_assess_without_a_schedule_and_roll_up_phases() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    common: dict[str, Any] = {"now": now, "schedule": None, "paused": False, "next_run": None, "grace": hour}
    assert assess(last_success=None, last_finished_phase=None, **common).risk is Risk.NEVER
    assert assess(last_success=now - hour, last_finished_phase="Completed", **common).risk is Risk.ON_TIME
    assert roll_up_phase(["Completed", "Completed"], 0) == "Completed"
    assert roll_up_phase(["Completed", "InProgress"], 0) == "InProgress"
    assert roll_up_phase(["New", "New"], 1) == "New"
    assert roll_up_phase(["Failed", "Failed"], 0) == "Failed"
    assert roll_up_phase(["Failed", "Completed"], 0) == "PartiallyFailed"
    assert roll_up_phase(["Completed", "Deleting"], 0) == "Deleting"


def test_workspaces_api_validation_roles_and_protection(server: StowageServer) -> None:
    http = server.client()
    create_location(http, "ws-primary")
    a, b = register(http, "ws-a"), register(http, "ws-b")
    base = "/api/v1/projects/default/workspaces"
    bad = http.post(base, json={"name": "Bad Name"})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "name"
    unknown = http.post(base, json={"name": "w1", "clusterIds": ["ghost"]})
    assert unknown.status_code == 422 and "ghost" in unknown.json()["message"]
    created = http.post(base, json={"name": "w1", "clusterIds": [a["id"]]})
    assert created.status_code == 201, created.text
    assert http.post(base, json={"name": "w1"}).status_code == 409
    added = http.put(f"{base}/w1/clusters/{b['name']}").json()
    assert sorted(c["clusterName"] for c in added["clusters"]) == ["ws-a", "ws-b"]
    assert added["protection"]["risk"] == "never"

    with agent_client(server, a["agentToken"]) as agent:
        agent.post("/api/v1/agent/heartbeat", json={})
    backup = http.post(f"{base}/w1/backups", json={"backupName": "wb1", "namespaces": ["shop"]})
    assert backup.status_code == 202, backup.text
    body = backup.json()
    assert [c["clusterName"] for c in body["clusters"]] == ["ws-a"]
    assert body["clusters"][0]["name"] == "wb1-ws-a"
    assert [s["clusterName"] for s in body["skipped"]] == ["ws-b"]
    assert http.get("/api/v1/projects/default/clusters/ws-a/backups/wb1-ws-a").json()["namespaces"] == ["shop"]
    assert len(http.get(f"{base}/w1/backups").json()) == 1

    schedule = http.put(f"{base}/w1/backup-schedule", json={"backupPrefix": "nightly", "schedule": "0 2 * * *"})
    assert schedule.status_code == 200 and schedule.json()["nextRunAt"]
    assert http.put(f"{base}/w1/backup-schedule", json={"backupPrefix": "n", "schedule": "nope"}).status_code == 422

    report = http.get("/api/v1/projects/default/protection").json()
    risks = {c["clusterName"]: c["protection"]["risk"] for c in report["clusters"]}
    assert risks["ws-a"] == "never" and risks["ws-b"] == "never"
    assert report["workspaces"][0]["protection"]["nextScheduledAt"]

    tokens = {
        r: http.post("/api/v1/tokens", json={"name": f"{r}-ws", "role": r}).json()["token"]
        for r in ("viewer", "editor")
    }
    with server.client(tokens["viewer"]) as viewer:
        assert viewer.get(base).status_code == 200
        assert viewer.post(f"{base}/w1/backups", json={"backupName": "v"}).status_code == 403
    with server.client(tokens["editor"]) as editor:
        assert editor.delete(f"{base}/w1/backups/wb1").status_code == 403
        assert editor.delete(f"{base}/w1").status_code == 403
    assert http.delete(f"{base}/w1/backups/wb1").status_code == 202
    assert http.delete(f"{base}/w1").status_code == 204
    assert http.get(f"{base}/w1").status_code == 404
    http.close()
