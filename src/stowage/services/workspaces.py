"""Workspaces: named groups of clusters of one project, backed up and restored together, with RPO status.

A workspace backup is one request that creates one ordinary backup per cluster (each in its own cluster
prefix, in Velero's layout); clusters whose agent is disconnected are skipped and reported with the reason.
A workspace restore restores the chosen namespaces on every cluster still in the workspace from that
request's backups. Protection status compares each cluster's last successful backup with its schedule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stowage import errors
from stowage.domain.access import Permission, Principal
from stowage.domain.backups import BackupPhase, BackupRequest, backup_name_problem, request_problems
from stowage.domain.clusters import ConnectionStatus, connection_status
from stowage.domain.protection import Protection, assess, roll_up
from stowage.domain.restores import RestoreRequest
from stowage.domain.schedules import next_run, schedule_problem, scheduled_backup_name
from stowage.services.backups import BackupService, changed_rows, raise_problems, resolve_location
from stowage.services.restores import RestoreService
from stowage.services.tenancy import load_project, require
from stowage.store.database import Database
from stowage.store.tables import (
    Backup,
    BackupSchedule,
    Cluster,
    Project,
    Restore,
    Workspace,
    WorkspaceBackup,
    WorkspaceCluster,
    WorkspaceRestore,
    utcnow,
)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Backup names are <name>-<cluster> per cluster; the workspace part leaves room for the cluster's name.
WORKSPACE_BACKUP_NAME_MAX = 40
_TIMESTAMP_CHARS = 15  # "-YYYYMMDDhhmmss"


def workspace_name_problem(name: str) -> str | None:
    """Why a workspace name cannot be used; None when fine."""
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"Workspace name {name!r} is not valid: use 1 to 63 lowercase letters, digits and '-', starting and "
            'ending with a letter or digit, like "payments".'
        )
    return None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """A cluster as a workspace shows it: connection and protection."""

    id: str
    name: str
    connected: bool
    protection: Protection


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    """A workspace, its clusters and its roll-up protection status."""

    id: str
    name: str
    project: str
    clusters: list[ClusterStatus]
    protection: Protection
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PartView:
    """One cluster's part of a workspace backup or restore."""

    cluster_id: str
    cluster_name: str
    name: str
    phase: str
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class WorkspaceBackupView:
    """A workspace backup: the roll-up phase, each cluster's backup, and the clusters skipped."""

    id: str
    name: str
    workspace: str
    phase: str
    parts: list[PartView]
    skipped: list[dict[str, Any]]
    request: BackupRequest
    schedule_name: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkspaceRestoreView:
    """A workspace restore: the roll-up phase, each cluster's restore, and the clusters skipped."""

    id: str
    name: str
    workspace: str
    backup_name: str
    phase: str
    parts: list[PartView]
    skipped: list[dict[str, Any]]
    created_at: datetime


def roll_up_phase(phases: Sequence[str], skipped: int) -> str:
    """One phase for many: running while any runs; Completed only when all completed and none was skipped."""
    if not phases:
        return BackupPhase.FAILED.value
    if BackupPhase.DELETING.value in phases:
        return BackupPhase.DELETING.value
    if all(p == BackupPhase.NEW.value for p in phases):
        return BackupPhase.NEW.value
    if any(p in (BackupPhase.NEW.value, BackupPhase.IN_PROGRESS.value) for p in phases):
        return BackupPhase.IN_PROGRESS.value
    if all(p == BackupPhase.FAILED.value for p in phases):
        return BackupPhase.FAILED.value
    if skipped or any(p != BackupPhase.COMPLETED.value for p in phases):
        return BackupPhase.PARTIALLY_FAILED.value
    return BackupPhase.COMPLETED.value


class WorkspaceService:
    """Use cases of workspaces; scoped to the caller's tenant; only admins delete."""

    def __init__(
        self,
        *,
        db: Database,
        backups: BackupService,
        restores: RestoreService,
        heartbeat_seconds: int = 30,
        rpo_grace: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._backups = backups
        self._restores = restores
        self._heartbeat = heartbeat_seconds
        self._grace = rpo_grace
        self._clock = clock

    # -- workspaces ------------------------------------------------------------------------------------
    def create(
        self, principal: Principal, project_ref: str, *, name: str, cluster_refs: Sequence[str] = ()
    ) -> WorkspaceView:
        """Create a workspace with some clusters (editors)."""
        require(principal, Permission.RUN_BACKUPS)
        name = name.strip()
        problem = workspace_name_problem(name)
        if problem:
            raise errors.InvalidInput(problem, field="name")
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            if session.scalar(select(Workspace.id).where(Workspace.project_id == project.id, Workspace.name == name)):
                raise errors.Conflict(f"A workspace named '{name}' already exists in project '{project.name}'.")
            clusters = _clusters(session, project, cluster_refs)
            row = Workspace(project_id=project.id, name=name, created_at=self._clock())
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise errors.Conflict(f"A workspace named '{name}' already exists.") from exc
            for cluster in clusters:
                session.add(WorkspaceCluster(workspace_id=row.id, cluster_id=cluster.id, added_at=self._clock()))
            session.flush()
            return self._view(session, project, row)

    def list_all(self, principal: Principal, project_ref: str) -> list[WorkspaceView]:
        """Workspaces of a project with their protection status."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            rows = session.scalars(select(Workspace).where(Workspace.project_id == project.id).order_by(Workspace.name))
            return [self._view(session, project, r) for r in rows]

    def get(self, principal: Principal, project_ref: str, ref: str) -> WorkspaceView:
        """One workspace by name or id."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project, row = _load(session, principal, project_ref, ref)
            return self._view(session, project, row)

    def set_clusters(
        self, principal: Principal, project_ref: str, ref: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> WorkspaceView:
        """Add and remove clusters (editors); a removed cluster keeps its backups."""
        require(principal, Permission.RUN_BACKUPS)
        with self._db.session() as session:
            project, row = _load(session, principal, project_ref, ref)
            for cluster in _clusters(session, project, add):
                if session.get(WorkspaceCluster, (row.id, cluster.id)) is None:
                    session.add(WorkspaceCluster(workspace_id=row.id, cluster_id=cluster.id, added_at=self._clock()))
            for cluster in _clusters(session, project, remove):
                session.execute(
                    delete(WorkspaceCluster).where(
                        WorkspaceCluster.workspace_id == row.id, WorkspaceCluster.cluster_id == cluster.id
                    )
                )
            session.flush()
            return self._view(session, project, row)

    def delete(self, principal: Principal, project_ref: str, ref: str) -> None:
        """Delete a workspace (admins) and all its backups (their objects are deleted by the control plane)."""
        require(principal, Permission.DELETE_BACKUPS)
        with self._db.session() as session:
            _, row = _load(session, principal, project_ref, ref)
            backup_ids = session.scalars(
                select(Backup.id).where(
                    Backup.workspace_backup_id.in_(
                        select(WorkspaceBackup.id).where(WorkspaceBackup.workspace_id == row.id)
                    )
                )
            ).all()
            session.delete(row)
        for backup_id in backup_ids:
            self._delete_backup_part(backup_id)

    # -- backups ---------------------------------------------------------------------------------------
    def backup(
        self,
        principal: Principal,
        project_ref: str,
        ref: str,
        *,
        name: str,
        request: BackupRequest,
        location_id: str | None = None,
        cluster_refs: Sequence[str] = (),
        include_all_clusters: bool = True,
    ) -> WorkspaceBackupView:
        """Back up clusters of a workspace under one request; disconnected agents are skipped and reported."""
        require(principal, Permission.RUN_BACKUPS)
        name = name.strip()
        problem = backup_name_problem(name) or (
            f"backupName may have at most {WORKSPACE_BACKUP_NAME_MAX} characters for a workspace backup (each "
            "cluster's backup is named <backupName>-<cluster>)."
            if len(name) > WORKSPACE_BACKUP_NAME_MAX
            else None
        )
        if problem:
            raise errors.InvalidInput(problem, field="backupName")
        raise_problems(request_problems(request))
        with self._db.session() as session:
            project, workspace = _load(session, principal, project_ref, ref)
            view = self._start_backup(
                session,
                project,
                workspace,
                name=name,
                request=request,
                location_id=location_id,
                cluster_refs=cluster_refs if not include_all_clusters else (),
                created_by=principal.subject,
                schedule_name=None,
            )
        return view

    def _start_backup(
        self,
        session: Session,
        project: Project,
        workspace: Workspace,
        *,
        name: str,
        request: BackupRequest,
        location_id: str | None,
        cluster_refs: Sequence[str],
        created_by: str,
        schedule_name: str | None,
    ) -> WorkspaceBackupView:
        if session.scalar(
            select(WorkspaceBackup.id).where(WorkspaceBackup.workspace_id == workspace.id, WorkspaceBackup.name == name)
        ):
            raise errors.Conflict(f"Workspace '{workspace.name}' already has a backup named '{name}'.")
        members = _members(session, workspace)
        if cluster_refs:
            wanted = {c.id for c in _clusters(session, project, cluster_refs)}
            outside = wanted - {c.id for c in members}
            if outside:
                raise errors.InvalidInput(
                    "clusterIds lists clusters that are not in the workspace; add them first.", field="clusterIds"
                )
            members = [c for c in members if c.id in wanted]
        if not members:
            raise errors.Conflict(f"Workspace '{workspace.name}' has no clusters to back up: add clusters first.")
        location = resolve_location(session, project, location_id)
        now = self._clock()
        row = WorkspaceBackup(
            workspace_id=workspace.id,
            name=name,
            request=request.to_json(),
            skipped=[],
            schedule_name=schedule_name,
            created_by=created_by[:200],
            created_at=now,
        )
        session.add(row)
        session.flush()
        skipped: list[dict[str, Any]] = []
        for cluster in members:
            status = connection_status(cluster.last_heartbeat_at, now=now, interval_seconds=self._heartbeat)
            part_name = f"{name}-{cluster.name}"[:63].rstrip("-")
            if status is not ConnectionStatus.CONNECTED:
                seen = cluster.last_heartbeat_at.isoformat(timespec="seconds") if cluster.last_heartbeat_at else "never"
                skipped.append(
                    {
                        "clusterId": cluster.id,
                        "clusterName": cluster.name,
                        "reason": f"The agent of cluster '{cluster.name}' is disconnected (last heartbeat: {seen}); "
                        "start it and back this cluster up again.",
                    }
                )
                continue
            if session.scalar(select(Backup.id).where(Backup.cluster_id == cluster.id, Backup.name == part_name)):
                skipped.append(
                    {
                        "clusterId": cluster.id,
                        "clusterName": cluster.name,
                        "reason": f"Cluster '{cluster.name}' already has a backup named '{part_name}'.",
                    }
                )
                continue
            part = self._backups.new_row(project, cluster, location, part_name, request, created_by=created_by)
            part.workspace_backup_id = row.id
            part.schedule_name = schedule_name
            session.add(part)
        row.skipped = skipped
        session.flush()
        return self._backup_view(session, workspace, row)

    def list_backups(self, principal: Principal, project_ref: str, ref: str) -> list[WorkspaceBackupView]:
        """A workspace's backups with roll-up and per-cluster phases, newest first."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, workspace = _load(session, principal, project_ref, ref)
            rows = session.scalars(
                select(WorkspaceBackup)
                .where(WorkspaceBackup.workspace_id == workspace.id)
                .order_by(WorkspaceBackup.created_at.desc())
            )
            return [self._backup_view(session, workspace, r) for r in rows]

    def get_backup(self, principal: Principal, project_ref: str, ref: str, name: str) -> WorkspaceBackupView:
        """One workspace backup."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, workspace = _load(session, principal, project_ref, ref)
            return self._backup_view(session, workspace, _load_backup(session, workspace, name))

    def delete_backup(self, principal: Principal, project_ref: str, ref: str, name: str) -> WorkspaceBackupView:
        """Delete a workspace backup (admins): every cluster's backup is deleted by the control plane."""
        require(principal, Permission.DELETE_BACKUPS)
        with self._db.session() as session:
            _, workspace = _load(session, principal, project_ref, ref)
            row = _load_backup(session, workspace, name)
            ids = session.scalars(select(Backup.id).where(Backup.workspace_backup_id == row.id)).all()
        for backup_id in ids:
            self._delete_backup_part(backup_id)
        with self._db.session() as session:
            row = _load_backup(session, workspace, name)
            view = self._backup_view(session, workspace, row)
            if not view.parts:
                session.delete(row)
            return view

    def _delete_backup_part(self, backup_id: str) -> None:
        now = self._clock()
        with self._db.session() as session:
            row = session.get(Backup, backup_id)
            if row is None:
                return
            if row.phase != BackupPhase.DELETING.value:
                row.cancel_requested = row.phase == BackupPhase.IN_PROGRESS.value
                row.phase = BackupPhase.DELETING.value
                row.deletion_requested_at = now
        self._backups.start_deletion(backup_id)

    # -- restores --------------------------------------------------------------------------------------
    def restore(
        self, principal: Principal, project_ref: str, ref: str, backup_name: str, *, request: RestoreRequest
    ) -> WorkspaceRestoreView:
        """Restore a workspace backup on every cluster still in the workspace (into the same cluster)."""
        require(principal, Permission.RUN_BACKUPS)
        now = self._clock()
        with self._db.session() as session:
            project, workspace = _load(session, principal, project_ref, ref)
            source = _load_backup(session, workspace, backup_name)
            members = {c.id: c for c in _members(session, workspace)}
            parts = session.scalars(select(Backup).where(Backup.workspace_backup_id == source.id)).all()
            row = WorkspaceRestore(
                workspace_id=workspace.id,
                workspace_backup_id=source.id,
                name=f"{source.name}-{now.strftime('%Y%m%d%H%M%S')}"[:63],
                request=request.to_json(),
                skipped=[],
                created_by=principal.subject[:200],
                created_at=now,
            )
            session.add(row)
            session.flush()
            restore_id = row.id
            plan = [(p.cluster_id, p.id, p.phase) for p in parts]
            # Names of every cluster of the backup, members or not, so a skip can name the cluster.
            names = {c.id: c.name for c in session.scalars(select(Cluster).where(Cluster.id.in_([p[0] for p in plan])))}
        skipped: list[dict[str, Any]] = []
        for cluster_id, backup_id, phase in plan:
            cluster = members.get(cluster_id)
            if cluster is None:
                skipped.append(
                    {
                        "clusterId": cluster_id,
                        "clusterName": names.get(cluster_id, cluster_id),
                        "reason": "The cluster is no longer in the workspace.",
                    }
                )
                continue
            if phase not in (BackupPhase.COMPLETED.value, BackupPhase.PARTIALLY_FAILED.value):
                skipped.append(
                    {"clusterId": cluster_id, "clusterName": cluster.name, "reason": f"Its backup is {phase}."}
                )
                continue
            try:
                view = self._restores.create(principal, project.id, cluster_id, backup_id, request=request)
            except errors.StowageError as exc:
                skipped.append({"clusterId": cluster_id, "clusterName": cluster.name, "reason": exc.message})
                continue
            with self._db.session() as session:
                session.execute(update(Restore).where(Restore.id == view.id).values(workspace_restore_id=restore_id))
        with self._db.session() as session:
            row = session.get_one(WorkspaceRestore, restore_id)
            row.skipped = skipped
            session.flush()
            return self._restore_view(session, workspace, row, source.name)

    def list_restores(self, principal: Principal, project_ref: str, ref: str) -> list[WorkspaceRestoreView]:
        """A workspace's restores, newest first."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, workspace = _load(session, principal, project_ref, ref)
            rows = session.scalars(
                select(WorkspaceRestore)
                .where(WorkspaceRestore.workspace_id == workspace.id)
                .order_by(WorkspaceRestore.created_at.desc())
            ).all()
            names = dict(
                session.execute(
                    select(WorkspaceBackup.id, WorkspaceBackup.name).where(
                        WorkspaceBackup.id.in_([r.workspace_backup_id for r in rows])
                    )
                )
                .tuples()
                .all()  # a Result has keys(), so dict() would take it for a mapping and fail
            )
            return [self._restore_view(session, workspace, r, names.get(r.workspace_backup_id, "?")) for r in rows]

    # -- schedules -------------------------------------------------------------------------------------
    def set_schedule(
        self,
        principal: Principal,
        project_ref: str,
        ref: str,
        *,
        backup_prefix: str,
        schedule: str,
        paused: bool,
        request: BackupRequest,
        location_id: str | None = None,
    ) -> BackupSchedule:
        """Create or replace a workspace's schedule (editors)."""
        require(principal, Permission.RUN_BACKUPS)
        schedule = " ".join(schedule.split())
        problem = schedule_problem(schedule)
        if problem:
            raise errors.InvalidInput(problem, field="schedule")
        prefix = backup_prefix.strip()
        problem = backup_name_problem(prefix, field_name="backupPrefix")
        if not problem and len(prefix) > WORKSPACE_BACKUP_NAME_MAX - _TIMESTAMP_CHARS:
            problem = f"backupPrefix may have at most {WORKSPACE_BACKUP_NAME_MAX - _TIMESTAMP_CHARS} characters."
        if problem:
            raise errors.InvalidInput(problem, field="backupPrefix")
        raise_problems(request_problems(request))
        now = self._clock()
        with self._db.session() as session:
            project, workspace = _load(session, principal, project_ref, ref)
            resolved = resolve_location(session, project, location_id).id if location_id else None
            row = session.scalar(select(BackupSchedule).where(BackupSchedule.workspace_id == workspace.id))
            if row is None:
                row = BackupSchedule(project_id=project.id, workspace_id=workspace.id, cluster_id=None, created_at=now)
                session.add(row)
            row.backup_prefix, row.schedule, row.paused = prefix, schedule, paused
            row.request, row.location_id = request.to_json(), resolved
            row.next_run_at, row.updated_at = next_run(schedule, now), now
            session.flush()
            session.expunge(row)
            return row

    def get_schedule(self, principal: Principal, project_ref: str, ref: str) -> BackupSchedule:
        """A workspace's schedule (404 when none)."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, workspace = _load(session, principal, project_ref, ref)
            row = session.scalar(select(BackupSchedule).where(BackupSchedule.workspace_id == workspace.id))
            if row is None:
                raise errors.NotFound(f"Workspace '{workspace.name}' has no backup schedule.")
            session.expunge(row)
            return row

    def delete_schedule(self, principal: Principal, project_ref: str, ref: str) -> None:
        """Remove a workspace's schedule."""
        require(principal, Permission.RUN_BACKUPS)
        with self._db.session() as session:
            _, workspace = _load(session, principal, project_ref, ref)
            session.execute(delete(BackupSchedule).where(BackupSchedule.workspace_id == workspace.id))

    def create_due_scheduled(self) -> list[str]:
        """Create the workspace backups of due schedules, exactly once across servers (compare and set)."""
        now = self._clock()
        created: list[str] = []
        with self._db.session() as session:
            due = session.execute(
                select(BackupSchedule.id, BackupSchedule.next_run_at).where(
                    BackupSchedule.workspace_id.is_not(None),
                    BackupSchedule.paused.is_(False),
                    BackupSchedule.next_run_at <= now,
                )
            ).all()
        for schedule_id, fire_at in due:
            with self._db.session() as session:
                row = session.get(BackupSchedule, schedule_id)
                if row is None or row.next_run_at != fire_at or row.workspace_id is None:
                    continue
                won = changed_rows(
                    session,
                    update(BackupSchedule)
                    .where(BackupSchedule.id == schedule_id, BackupSchedule.next_run_at == fire_at)
                    .values(next_run_at=next_run(row.schedule, now), last_run_at=fire_at)
                    .execution_options(synchronize_session=False),
                )
                if not won:
                    continue
                workspace = session.get_one(Workspace, row.workspace_id)
                project = session.get_one(Project, workspace.project_id)
                name = scheduled_backup_name(row.backup_prefix, "ws", fire_at or now).replace("-ws-", "-", 1)
                row.last_backup_name = name
                try:
                    # Every refusal of _start_backup comes before it adds a row, so the session stays clean.
                    self._start_backup(
                        session,
                        project,
                        workspace,
                        name=name,
                        request=BackupRequest.from_json(row.request),
                        location_id=row.location_id,
                        cluster_refs=(),
                        created_by="schedule",
                        schedule_name=row.backup_prefix,
                    )
                except errors.StowageError:
                    continue  # no clusters or no location: the next run tries again; status shows it
                created.append(name)
        return created

    # -- protection ------------------------------------------------------------------------------------
    def protection(self, principal: Principal, project_ref: str) -> tuple[list[ClusterStatus], list[WorkspaceView]]:
        """Every cluster's and every workspace's protection status in a project."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            clusters = session.scalars(
                select(Cluster).where(Cluster.project_id == project.id).order_by(Cluster.name)
            ).all()
            statuses = [self._cluster_status(session, c) for c in clusters]
            workspaces = session.scalars(
                select(Workspace).where(Workspace.project_id == project.id).order_by(Workspace.name)
            ).all()
            return statuses, [self._view(session, project, w) for w in workspaces]

    def _cluster_status(self, session: Session, cluster: Cluster) -> ClusterStatus:
        now = self._clock()
        last_success = session.scalar(
            select(func.max(Backup.completed_at)).where(
                Backup.cluster_id == cluster.id, Backup.phase == BackupPhase.COMPLETED.value
            )
        )
        last_finished = session.scalar(
            select(Backup.phase)
            .where(
                Backup.cluster_id == cluster.id,
                Backup.phase.in_([p.value for p in BackupPhase if p.finished]),
            )
            .order_by(Backup.completed_at.desc())
            .limit(1)
        )
        # The cluster's own schedule, or a workspace's that covers it (the one that fires next).
        schedules = session.scalars(
            select(BackupSchedule).where(
                or_(
                    BackupSchedule.cluster_id == cluster.id,
                    BackupSchedule.workspace_id.in_(
                        select(WorkspaceCluster.workspace_id).where(WorkspaceCluster.cluster_id == cluster.id)
                    ),
                )
            )
        ).all()
        active = [s for s in schedules if not s.paused]
        chosen = min(active or schedules, key=lambda s: s.next_run_at or now, default=None)
        protection = assess(
            now=now,
            last_success=last_success,
            last_finished_phase=last_finished,
            schedule=chosen.schedule if chosen else None,
            paused=bool(chosen and chosen.paused),
            next_run=chosen.next_run_at if chosen else None,
            grace=self._grace,
        )
        connected = (
            connection_status(cluster.last_heartbeat_at, now=now, interval_seconds=self._heartbeat)
            is ConnectionStatus.CONNECTED
        )
        return ClusterStatus(cluster.id, cluster.name, connected, protection)

    # -- views -----------------------------------------------------------------------------------------
    def _view(self, session: Session, project: Project, row: Workspace) -> WorkspaceView:
        statuses = [self._cluster_status(session, c) for c in _members(session, row)]
        protection = roll_up([s.protection for s in statuses])
        schedule = session.scalar(select(BackupSchedule).where(BackupSchedule.workspace_id == row.id))
        if schedule is not None and not schedule.paused and schedule.next_run_at:
            protection = Protection(
                protection.risk, protection.last_successful_backup_at, schedule.next_run_at, protection.reason
            )
        return WorkspaceView(row.id, row.name, project.name, statuses, protection, row.created_at)

    @staticmethod
    def _backup_view(session: Session, workspace: Workspace, row: WorkspaceBackup) -> WorkspaceBackupView:
        parts = [
            PartView(b.cluster_id, name, b.name, b.phase, b.failure_reason)
            for b, name in session.execute(
                select(Backup, Cluster.name)
                .join(Cluster, Cluster.id == Backup.cluster_id)
                .where(Backup.workspace_backup_id == row.id)
                .order_by(Cluster.name)
            )
        ]
        skipped = list(row.skipped or [])
        return WorkspaceBackupView(
            id=row.id,
            name=row.name,
            workspace=workspace.name,
            phase=roll_up_phase([p.phase for p in parts], len(skipped)),
            parts=parts,
            skipped=skipped,
            request=BackupRequest.from_json(row.request),
            schedule_name=row.schedule_name,
            created_by=row.created_by,
            created_at=row.created_at,
        )

    @staticmethod
    def _restore_view(
        session: Session, workspace: Workspace, row: WorkspaceRestore, backup_name: str
    ) -> WorkspaceRestoreView:
        parts = [
            PartView(r.destination_cluster_id, name, r.name, r.phase, r.failure_reason)
            for r, name in session.execute(
                select(Restore, Cluster.name)
                .join(Cluster, Cluster.id == Restore.destination_cluster_id)
                .where(Restore.workspace_restore_id == row.id)
                .order_by(Cluster.name)
            )
        ]
        skipped = list(row.skipped or [])
        return WorkspaceRestoreView(
            id=row.id,
            name=row.name,
            workspace=workspace.name,
            backup_name=backup_name,
            phase=roll_up_phase([p.phase for p in parts], len(skipped)),
            parts=parts,
            skipped=skipped,
            created_at=row.created_at,
        )


# -- module helpers ----------------------------------------------------------------------------------
def _load(session: Session, principal: Principal, project_ref: str, ref: str) -> tuple[Project, Workspace]:
    project = load_project(session, principal, project_ref)
    row = session.scalar(
        select(Workspace).where(Workspace.project_id == project.id, or_(Workspace.id == ref, Workspace.name == ref))
    )
    if row is None:
        raise errors.NotFound(
            f"No workspace '{ref}' in project '{project.name}'. List them with `stowage workspaces list`."
        )
    return project, row


def _load_backup(session: Session, workspace: Workspace, name: str) -> WorkspaceBackup:
    row = session.scalar(
        select(WorkspaceBackup).where(
            WorkspaceBackup.workspace_id == workspace.id, or_(WorkspaceBackup.name == name, WorkspaceBackup.id == name)
        )
    )
    if row is None:
        raise errors.NotFound(f"No backup '{name}' of workspace '{workspace.name}'.")
    return row


def _members(session: Session, workspace: Workspace) -> list[Cluster]:
    return list(
        session.scalars(
            select(Cluster)
            .join(WorkspaceCluster, WorkspaceCluster.cluster_id == Cluster.id)
            .where(WorkspaceCluster.workspace_id == workspace.id)
            .order_by(Cluster.name)
        )
    )


def _clusters(session: Session, project: Project, refs: Sequence[str]) -> list[Cluster]:
    found: list[Cluster] = []
    for ref in dict.fromkeys(r.strip() for r in refs if r and r.strip()):
        cluster = session.scalar(
            select(Cluster).where(Cluster.project_id == project.id, or_(Cluster.id == ref, Cluster.name == ref))
        )
        if cluster is None:
            raise errors.InvalidInput(
                f"No cluster '{ref}' in project '{project.name}'. List them with `stowage clusters list`.",
                field="clusterIds",
            )
        found.append(cluster)
    return found
