"""Cluster backups: requests, the agents' job protocol (claim, lease, progress, completion), schedules,
expiry and deletion.

A backup is a row that moves ``New`` → ``InProgress`` (claimed by the cluster's agent with a lease that each
progress report renews) → ``Completed`` / ``PartiallyFailed`` / ``Failed``. A lease that runs out means the
agent vanished: the control plane fails the backup with the reason. Deleting (on request or at expiry) is
done here, with the control plane's own session of the location's role, because agents cannot delete.

Several servers may share one PostgreSQL database: every transition is a conditional ``UPDATE`` (compare and
set), so a job is claimed once, a due schedule fires once, and a deletion runs once at a time.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stowage import errors
from stowage.domain.access import Permission, Principal
from stowage.domain.backups import (
    BACKUP_WORK_KIND,
    BackupOutcome,
    BackupPhase,
    BackupRequest,
    ItemMessage,
    Problem,
    backup_name_problem,
    backup_prefix,
    request_problems,
)
from stowage.domain.clusters import cluster_prefix
from stowage.domain.locations import LocationSpec
from stowage.domain.schedules import (
    backup_prefix_problem,
    next_run,
    schedule_problem,
    scheduled_backup_name,
)
from stowage.services.clusters import AgentPrincipal
from stowage.services.metrics import Metrics
from stowage.services.tenancy import load_project, require
from stowage.store.database import Database
from stowage.store.tables import Backup, BackupLogLine, BackupSchedule, Cluster, Location, Project, utcnow

log = logging.getLogger("stowage.backups")
WORK_KIND = BACKUP_WORK_KIND
MAX_LOG_LINES = 20_000
MAX_LOG_LINE_CHARS = 4000
MAX_ITEM_MESSAGES = 1000
LOG_PAGE_MAX = 5000
LIST_PAGE_MAX = 500
# Velero's label names, so Velero and Stowage find the same snapshots and objects.
LABEL_BACKUP = "velero.io/backup-name"
LABEL_LOCATION = "velero.io/storage-location"
LABEL_SCHEDULE = "velero.io/schedule-name"
LABEL_CLUSTER = "stowage.io/cluster"
LABEL_PROJECT = "stowage.io/project"


class LocationSource(Protocol):
    """Reads a saved location with its secrets (``LocationService.spec_for_agent``)."""

    def spec_for_agent(self, location_id: str) -> tuple[LocationSpec, str, str, str]:
        """Spec, project id, project name, External ID."""
        ...


class Storage(Protocol):
    """The control plane's access to backups in a bucket (``stowage.aws.backup_storage``)."""

    def read(self, ref: Any, key: str) -> bytes | None:
        """One object's bytes, or None."""
        ...

    def delete_prefix(self, ref: Any, prefix: str, *, deadline: float) -> int:
        """Delete every object under a prefix."""
        ...

    def delete_snapshots(
        self, ref: Any, snapshot_ids: Sequence[str], *, backup_name: str, backup_uid: str, deadline: float
    ) -> None:
        """Delete EBS snapshots (gone ones count as deleted)."""
        ...


RefFactory = Callable[[LocationSpec, str, str], Any]


@dataclass(frozen=True, slots=True)
class BackupView:
    """A backup as users see it."""

    id: str
    name: str
    project: str
    cluster_id: str
    cluster_name: str
    location_id: str
    location_name: str
    phase: BackupPhase
    failure_reason: str | None
    request: BackupRequest
    total_items: int
    items_backed_up: int
    size_bytes: int
    warnings: int
    errors: int
    volume_snapshots: int
    schedule_name: str | None
    origin: str
    storage_prefix: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A cluster's backup schedule."""

    id: str
    cluster_id: str
    cluster_name: str
    backup_prefix: str
    schedule: str
    paused: bool
    location_id: str | None
    request: BackupRequest
    next_run_at: datetime | None
    last_backup_name: str | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LogLine:
    """One live log line of a backup."""

    id: int
    at: datetime
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class LogPage:
    """Log lines after a cursor; ``finished`` once no more lines will come."""

    lines: list[LogLine]
    next_after: int
    finished: bool


@dataclass(frozen=True, slots=True)
class Contents:
    """What a finished backup holds, and what went wrong per item."""

    resources: dict[str, list[str]]
    total_items: int
    warnings: list[dict[str, Any]]
    errors: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed job: its lease and what the agent needs to run it."""

    lease_seconds: int
    params: dict[str, Any]
    location_id: str


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """The answer to a progress report: keep going (with a renewed lease) or stop."""

    cancel: bool
    lease_seconds: int


class BackupService:
    """Use cases of backups for users, agents and the control plane's periodic tick."""

    def __init__(
        self,
        *,
        db: Database,
        locations: LocationSource,
        storage: Storage,
        ref_factory: RefFactory,
        lease_seconds: int = 120,
        start_timeout_seconds: int = 3600,
        delete_timeout_seconds: int = 600,
        heartbeat_seconds: int = 30,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._locations = locations
        self._storage = storage
        self._ref = ref_factory
        self.lease_seconds = lease_seconds
        self._start_timeout = start_timeout_seconds
        self._delete_timeout = delete_timeout_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._deleting: set[str] = set()

    # -- users: backups ------------------------------------------------------------------------------
    def create(
        self,
        principal: Principal,
        project_ref: str,
        cluster_ref: str,
        *,
        name: str,
        request: BackupRequest,
        location_id: str | None = None,
    ) -> BackupView:
        """Request a backup of a cluster now; the cluster's agent picks it up with its next heartbeat."""
        require(principal, Permission.RUN_BACKUPS)
        name = name.strip()
        problem = backup_name_problem(name)
        if problem:
            raise errors.InvalidInput(problem, field="backupName")
        raise_problems(request_problems(request))
        with self._db.session() as session:
            project, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            location = resolve_location(session, project, location_id)
            if session.scalar(select(Backup.id).where(Backup.cluster_id == cluster.id, Backup.name == name)):
                raise errors.Conflict(
                    f"Cluster '{cluster.name}' already has a backup named '{name}'. Choose another name, or delete "
                    "the old backup first."
                )
            row = self.new_row(project, cluster, location, name, request, created_by=principal.subject)
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise errors.Conflict(f"Cluster '{cluster.name}' already has a backup named '{name}'.") from exc
            return _view(row, project, cluster)

    def list_page(
        self, principal: Principal, project_ref: str, cluster_ref: str, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[BackupView], int]:
        """Backups of a cluster, newest first, and how many there are."""
        require(principal, Permission.READ)
        if not 1 <= limit <= LIST_PAGE_MAX:
            raise errors.InvalidInput(f"limit must be between 1 and {LIST_PAGE_MAX}.", field="limit")
        if offset < 0:
            raise errors.InvalidInput("offset must be 0 or more.", field="offset")
        with self._db.session() as session:
            project, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            total = session.scalar(select(func.count()).select_from(Backup).where(Backup.cluster_id == cluster.id))
            rows = session.scalars(
                select(Backup)
                .where(Backup.cluster_id == cluster.id)
                .order_by(Backup.created_at.desc(), Backup.name)
                .limit(limit)
                .offset(offset)
            )
            return [_view(r, project, cluster) for r in rows], int(total or 0)

    def get(self, principal: Principal, project_ref: str, cluster_ref: str, name: str) -> BackupView:
        """One backup of a cluster by name (or id)."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project, cluster, row = load_backup(session, principal, project_ref, cluster_ref, name)
            return _view(row, project, cluster)

    def request_delete(self, principal: Principal, project_ref: str, cluster_ref: str, name: str) -> BackupView:
        """Ask for a backup to be deleted (its objects and snapshots); a running one is cancelled first."""
        require(principal, Permission.DELETE_BACKUPS)
        now = self._clock()
        with self._db.session() as session:
            project, cluster, row = load_backup(session, principal, project_ref, cluster_ref, name)
            if row.phase != BackupPhase.DELETING.value:
                if row.phase == BackupPhase.IN_PROGRESS.value:
                    row.cancel_requested = True
                row.phase = BackupPhase.DELETING.value
                row.deletion_requested_at = now
                row.failure_reason = None
            view = _view(row, project, cluster)
        self.start_deletion(view.id)
        return view

    def logs(
        self, principal: Principal, project_ref: str, cluster_ref: str, name: str, *, after: int = 0, limit: int = 1000
    ) -> LogPage:
        """Log lines of a backup after the cursor ``after`` (live while it runs)."""
        require(principal, Permission.READ)
        limit = max(1, min(limit, LOG_PAGE_MAX))
        with self._db.session() as session:
            _, _, row = load_backup(session, principal, project_ref, cluster_ref, name)
            return log_page(
                session, BackupLogLine, BackupLogLine.backup_id, row.id, after, limit, BackupPhase(row.phase).finished
            )

    def contents(self, principal: Principal, project_ref: str, cluster_ref: str, name: str) -> Contents:
        """The resource list of a finished backup (read from the bucket) and its per-item warnings and errors."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, _, row = load_backup(session, principal, project_ref, cluster_ref, name)
            phase = BackupPhase(row.phase)
            name, prefix, location_id = row.name, row.storage_prefix, row.location_id
            warnings, errors_ = list(row.warnings or []), list(row.errors or [])
        if phase is BackupPhase.FAILED:
            # Nothing usable was stored, but what went wrong per item is worth seeing.
            return Contents(resources={}, total_items=0, warnings=warnings, errors=errors_)
        if phase not in (BackupPhase.COMPLETED, BackupPhase.PARTIALLY_FAILED):
            raise errors.Conflict(
                f"Backup '{name}' is {phase.value}: its contents are listed once it has completed.",
                details={"phase": phase.value},
            )
        ref = self._location_ref(location_id)
        raw = self._storage.read(ref, f"{backup_prefix(prefix, name)}/{name}-resource-list.json.gz")
        if raw is None:
            raise errors.NotFound(
                f"The resource list of backup '{name}' is missing from the bucket ({name}-resource-list.json.gz): "
                "the backup's objects were removed outside Stowage."
            )
        try:
            resources = json.loads(gzip.decompress(raw))
        except (OSError, ValueError) as exc:
            raise errors.Conflict(f"The resource list of backup '{name}' in the bucket is damaged: {exc}.") from exc
        total = sum(len(v) for v in resources.values())
        return Contents(resources=resources, total_items=total, warnings=warnings, errors=errors_)

    # -- users: schedules ----------------------------------------------------------------------------
    def set_schedule(
        self,
        principal: Principal,
        project_ref: str,
        cluster_ref: str,
        *,
        backup_prefix: str,
        schedule: str,
        paused: bool,
        request: BackupRequest,
        location_id: str | None = None,
    ) -> ScheduleView:
        """Create or replace a cluster's backup schedule."""
        require(principal, Permission.RUN_BACKUPS)
        prefix = backup_prefix.strip()
        schedule = " ".join(schedule.split())
        problem = schedule_problem(schedule)
        if problem:
            raise errors.InvalidInput(problem, field="schedule")
        raise_problems(request_problems(request))
        now = self._clock()
        with self._db.session() as session:
            project, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            problem = backup_prefix_problem(prefix, cluster.name)
            if problem:
                raise errors.InvalidInput(problem, field="backupPrefix")
            resolved = resolve_location(session, project, location_id).id if location_id else None
            row = session.scalar(select(BackupSchedule).where(BackupSchedule.cluster_id == cluster.id))
            if row is None:
                row = BackupSchedule(project_id=project.id, cluster_id=cluster.id, created_at=now)
                session.add(row)
            row.backup_prefix = prefix
            row.schedule = schedule
            row.paused = paused
            row.request = request.to_json()
            # The id, not what was typed: a renamed location must not break the schedule's later runs.
            row.location_id = resolved
            row.next_run_at = next_run(schedule, now)
            row.updated_at = now
            session.flush()
            return _schedule_view(row, cluster)

    def get_schedule(self, principal: Principal, project_ref: str, cluster_ref: str) -> ScheduleView:
        """A cluster's backup schedule (404 when it has none)."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            row = _load_schedule(session, cluster)
            return _schedule_view(row, cluster)

    def pause_schedule(self, principal: Principal, project_ref: str, cluster_ref: str, *, paused: bool) -> ScheduleView:
        """Pause or resume a cluster's schedule; resuming starts counting from now (missed runs are skipped)."""
        require(principal, Permission.RUN_BACKUPS)
        now = self._clock()
        with self._db.session() as session:
            _, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            row = _load_schedule(session, cluster)
            if row.paused != paused:
                row.paused = paused
                row.next_run_at = next_run(row.schedule, now)
                row.updated_at = now
            return _schedule_view(row, cluster)

    def delete_schedule(self, principal: Principal, project_ref: str, cluster_ref: str) -> None:
        """Remove a cluster's schedule (its backups stay until they expire)."""
        require(principal, Permission.RUN_BACKUPS)
        with self._db.session() as session:
            _, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            session.delete(_load_schedule(session, cluster))

    # -- agents ----------------------------------------------------------------------------------------
    def work_for(self, agent: AgentPrincipal) -> list[tuple[str, str, dict[str, Any]]]:
        """New backups of the agent's cluster: (backup id, location id, job params), oldest first."""
        with self._db.session() as session:
            rows = session.scalars(
                select(Backup)
                .where(Backup.cluster_id == agent.cluster_id, Backup.phase == BackupPhase.NEW.value)
                .order_by(Backup.created_at)
                .limit(10)
            )
            return [(r.id, r.location_id, self._params(r, agent)) for r in rows]

    def claim(self, agent: AgentPrincipal, backup_id: str) -> Claim:
        """Take a New backup of the agent's own cluster; 409 when it is not (or no longer) claimable."""
        now = self._clock()
        with self._db.session() as session:
            claimed = claim_new(
                session, Backup, Backup.cluster_id, backup_id, agent.cluster_id, now, self.lease_seconds
            )
            row = session.get(Backup, backup_id)
            if row is None or row.cluster_id != agent.cluster_id:
                raise errors.NotFound(f"No backup job '{backup_id}' for cluster '{agent.cluster_name}'.")
            if not claimed:
                raise errors.Conflict(
                    f"Backup '{row.name}' cannot be started: it is {row.phase}.", details={"phase": row.phase}
                )
            session.refresh(row)
            self._touch_cluster(session, agent, now)
            return Claim(lease_seconds=self.lease_seconds, params=self._params(row, agent), location_id=row.location_id)

    def report(
        self,
        agent: AgentPrincipal,
        backup_id: str,
        *,
        total_items: int,
        items_backed_up: int,
        lines: Sequence[tuple[datetime, str, str]] = (),
    ) -> ReportAnswer:
        """Progress and log lines of a running backup; renews the job's lease; says whether to cancel."""
        now = self._clock()
        with self._db.session() as session:
            row = self._running(session, agent, backup_id)
            row.total_items = max(0, total_items)
            row.items_backed_up = max(0, items_backed_up)
            row.last_report_at = now
            row.lease_expires_at = now + timedelta(seconds=self.lease_seconds)
            self._add_lines(session, row.id, lines)
            # A long backup keeps its agent's heartbeat loop busy: its reports count as heartbeats.
            self._touch_cluster(session, agent, now)
            return ReportAnswer(cancel=bool(row.cancel_requested), lease_seconds=self.lease_seconds)

    def complete(
        self,
        agent: AgentPrincipal,
        backup_id: str,
        outcome: BackupOutcome,
        lines: Sequence[tuple[datetime, str, str]] = (),
    ) -> BackupView:
        """Record how a backup ended; one whose deletion was asked meanwhile goes on to be deleted."""
        now = self._clock()
        with self._db.session() as session:
            row = self._running(session, agent, backup_id)
            self._add_lines(session, row.id, lines)
            row.total_items = outcome.total_items
            row.items_backed_up = outcome.items_backed_up
            row.size_bytes = outcome.size_bytes
            row.warnings = [m.to_json() for m in outcome.warnings[:MAX_ITEM_MESSAGES]]
            row.errors = [m.to_json() for m in outcome.errors[:MAX_ITEM_MESSAGES]]
            row.snapshots = [
                {
                    "pvName": s.pv_name,
                    "snapshotId": s.snapshot_id,
                    "volumeId": s.volume_id,
                    "availabilityZone": s.availability_zone,
                    "region": s.region,
                }
                for s in outcome.snapshots
            ]
            row.completed_at = now
            row.last_report_at = now
            row.lease_expires_at = None
            if row.phase == BackupPhase.DELETING.value:
                deleting = True
            else:
                deleting = False
                row.phase = outcome.phase.value
                row.failure_reason = outcome.failure_reason
            self._touch_cluster(session, agent, now)
            project = session.get_one(Project, row.project_id)
            cluster = session.get_one(Cluster, row.cluster_id)
            view = _view(row, project, cluster)
        self._metrics.backup_finished(outcome.phase.value, _seconds(view.started_at, now), outcome.items_backed_up)
        if deleting:
            self.start_deletion(backup_id)
        return view

    # -- the control plane's tick ------------------------------------------------------------------
    def tick(self) -> dict[str, int]:
        """Create due scheduled backups, fail lost and never-started jobs, expire old backups, resume deletions."""
        return {
            "scheduled": len(self.create_due_scheduled()),
            "lost": len(self.fail_lost_jobs()),
            "expired": len(self.expire()),
            "deleting": self.resume_deletions(),
        }

    def create_due_scheduled(self) -> list[str]:
        """Create the backups of every due, unpaused schedule, exactly once even with several servers."""
        now = self._clock()
        created: list[str] = []
        with self._db.session() as session:
            due = session.execute(
                select(BackupSchedule.id, BackupSchedule.next_run_at).where(
                    BackupSchedule.cluster_id.is_not(None),
                    BackupSchedule.paused.is_(False),
                    BackupSchedule.next_run_at <= now,
                )
            ).all()
        for schedule_id, fire_at in due:
            with self._db.session() as session:
                row = session.get(BackupSchedule, schedule_id)
                if row is None or row.next_run_at != fire_at:
                    continue
                # Compare and set: the server whose UPDATE moves next_run_at forward owns this run.
                won = changed_rows(
                    session,
                    update(BackupSchedule)
                    .where(BackupSchedule.id == schedule_id, BackupSchedule.next_run_at == fire_at)
                    .values(next_run_at=next_run(row.schedule, now), last_run_at=fire_at)
                    .execution_options(synchronize_session=False),
                )
                if not won:
                    continue
                cluster = session.get_one(Cluster, row.cluster_id)
                project = session.get_one(Project, row.project_id)
                name = scheduled_backup_name(row.backup_prefix, cluster.name, fire_at or now)
                try:
                    location = resolve_location(session, project, row.location_id)
                except errors.StowageError as exc:
                    log.warning("schedule of cluster %s cannot run: %s", cluster.name, exc.message)
                    continue
                request = BackupRequest.from_json(row.request)
                row.last_backup_name = name
                backup = self.new_row(project, cluster, location, name, request, created_by="schedule")
                backup.schedule_name = row.backup_prefix
                # The compare and set above already makes this run ours; the unique name is a second guard.
                if session.scalar(select(Backup.id).where(Backup.cluster_id == cluster.id, Backup.name == name)):
                    continue
                session.add(backup)
                created.append(name)
        return created

    def fail_lost_jobs(self) -> list[str]:
        """Fail backups whose agent stopped reporting (lease expired) or never started them."""
        now = self._clock()
        failed: list[str] = []
        with self._db.session() as session:
            lost = session.scalars(
                select(Backup).where(Backup.phase == BackupPhase.IN_PROGRESS.value, Backup.lease_expires_at < now)
            ).all()
            for row in lost:
                cluster = session.get_one(Cluster, row.cluster_id)
                last = _iso(row.last_report_at)
                row.phase = BackupPhase.FAILED.value
                row.lease_expires_at = None
                row.completed_at = now
                row.failure_reason = (
                    f"The agent of cluster '{cluster.name}' stopped reporting during the backup (last report at "
                    f"{last}; its lease of {self.lease_seconds} s ran out): the agent was stopped, restarted or "
                    "lost its connection. Nothing of this backup is marked complete in the bucket. Check the "
                    "agent's logs, then run the backup again."
                )
                failed.append(row.name)
                self._metrics.backup_finished(BackupPhase.FAILED.value, _seconds(row.started_at, now), 0)
            cutoff = now - timedelta(seconds=self._start_timeout)
            stale = session.scalars(
                select(Backup).where(Backup.phase == BackupPhase.NEW.value, Backup.created_at < cutoff)
            ).all()
            for row in stale:
                cluster = session.get_one(Cluster, row.cluster_id)
                row.phase = BackupPhase.FAILED.value
                row.completed_at = now
                row.failure_reason = (
                    f"The agent of cluster '{cluster.name}' did not start this backup within "
                    f"{self._start_timeout // 60} minutes (last heartbeat: "
                    f"{_iso(cluster.last_heartbeat_at)}"
                    "). Start the agent (`stowage agent --server ... --token ...`), then run the backup again."
                )
                failed.append(row.name)
        return failed

    def expire(self) -> list[str]:
        """Move finished backups past their expiry to Deleting and start deleting them."""
        now = self._clock()
        finished = [p.value for p in BackupPhase if p.finished]
        with self._db.session() as session:
            rows = session.scalars(select(Backup).where(Backup.phase.in_(finished), Backup.expires_at <= now)).all()
            for row in rows:
                row.phase = BackupPhase.DELETING.value
                row.deletion_requested_at = now
            expired = [(r.id, r.name) for r in rows]
        for backup_id, _ in expired:
            self.start_deletion(backup_id)
        return [name for _, name in expired]

    def resume_deletions(self) -> int:
        """Start deletions that are due (requested while a job ran, or interrupted by a restart)."""
        now = self._clock()
        with self._db.session() as session:
            ids = session.scalars(
                select(Backup.id).where(
                    Backup.phase == BackupPhase.DELETING.value,
                    or_(Backup.lease_expires_at.is_(None), Backup.lease_expires_at < now),
                )
            ).all()
        for backup_id in ids:
            self.start_deletion(backup_id)
        return len(ids)

    # -- deletion ------------------------------------------------------------------------------------
    def start_deletion(self, backup_id: str) -> None:
        """Delete a backup in the background (at most one deletion of it at a time in this process)."""
        with self._lock:
            if backup_id in self._deleting:
                return
            self._deleting.add(backup_id)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stowage-backup-delete")
            executor = self._executor

        def run() -> None:
            try:
                self.delete_now(backup_id)
            except Exception:
                log.exception("deleting backup %s failed unexpectedly", backup_id)
            finally:
                with self._lock:
                    self._deleting.discard(backup_id)

        executor.submit(run)

    def delete_now(self, backup_id: str) -> bool:
        """Delete a Deleting backup's objects and snapshots, then its record; True when it is gone.

        Runs only when no agent holds the job (its lease ended) and no other server is deleting it (the same
        lease column, compare and set). A failure leaves the backup ``Failed`` with the reason, never Deleting.
        """
        now = self._clock()
        with self._db.session() as session:
            claimed = changed_rows(
                session,
                update(Backup)
                .where(
                    Backup.id == backup_id,
                    Backup.phase == BackupPhase.DELETING.value,
                    or_(Backup.lease_expires_at.is_(None), Backup.lease_expires_at < now),
                )
                .values(
                    lease_expires_at=now + timedelta(seconds=self._delete_timeout + 60),
                    delete_attempts=Backup.delete_attempts + 1,
                )
                .execution_options(synchronize_session=False),
            )
            if not claimed:
                return False
            row = session.get_one(Backup, backup_id)
            name, prefix, location_id = row.name, backup_prefix(row.storage_prefix, row.name), row.location_id
            snapshot_ids = [str(s["snapshotId"]) for s in (row.snapshots or []) if s.get("snapshotId")]
            include_disks = BackupRequest.from_json(row.request).include_all_disks
        deadline = time.monotonic() + self._delete_timeout
        try:
            ref = self._location_ref(location_id)
            self._storage.delete_prefix(ref, prefix, deadline=deadline)
            if include_disks or snapshot_ids:
                self._storage.delete_snapshots(
                    ref, snapshot_ids, backup_name=name, backup_uid=backup_id, deadline=deadline
                )
        except errors.StowageError as exc:
            reason = (
                f"Deleting backup '{name}' failed: {exc.message.rstrip('.')}. Fix the cause (the location's role needs "
                "s3:DeleteObject and ec2:DeleteSnapshot), then delete the backup again."
            )
            with self._db.session() as session:
                session.execute(
                    update(Backup)
                    .where(Backup.id == backup_id)
                    .values(phase=BackupPhase.FAILED.value, failure_reason=reason, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
            log.warning("%s", reason)
            self._metrics.backup_deleted(BackupPhase.FAILED.value)
            return False
        with self._db.session() as session:
            row_gone = session.get(Backup, backup_id)
            if row_gone is not None:
                session.delete(row_gone)
        self._metrics.backup_deleted("Deleted")
        return True

    def close(self) -> None:
        """Stop the deletion threads (running deletions finish; their lease lets another server resume)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- helpers -------------------------------------------------------------------------------------
    def _location_ref(self, location_id: str) -> Any:
        try:
            spec, _, project_name, external_id = self._locations.spec_for_agent(location_id)
        except errors.NotFound as exc:
            raise errors.NotFound(
                f"The backup location ({location_id}) was deleted, so Stowage can no longer reach this backup's "
                "objects. Delete them in the bucket yourself if needed."
            ) from exc
        return self._ref(spec, external_id, f"stowage-{project_name}-control-plane"[:64])

    def new_row(
        self,
        project: Project,
        cluster: Cluster,
        location: Location,
        name: str,
        request: BackupRequest,
        *,
        created_by: str,
    ) -> Backup:
        """A New backup row of a cluster (not added to the session)."""
        now = self._clock()
        return Backup(
            project_id=project.id,
            cluster_id=cluster.id,
            location_id=location.id,
            location_name=location.name,
            name=name,
            request=request.to_json(),
            storage_prefix=cluster_prefix(location.prefix, cluster.id),
            phase=BackupPhase.NEW.value,
            total_items=0,
            items_backed_up=0,
            size_bytes=0,
            warnings=[],
            errors=[],
            snapshots=[],
            attempt=0,
            cancel_requested=False,
            delete_attempts=0,
            created_by=created_by[:200],
            created_at=now,
            expires_at=now + timedelta(hours=request.duration_hours),
        )

    def _params(self, row: Backup, agent: AgentPrincipal) -> dict[str, Any]:
        labels = {
            LABEL_LOCATION: row.location_name if _label_safe(row.location_name) else row.location_id,
            LABEL_CLUSTER: agent.cluster_name,
            LABEL_PROJECT: agent.project_name,
        }
        if row.schedule_name:
            labels[LABEL_SCHEDULE] = row.schedule_name
        return {
            "backupId": row.id,
            "backupName": row.name,
            "backupUid": row.id,
            "clusterPrefix": row.storage_prefix,
            "locationId": row.location_id,
            "locationName": row.location_name,
            "request": dict(row.request),
            "createdAt": row.created_at.isoformat(),
            "expiresAt": row.expires_at.isoformat(),
            "labels": labels,
            "leaseSeconds": self.lease_seconds,
        }

    def _running(self, session: Session, agent: AgentPrincipal, backup_id: str) -> Backup:
        row = session.get(Backup, backup_id)
        if row is None or row.cluster_id != agent.cluster_id:
            raise errors.NotFound(f"No backup job '{backup_id}' for cluster '{agent.cluster_name}'.")
        if row.phase == BackupPhase.DELETING.value and row.completed_at is None:
            return row  # deletion was asked while it ran: the agent hears "cancel" and reports its end
        if row.phase != BackupPhase.IN_PROGRESS.value:
            raise errors.Conflict(
                f"Backup '{row.name}' is {row.phase}, not running: stop working on it.",
                details={"phase": row.phase, "reason": row.failure_reason},
            )
        return row

    @staticmethod
    def _add_lines(session: Session, backup_id: str, lines: Sequence[tuple[datetime, str, str]]) -> None:
        add_log_lines(session, BackupLogLine, BackupLogLine.backup_id, backup_id, lines)

    @staticmethod
    def _touch_cluster(session: Session, agent: AgentPrincipal, now: datetime) -> None:
        touch_cluster(session, agent, now)


# -- module helpers ----------------------------------------------------------------------------------
def changed_rows(session: Session, statement: Any) -> int:
    """Run a conditional UPDATE and say how many rows it changed (0: another actor got there first)."""
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def claim_new(
    session: Session, table: Any, owner: Any, job_id: str, cluster_id: str, now: datetime, lease_seconds: int
) -> int:
    """Move a New job of a cluster to InProgress with a lease (compare and set); 1 when this caller got it."""
    return changed_rows(
        session,
        update(table)
        .where(table.id == job_id, owner == cluster_id, table.phase == BackupPhase.NEW.value)
        .values(
            phase=BackupPhase.IN_PROGRESS.value,
            started_at=now,
            last_report_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempt=table.attempt + 1,
        )
        .execution_options(synchronize_session=False),
    )


def touch_cluster(session: Session, agent: AgentPrincipal, now: datetime) -> None:
    """A job report counts as the cluster's heartbeat (the agent's heartbeat loop is busy with the job)."""
    session.execute(
        update(Cluster)
        .where(Cluster.id == agent.cluster_id)
        .values(last_heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )


def log_page(
    session: Session, table: Any, owner_column: Any, owner_id: str, after: int, limit: int, job_finished: bool
) -> LogPage:
    """A job's log lines after the cursor; ``finished`` once the job ended and no more lines are left."""
    rows: list[Any] = list(
        session.scalars(select(table).where(owner_column == owner_id, table.id > after).order_by(table.id).limit(limit))
    )
    lines = [LogLine(r.id, r.at, r.level, r.message) for r in rows]
    return LogPage(
        lines=lines, next_after=lines[-1].id if lines else after, finished=job_finished and len(lines) < limit
    )


def add_log_lines(
    session: Session, table: Any, owner_column: Any, owner_id: str, lines: Sequence[tuple[datetime, str, str]]
) -> None:
    """Store a job's live log lines, at most ``MAX_LOG_LINES`` per job (then one line that says so)."""
    if not lines:
        return
    count = session.scalar(select(func.count()).select_from(table).where(owner_column == owner_id))
    room = MAX_LOG_LINES - int(count or 0)
    if room <= 0:
        return
    owner = owner_column.key
    kept = list(lines[:room])
    for at, level, message in kept:
        session.add(table(**{owner: owner_id}, at=at, level=level[:16], message=message[:MAX_LOG_LINE_CHARS]))
    if len(lines) > room:
        session.add(
            table(
                **{owner: owner_id},
                at=kept[-1][0] if kept else utcnow(),
                level="warning",
                message=f"Log truncated after {MAX_LOG_LINES} lines; the full log is in the bucket.",
            )
        )


def _seconds(start: datetime | None, end: datetime) -> float:
    return (end - start).total_seconds() if start else 0.0


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"


def raise_problems(problems: Sequence[Problem]) -> None:
    """Raise ``InvalidInput`` for the first problem, with all of them in ``details.problems``."""
    if problems:
        first = problems[0]
        raise errors.InvalidInput(
            first.message,
            field=first.field,
            details={"problems": [{"field": p.field, "message": p.message} for p in problems]},
        )


def _label_safe(value: str) -> bool:
    return len(value) <= 63 and all(ch.isalnum() or ch in "-_." for ch in value)


def load_cluster(session: Session, principal: Principal, project_ref: str, cluster_ref: str) -> tuple[Project, Cluster]:
    project = load_project(session, principal, project_ref)
    cluster = session.scalar(
        select(Cluster).where(
            Cluster.project_id == project.id, or_(Cluster.id == cluster_ref, Cluster.name == cluster_ref)
        )
    )
    if cluster is None:
        raise errors.NotFound(
            f"No cluster '{cluster_ref}' in project '{project.name}'. List them with `stowage clusters list`."
        )
    return project, cluster


def load_backup(
    session: Session, principal: Principal, project_ref: str, cluster_ref: str, name: str
) -> tuple[Project, Cluster, Backup]:
    project, cluster = load_cluster(session, principal, project_ref, cluster_ref)
    row = session.scalar(
        select(Backup).where(Backup.cluster_id == cluster.id, or_(Backup.name == name, Backup.id == name))
    )
    if row is None:
        raise errors.NotFound(
            f"No backup '{name}' of cluster '{cluster.name}'. List them with `stowage backups list {cluster.name}`."
        )
    return project, cluster, row


def _load_schedule(session: Session, cluster: Cluster) -> BackupSchedule:
    row = session.scalar(select(BackupSchedule).where(BackupSchedule.cluster_id == cluster.id))
    if row is None:
        raise errors.NotFound(
            f"Cluster '{cluster.name}' has no backup schedule. Set one with `stowage backups schedule set`."
        )
    return row


def resolve_location(session: Session, project: Project, location_id: str | None) -> Location:
    if location_id:
        row = session.scalar(
            select(Location).where(
                Location.project_id == project.id, or_(Location.id == location_id, Location.name == location_id)
            )
        )
        if row is None:
            raise errors.InvalidInput(
                f"No backup location '{location_id}' in project '{project.name}'. List them with "
                "`stowage locations list`.",
                field="backupLocationId",
            )
        return row
    row = session.scalar(select(Location).where(Location.project_id == project.id, Location.is_default.is_(True)))
    if row is None:
        raise errors.Conflict(
            f"Project '{project.name}' has no default backup location: add one (Project Settings → Backup "
            "Locations, or `stowage locations add`) or give backupLocationId.",
            details={"field": "backupLocationId"},
        )
    return row


def _view(row: Backup, project: Project, cluster: Cluster) -> BackupView:
    return BackupView(
        id=row.id,
        name=row.name,
        project=project.name,
        cluster_id=cluster.id,
        cluster_name=cluster.name,
        location_id=row.location_id,
        location_name=row.location_name,
        phase=BackupPhase(row.phase),
        failure_reason=row.failure_reason,
        request=BackupRequest.from_json(row.request),
        total_items=row.total_items,
        items_backed_up=row.items_backed_up,
        size_bytes=row.size_bytes,
        warnings=len(row.warnings or []),
        errors=len(row.errors or []),
        volume_snapshots=len(row.snapshots or []),
        schedule_name=row.schedule_name,
        origin=row.origin,
        storage_prefix=backup_prefix(row.storage_prefix, row.name),
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        expires_at=row.expires_at,
    )


def _schedule_view(row: BackupSchedule, cluster: Cluster) -> ScheduleView:
    return ScheduleView(
        id=row.id,
        cluster_id=cluster.id,
        cluster_name=cluster.name,
        backup_prefix=row.backup_prefix,
        schedule=row.schedule,
        paused=row.paused,
        location_id=row.location_id,
        request=BackupRequest.from_json(row.request),
        next_run_at=row.next_run_at,
        last_backup_name=row.last_backup_name,
        last_run_at=row.last_run_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def item_messages(items: Sequence[Mapping[str, Any]] | None) -> tuple[ItemMessage, ...]:
    """Item messages from the agent's JSON (unknown keys ignored, messages clipped)."""
    out: list[ItemMessage] = []
    for item in (items or [])[:MAX_ITEM_MESSAGES]:
        out.append(
            ItemMessage(
                message=str(item.get("message") or "")[:MAX_LOG_LINE_CHARS],
                namespace=item.get("namespace") or None,
                resource=item.get("resource") or None,
                name=item.get("name") or None,
            )
        )
    return tuple(out)
