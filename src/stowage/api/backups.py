"""API v1 for backups: requests, schedules, logs and contents (users), and the agents' job protocol."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import Field

from stowage.api.deps import PrincipalDep, RuntimeDep
from stowage.api.schemas import CamelModel, ErrorOut
from stowage.domain.backups import (
    DEFAULT_DURATION_HOURS,
    BackupPhase,
    BackupRequest,
    ClusterResourceMode,
    clean_list,
)
from stowage.domain.schedules import preset_for
from stowage.services.backups import BackupView, ScheduleView

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS)

FilterList = Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=1000)]


# -- schemas -----------------------------------------------------------------------------------------
class BackupFields(CamelModel):
    """What to back up (Palette's field names); shared by backups and schedules."""

    backup_location_id: Annotated[str, Field(max_length=200)] | None = None
    duration_in_hours: Annotated[int, Field(ge=1, le=87600)] = DEFAULT_DURATION_HOURS
    include_all_disks: bool = False
    include_cluster_resource_mode: ClusterResourceMode = ClusterResourceMode.AUTO
    namespaces: FilterList = Field(default_factory=list)
    excluded_namespaces: FilterList = Field(default_factory=list)
    included_resources: FilterList = Field(default_factory=list)
    excluded_resources: FilterList = Field(default_factory=list)
    label_selector: Annotated[str, Field(max_length=4096)] | None = None

    def to_request(self) -> BackupRequest:
        """The domain request."""
        return BackupRequest(
            namespaces=clean_list(self.namespaces),
            excluded_namespaces=clean_list(self.excluded_namespaces),
            included_resources=clean_list(self.included_resources),
            excluded_resources=clean_list(self.excluded_resources),
            label_selector=(self.label_selector or "").strip() or None,
            cluster_resource_mode=self.include_cluster_resource_mode,
            include_all_disks=self.include_all_disks,
            duration_hours=self.duration_in_hours,
        )


class BackupCreate(BackupFields):
    """A backup to take now."""

    backup_name: Annotated[str, Field(max_length=200)]


class ProgressOut(CamelModel):
    """How far a backup got."""

    total_items: int
    items_backed_up: int


class BackupOut(CamelModel):
    """A backup."""

    id: str
    backup_name: str
    project: str
    cluster_id: str
    cluster_name: str
    backup_location_id: str
    backup_location_name: str
    phase: BackupPhase
    failure_reason: str | None
    progress: ProgressOut
    size_bytes: int
    warnings: int
    errors: int
    volume_snapshots: int
    duration_in_hours: int
    include_all_disks: bool
    include_cluster_resource_mode: ClusterResourceMode
    namespaces: list[str]
    excluded_namespaces: list[str]
    included_resources: list[str]
    excluded_resources: list[str]
    label_selector: str | None
    schedule_name: str | None
    origin: str
    storage_prefix: str
    created_by: str
    created_at: datetime
    start_time: datetime | None
    completion_time: datetime | None
    expiration_time: datetime

    @classmethod
    def of(cls, view: BackupView) -> BackupOut:
        """Build from the service's view."""
        request = view.request
        return cls(
            id=view.id,
            backup_name=view.name,
            project=view.project,
            cluster_id=view.cluster_id,
            cluster_name=view.cluster_name,
            backup_location_id=view.location_id,
            backup_location_name=view.location_name,
            phase=view.phase,
            failure_reason=view.failure_reason,
            progress=ProgressOut(total_items=view.total_items, items_backed_up=view.items_backed_up),
            size_bytes=view.size_bytes,
            warnings=view.warnings,
            errors=view.errors,
            volume_snapshots=view.volume_snapshots,
            duration_in_hours=request.duration_hours,
            include_all_disks=request.include_all_disks,
            include_cluster_resource_mode=request.cluster_resource_mode,
            namespaces=list(request.namespaces),
            excluded_namespaces=list(request.excluded_namespaces),
            included_resources=list(request.included_resources),
            excluded_resources=list(request.excluded_resources),
            label_selector=request.label_selector,
            schedule_name=view.schedule_name,
            origin=view.origin,
            storage_prefix=view.storage_prefix,
            created_by=view.created_by,
            created_at=view.created_at,
            start_time=view.started_at,
            completion_time=view.completed_at,
            expiration_time=view.expires_at,
        )


class BackupList(CamelModel):
    """A page of a cluster's backups, newest first."""

    items: list[BackupOut]
    total: int


class LogLineOut(CamelModel):
    """One log line."""

    id: int
    at: datetime
    level: str
    message: str


class LogPageOut(CamelModel):
    """Log lines after the cursor; poll again with ``after=nextAfter`` until ``finished``."""

    lines: list[LogLineOut]
    next_after: int
    finished: bool


class ItemMessageOut(CamelModel):
    """A warning or error about one item."""

    message: str
    namespace: str | None = None
    resource: str | None = None
    name: str | None = None


class ContentsOut(CamelModel):
    """The resources in a backup (``<apiVersion>/<Kind>`` → ``namespace/name``) and per-item problems."""

    resources: dict[str, list[str]]
    total_items: int
    warnings: list[ItemMessageOut]
    errors: list[ItemMessageOut]


class ScheduleIn(BackupFields):
    """A cluster's backup schedule: cron in UTC, the name prefix, and the fields of each backup."""

    backup_prefix: Annotated[str, Field(max_length=200)]
    schedule: Annotated[str, Field(max_length=200)]
    paused: bool = False


class ScheduleOut(CamelModel):
    """A cluster's backup schedule."""

    id: str
    cluster_id: str
    cluster_name: str
    backup_prefix: str
    schedule: str
    preset: str
    paused: bool
    backup_location_id: str | None
    duration_in_hours: int
    include_all_disks: bool
    include_cluster_resource_mode: ClusterResourceMode
    namespaces: list[str]
    excluded_namespaces: list[str]
    included_resources: list[str]
    excluded_resources: list[str]
    label_selector: str | None
    next_run_at: datetime | None
    last_backup_name: str | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: ScheduleView) -> ScheduleOut:
        """Build from the service's view."""
        request = view.request
        return cls(
            id=view.id,
            cluster_id=view.cluster_id,
            cluster_name=view.cluster_name,
            backup_prefix=view.backup_prefix,
            schedule=view.schedule,
            preset=preset_for(view.schedule),
            paused=view.paused,
            backup_location_id=view.location_id,
            duration_in_hours=request.duration_hours,
            include_all_disks=request.include_all_disks,
            include_cluster_resource_mode=request.cluster_resource_mode,
            namespaces=list(request.namespaces),
            excluded_namespaces=list(request.excluded_namespaces),
            included_resources=list(request.included_resources),
            excluded_resources=list(request.excluded_resources),
            label_selector=request.label_selector,
            next_run_at=view.next_run_at,
            last_backup_name=view.last_backup_name,
            last_run_at=view.last_run_at,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class SchedulePause(CamelModel):
    """Pause or resume a schedule."""

    paused: bool


# -- users: backups ------------------------------------------------------------------------------------
BASE = "/projects/{project}/clusters/{cluster}"


@router.post(f"{BASE}/backups", response_model=BackupOut, status_code=202, tags=["backups"])
def create_backup(
    project: str, cluster: str, body: BackupCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> BackupOut:
    """Back up a cluster now (editors); the cluster's agent picks it up with its next heartbeat."""
    view = runtime.backups.create(
        principal,
        project,
        cluster,
        name=body.backup_name,
        request=body.to_request(),
        location_id=(body.backup_location_id or "").strip() or None,
    )
    return BackupOut.of(view)


@router.get(f"{BASE}/backups", response_model=BackupList, tags=["backups"])
def list_backups(
    project: str,
    cluster: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> BackupList:
    """A cluster's backups, newest first."""
    items, total = runtime.backups.list_page(principal, project, cluster, limit=limit, offset=offset)
    return BackupList(items=[BackupOut.of(v) for v in items], total=total)


@router.get(f"{BASE}/backups/{{name}}", response_model=BackupOut, tags=["backups"])
def get_backup(project: str, cluster: str, name: str, principal: PrincipalDep, runtime: RuntimeDep) -> BackupOut:
    """One backup by name."""
    return BackupOut.of(runtime.backups.get(principal, project, cluster, name))


@router.delete(f"{BASE}/backups/{{name}}", response_model=BackupOut, status_code=202, tags=["backups"])
def delete_backup(project: str, cluster: str, name: str, principal: PrincipalDep, runtime: RuntimeDep) -> BackupOut:
    """Delete a backup (admins): its objects and EBS snapshots are removed, then the record; ``Failed`` with the
    reason if that is impossible."""
    return BackupOut.of(runtime.backups.request_delete(principal, project, cluster, name))


@router.get(f"{BASE}/backups/{{name}}/logs", response_model=LogPageOut, tags=["backups"])
def backup_logs(
    project: str,
    cluster: str,
    name: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPageOut:
    """The backup's log lines after the cursor ``after``; live while it runs."""
    page = runtime.backups.logs(principal, project, cluster, name, after=after, limit=limit)
    return LogPageOut(
        lines=[LogLineOut(id=x.id, at=x.at, level=x.level, message=x.message) for x in page.lines],
        next_after=page.next_after,
        finished=page.finished,
    )


@router.get(f"{BASE}/backups/{{name}}/contents", response_model=ContentsOut, tags=["backups"])
def backup_contents(project: str, cluster: str, name: str, principal: PrincipalDep, runtime: RuntimeDep) -> ContentsOut:
    """What a completed backup holds (from its resource list in the bucket) and its per-item warnings/errors."""
    contents = runtime.backups.contents(principal, project, cluster, name)
    return ContentsOut(
        resources=contents.resources,
        total_items=contents.total_items,
        warnings=[ItemMessageOut.model_validate(w) for w in contents.warnings],
        errors=[ItemMessageOut.model_validate(e) for e in contents.errors],
    )


# -- users: schedules --------------------------------------------------------------------------------------
@router.put(f"{BASE}/backup-schedule", response_model=ScheduleOut, tags=["backups"])
def set_schedule(
    project: str, cluster: str, body: ScheduleIn, principal: PrincipalDep, runtime: RuntimeDep
) -> ScheduleOut:
    """Create or replace the cluster's backup schedule (editors); cron in UTC."""
    view = runtime.backups.set_schedule(
        principal,
        project,
        cluster,
        backup_prefix=body.backup_prefix,
        schedule=body.schedule,
        paused=body.paused,
        request=body.to_request(),
        location_id=(body.backup_location_id or "").strip() or None,
    )
    return ScheduleOut.of(view)


@router.get(f"{BASE}/backup-schedule", response_model=ScheduleOut, tags=["backups"])
def get_schedule(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> ScheduleOut:
    """The cluster's backup schedule (404 when none)."""
    return ScheduleOut.of(runtime.backups.get_schedule(principal, project, cluster))


@router.post(f"{BASE}/backup-schedule/pause", response_model=ScheduleOut, tags=["backups"])
def pause_schedule(
    project: str, cluster: str, body: SchedulePause, principal: PrincipalDep, runtime: RuntimeDep
) -> ScheduleOut:
    """Pause (``paused: true``) or resume the schedule."""
    return ScheduleOut.of(runtime.backups.pause_schedule(principal, project, cluster, paused=body.paused))


@router.delete(f"{BASE}/backup-schedule", status_code=204, tags=["backups"])
def delete_schedule(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Remove the schedule; its backups stay until they expire."""
    runtime.backups.delete_schedule(principal, project, cluster)
    return Response(status_code=204)
