"""Restores of backups into clusters of the same project, and their dry-run previews.

A restore is a job of the destination cluster's agent, with the same protocol as backups (claim with a
lease, progress reports that renew it, one completion), and its own credentials: a session policy that reads
the one source backup and writes the restore's own files, nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from stowage import errors
from stowage.domain.access import Permission, Principal
from stowage.domain.backups import BackupPhase, backup_prefix
from stowage.domain.clusters import cluster_prefix
from stowage.domain.restores import (
    RESTORE_WORK_KIND,
    ItemAction,
    ItemResult,
    RestoreOutcome,
    RestorePhase,
    RestoreRequest,
    request_problems,
    restore_name,
    restore_prefix,
    restore_session_policy,
)
from stowage.services.backups import (
    LOG_PAGE_MAX,
    LogPage,
    add_log_lines,
    claim_new,
    load_backup,
    load_cluster,
    log_page,
    raise_problems,
    touch_cluster,
)
from stowage.services.clusters import AgentPrincipal
from stowage.services.metrics import Metrics
from stowage.services.tenancy import require
from stowage.store.database import Database
from stowage.store.tables import Cluster, Location, Project, Restore, RestoreItem, RestoreLogLine, utcnow

log = logging.getLogger("stowage.restores")
WORK_KIND = RESTORE_WORK_KIND
ITEMS_PAGE_MAX = 1000
MAX_ITEMS_PER_REPORT = 5000
MAX_PROBLEMS = 500


@dataclass(frozen=True, slots=True)
class RestoreView:
    """A restore as users see it."""

    id: str
    name: str
    project: str
    source_cluster_id: str
    source_cluster_name: str | None
    backup_name: str
    destination_cluster_id: str
    destination_cluster_name: str
    location_id: str
    phase: RestorePhase
    failure_reason: str | None
    request: RestoreRequest
    total_items: int
    items_restored: int
    summary: dict[str, int]
    problems: list[dict[str, Any]]
    storage_prefix: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class RestoreClaim:
    """A claimed restore job."""

    lease_seconds: int
    params: dict[str, Any]
    location_id: str


SessionPolicyOf = Callable[[str], tuple[str, dict[str, Any]]]


class RestoreService:
    """Use cases of restores for users, the destination agents and the control plane's tick."""

    def __init__(
        self,
        *,
        db: Database,
        lease_seconds: int = 120,
        start_timeout_seconds: int = 3600,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self.lease_seconds = lease_seconds
        self._start_timeout = start_timeout_seconds
        self._clock = clock

    # -- users -----------------------------------------------------------------------------------------
    def create(
        self,
        principal: Principal,
        project_ref: str,
        source_cluster_ref: str,
        backup_ref: str,
        *,
        request: RestoreRequest,
        destination_cluster_ref: str | None = None,
    ) -> RestoreView:
        """Restore a backup (or preview it with ``dryRun``) into a cluster of the same project."""
        require(principal, Permission.RUN_BACKUPS)
        raise_problems(request_problems(request))
        now = self._clock()
        with self._db.session() as session:
            project, source, backup = load_backup(session, principal, project_ref, source_cluster_ref, backup_ref)
            if BackupPhase(backup.phase) not in (BackupPhase.COMPLETED, BackupPhase.PARTIALLY_FAILED):
                raise errors.Conflict(
                    f"Backup '{backup.name}' is {backup.phase}: only Completed or PartiallyFailed backups can be "
                    "restored.",
                    details={"phase": backup.phase},
                )
            destination = source
            if destination_cluster_ref and destination_cluster_ref not in (source.id, source.name):
                try:
                    _, destination = load_cluster(session, principal, project_ref, destination_cluster_ref)
                except errors.NotFound as exc:
                    raise errors.InvalidInput(
                        f"No cluster '{destination_cluster_ref}' in project '{project.name}' to restore into: a "
                        "backup can be restored into a cluster of its own project.",
                        field="destinationClusterId",
                    ) from exc
            location = session.get(Location, backup.location_id)
            if location is None:
                raise errors.Conflict(
                    f"The location of backup '{backup.name}' was deleted, so its objects cannot be reached."
                )
            base = restore_name(backup.name, now)
            taken = set(
                session.scalars(
                    select(Restore.name).where(
                        Restore.destination_cluster_id == destination.id, Restore.name.like(f"{base}%")
                    )
                )
            )
            # A preview confirmed within the same second (or a script) gets the next free suffix, not a 409.
            name = next(
                candidate
                for candidate in (base, *(f"{base[: 63 - len(str(n)) - 1]}-{n}" for n in range(2, 1000)))
                if candidate not in taken
            )
            row = Restore(
                project_id=project.id,
                destination_cluster_id=destination.id,
                source_cluster_id=source.id,
                backup_id=backup.id,
                backup_name=backup.name,
                location_id=location.id,
                source_prefix=backup.storage_prefix,
                destination_prefix=cluster_prefix(location.prefix, destination.id),
                name=name,
                request=request.to_json(),
                phase=RestorePhase.NEW.value,
                total_items=0,
                items_restored=0,
                summary={},
                problems=[],
                attempt=0,
                created_by=principal.subject[:200],
                created_at=now,
            )
            session.add(row)
            session.flush()
            return _view(row, project, destination, source.name)

    def list_page(
        self, principal: Principal, project_ref: str, cluster_ref: str, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[RestoreView], int]:
        """Restores into a cluster, newest first."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            where = Restore.destination_cluster_id == cluster.id
            total = session.scalar(select(func.count()).select_from(Restore).where(where))
            rows = session.scalars(
                select(Restore).where(where).order_by(Restore.created_at.desc()).limit(limit).offset(offset)
            ).all()
            names = _cluster_names(session, {r.source_cluster_id for r in rows})
            return [_view(r, project, cluster, names.get(r.source_cluster_id)) for r in rows], int(total or 0)

    def get(self, principal: Principal, project_ref: str, cluster_ref: str, name: str) -> RestoreView:
        """One restore into a cluster by name (or id)."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project, cluster, row = _load_restore(session, principal, project_ref, cluster_ref, name)
            names = _cluster_names(session, {row.source_cluster_id})
            return _view(row, project, cluster, names.get(row.source_cluster_id))

    def items(
        self,
        principal: Principal,
        project_ref: str,
        cluster_ref: str,
        name: str,
        *,
        action: str | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> tuple[list[ItemResult], int]:
        """Per-item results (or the preview's plan), optionally of one action."""
        require(principal, Permission.READ)
        if action is not None and action not in {a.value for a in ItemAction}:
            raise errors.InvalidInput(
                f"action must be one of {', '.join(a.value for a in ItemAction)}, not {action!r}.", field="action"
            )
        limit = max(1, min(limit, ITEMS_PAGE_MAX))
        with self._db.session() as session:
            _, _, row = _load_restore(session, principal, project_ref, cluster_ref, name)
            where = [RestoreItem.restore_id == row.id]
            if action:
                where.append(RestoreItem.action == action)
            total = session.scalar(select(func.count()).select_from(RestoreItem).where(*where))
            rows = session.scalars(
                select(RestoreItem).where(*where).order_by(RestoreItem.id).limit(limit).offset(offset)
            )
            return [ItemResult(r.api_version, r.kind, r.namespace, r.name, r.action, r.reason) for r in rows], int(
                total or 0
            )

    def logs(
        self, principal: Principal, project_ref: str, cluster_ref: str, name: str, *, after: int = 0, limit: int = 1000
    ) -> LogPage:
        """Log lines of a restore after the cursor (live while it runs)."""
        require(principal, Permission.READ)
        limit = max(1, min(limit, LOG_PAGE_MAX))
        with self._db.session() as session:
            _, _, row = _load_restore(session, principal, project_ref, cluster_ref, name)
            return log_page(
                session,
                RestoreLogLine,
                RestoreLogLine.restore_id,
                row.id,
                after,
                limit,
                RestorePhase(row.phase).finished,
            )

    # -- agents ----------------------------------------------------------------------------------------
    def work_for(self, agent: AgentPrincipal) -> list[tuple[str, str, dict[str, Any]]]:
        """New restores into the agent's cluster: (restore id, location id, params)."""
        with self._db.session() as session:
            rows = session.scalars(
                select(Restore)
                .where(Restore.destination_cluster_id == agent.cluster_id, Restore.phase == RestorePhase.NEW.value)
                .order_by(Restore.created_at)
                .limit(10)
            )
            return [(r.id, r.location_id, self._params(r)) for r in rows]

    def owns(self, job_id: str) -> bool:
        """True when a job id is a restore."""
        with self._db.session() as session:
            return session.get(Restore, job_id) is not None

    def claim(self, agent: AgentPrincipal, restore_id: str) -> RestoreClaim:
        """Take a New restore of the agent's own cluster."""
        now = self._clock()
        with self._db.session() as session:
            claimed = claim_new(
                session, Restore, Restore.destination_cluster_id, restore_id, agent.cluster_id, now, self.lease_seconds
            )
            row = session.get(Restore, restore_id)
            if row is None or row.destination_cluster_id != agent.cluster_id:
                raise errors.NotFound(f"No restore job '{restore_id}' for cluster '{agent.cluster_name}'.")
            if not claimed:
                raise errors.Conflict(f"Restore '{row.name}' cannot be started: it is {row.phase}.")
            session.refresh(row)
            touch_cluster(session, agent, now)
            return RestoreClaim(lease_seconds=self.lease_seconds, params=self._params(row), location_id=row.location_id)

    def session_policy(
        self,
        agent: AgentPrincipal,
        restore_id: str,
        *,
        bucket: str,
        partition: str,
        snapshots: bool,
        kms_key_arn: str | None,
    ) -> dict[str, Any]:
        """The session policy of a running restore of the agent's cluster (for its job credentials)."""
        with self._db.session() as session:
            row = self._running(session, agent, restore_id)
            return restore_session_policy(
                bucket=bucket,
                source_cluster_prefix=row.source_prefix,
                backup_name=row.backup_name,
                destination_cluster_prefix=row.destination_prefix,
                name=row.name,
                partition=partition,
                snapshots=snapshots,
                kms_key_arn=kms_key_arn,
            )

    def location_of(self, restore_id: str) -> str:
        """The location id of a restore."""
        with self._db.session() as session:
            row = session.get(Restore, restore_id)
            if row is None:
                raise errors.NotFound(f"No restore job '{restore_id}'.")
            return row.location_id

    def report(
        self,
        agent: AgentPrincipal,
        restore_id: str,
        *,
        total_items: int,
        items_restored: int,
        lines: Sequence[tuple[datetime, str, str]] = (),
        items: Sequence[ItemResult] = (),
    ) -> int:
        """Progress, log lines and item results of a running restore; renews the lease; returns it."""
        now = self._clock()
        with self._db.session() as session:
            row = self._running(session, agent, restore_id)
            row.total_items = max(0, total_items)
            row.items_restored = max(0, items_restored)
            row.last_report_at = now
            row.lease_expires_at = now + timedelta(seconds=self.lease_seconds)
            add_log_lines(session, RestoreLogLine, RestoreLogLine.restore_id, row.id, lines)
            _add_items(session, row.id, items)
            touch_cluster(session, agent, now)
        return self.lease_seconds

    def complete(
        self,
        agent: AgentPrincipal,
        restore_id: str,
        outcome: RestoreOutcome,
        *,
        lines: Sequence[tuple[datetime, str, str]] = (),
        items: Sequence[ItemResult] = (),
    ) -> RestoreView:
        """Record how a restore ended."""
        now = self._clock()
        with self._db.session() as session:
            row = self._running(session, agent, restore_id)
            add_log_lines(session, RestoreLogLine, RestoreLogLine.restore_id, row.id, lines)
            _add_items(session, row.id, items)
            row.phase = outcome.phase.value
            row.failure_reason = outcome.failure_reason
            row.total_items = outcome.total_items
            row.items_restored = outcome.items_restored
            row.summary = {str(k): int(v) for k, v in (outcome.summary or {}).items()}
            row.problems = [dict(p) for p in outcome.problems[:MAX_PROBLEMS]]
            row.completed_at = now
            row.last_report_at = now
            row.lease_expires_at = None
            touch_cluster(session, agent, now)
            project = session.get_one(Project, row.project_id)
            cluster = session.get_one(Cluster, row.destination_cluster_id)
            names = _cluster_names(session, {row.source_cluster_id})
            view = _view(row, project, cluster, names.get(row.source_cluster_id))
        seconds = (now - view.started_at).total_seconds() if view.started_at else 0.0
        self._metrics.restore_finished(outcome.phase.value, seconds, outcome.items_restored)
        return view

    def fail_lost_jobs(self) -> list[str]:
        """Fail restores whose agent stopped reporting or never started them."""
        now = self._clock()
        failed: list[str] = []
        with self._db.session() as session:
            lost = session.scalars(
                select(Restore).where(Restore.phase == RestorePhase.IN_PROGRESS.value, Restore.lease_expires_at < now)
            ).all()
            for row in lost:
                cluster = session.get_one(Cluster, row.destination_cluster_id)
                row.phase = RestorePhase.FAILED.value
                row.lease_expires_at = None
                row.completed_at = now
                row.failure_reason = (
                    f"The agent of cluster '{cluster.name}' stopped reporting during the restore (its lease of "
                    f"{self.lease_seconds} s ran out). Objects restored so far stay in the cluster; check the "
                    "agent's logs, then restore again (existing objects are skipped or updated by the policy)."
                )
                failed.append(row.name)
                self._metrics.restore_finished(RestorePhase.FAILED.value, 0.0, row.items_restored)
            cutoff = now - timedelta(seconds=self._start_timeout)
            for row in session.scalars(
                select(Restore).where(Restore.phase == RestorePhase.NEW.value, Restore.created_at < cutoff)
            ).all():
                cluster = session.get_one(Cluster, row.destination_cluster_id)
                row.phase = RestorePhase.FAILED.value
                row.completed_at = now
                row.failure_reason = (
                    f"The agent of cluster '{cluster.name}' did not start this restore within "
                    f"{self._start_timeout // 60} minutes: start the agent, then restore again."
                )
                failed.append(row.name)
        return failed

    # -- helpers ---------------------------------------------------------------------------------------
    def _params(self, row: Restore) -> dict[str, Any]:
        return {
            "restoreId": row.id,
            "restoreName": row.name,
            "backupName": row.backup_name,
            "backupPrefix": backup_prefix(row.source_prefix, row.backup_name),
            "restorePrefix": restore_prefix(row.destination_prefix, row.name),
            "locationId": row.location_id,
            "request": dict(row.request),
            "credentialsPath": f"/api/v1/agent/jobs/{row.id}/credentials",
            "leaseSeconds": self.lease_seconds,
        }

    @staticmethod
    def _running(session: Session, agent: AgentPrincipal, restore_id: str) -> Restore:
        row = session.get(Restore, restore_id)
        if row is None or row.destination_cluster_id != agent.cluster_id:
            raise errors.NotFound(f"No restore job '{restore_id}' for cluster '{agent.cluster_name}'.")
        if row.phase != RestorePhase.IN_PROGRESS.value:
            raise errors.Conflict(
                f"Restore '{row.name}' is {row.phase}, not running: stop working on it.",
                details={"phase": row.phase, "reason": row.failure_reason},
            )
        return row


def _add_items(session: Session, restore_id: str, items: Sequence[ItemResult]) -> None:
    for item in items[:MAX_ITEMS_PER_REPORT]:
        session.add(
            RestoreItem(
                restore_id=restore_id,
                api_version=item.api_version[:253],
                kind=item.kind[:253],
                namespace=(item.namespace or None) and item.namespace[:253],
                name=item.name[:253],
                action=item.action[:16],
                reason=item.reason[:4000] if item.reason else None,
            )
        )


def _cluster_names(session: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Cluster.id, Cluster.name).where(Cluster.id.in_(ids))).all())


def _load_restore(
    session: Session, principal: Principal, project_ref: str, cluster_ref: str, name: str
) -> tuple[Project, Cluster, Restore]:
    project, cluster = load_cluster(session, principal, project_ref, cluster_ref)
    row = session.scalar(
        select(Restore).where(
            Restore.destination_cluster_id == cluster.id, or_(Restore.name == name, Restore.id == name)
        )
    )
    if row is None:
        raise errors.NotFound(
            f"No restore '{name}' into cluster '{cluster.name}'. List them with `stowage restores list {cluster.name}`."
        )
    return project, cluster, row


def _view(row: Restore, project: Project, cluster: Cluster, source_name: str | None) -> RestoreView:
    return RestoreView(
        id=row.id,
        name=row.name,
        project=project.name,
        source_cluster_id=row.source_cluster_id,
        source_cluster_name=source_name,
        backup_name=row.backup_name,
        destination_cluster_id=cluster.id,
        destination_cluster_name=cluster.name,
        location_id=row.location_id,
        phase=RestorePhase(row.phase),
        failure_reason=row.failure_reason,
        request=RestoreRequest.from_json(row.request),
        total_items=row.total_items,
        items_restored=row.items_restored,
        summary={str(k): int(v) for k, v in (row.summary or {}).items()},
        problems=list(row.problems or []),
        storage_prefix=restore_prefix(row.destination_prefix, row.name),
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
    )
