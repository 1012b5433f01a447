"""API v1 for workspaces: groups of clusters, their backups, restores and schedules, and protection status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field

from stowage.api.backups import BackupFields, ScheduleIn
from stowage.api.deps import PrincipalDep, RuntimeDep
from stowage.api.restores import RestoreCreate
from stowage.api.schemas import CamelModel, ErrorOut
from stowage.domain.backups import BackupRequest
from stowage.domain.protection import Protection
from stowage.domain.schedules import preset_for
from stowage.services.workspaces import (
    ClusterStatus,
    PartView,
    WorkspaceBackupView,
    WorkspaceRestoreView,
    WorkspaceView,
)
from stowage.store.tables import BackupSchedule

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["workspaces"])
Ref = Annotated[str, Field(max_length=200)]
BASE = "/projects/{project}/workspaces"


class ProtectionOut(CamelModel):
    """Recovery point status: risk (on_time, late, missed, failing, never), last success, next run."""

    risk: str
    last_successful_backup_at: datetime | None
    next_scheduled_at: datetime | None
    reason: str

    @classmethod
    def of(cls, p: Protection) -> ProtectionOut:
        """Build from the domain value."""
        return cls(
            risk=p.risk.value,
            last_successful_backup_at=p.last_successful_backup_at,
            next_scheduled_at=p.next_scheduled_at,
            reason=p.reason,
        )


class ClusterStatusOut(CamelModel):
    """A cluster's connection and protection."""

    cluster_id: str
    cluster_name: str
    connected: bool
    protection: ProtectionOut

    @classmethod
    def of(cls, s: ClusterStatus) -> ClusterStatusOut:
        """Build from the service's view."""
        return cls(
            cluster_id=s.id, cluster_name=s.name, connected=s.connected, protection=ProtectionOut.of(s.protection)
        )


class WorkspaceIn(CamelModel):
    """A workspace to create."""

    name: Ref
    cluster_ids: Annotated[list[Ref], Field(max_length=500)] = Field(default_factory=list)


class WorkspacePatch(CamelModel):
    """Clusters to add to and remove from a workspace."""

    add_cluster_ids: Annotated[list[Ref], Field(max_length=500)] = Field(default_factory=list)
    remove_cluster_ids: Annotated[list[Ref], Field(max_length=500)] = Field(default_factory=list)


class WorkspaceOut(CamelModel):
    """A workspace with its clusters and its roll-up protection."""

    id: str
    name: str
    project: str
    clusters: list[ClusterStatusOut]
    protection: ProtectionOut
    created_at: datetime

    @classmethod
    def of(cls, v: WorkspaceView) -> WorkspaceOut:
        """Build from the service's view."""
        return cls(
            id=v.id,
            name=v.name,
            project=v.project,
            clusters=[ClusterStatusOut.of(c) for c in v.clusters],
            protection=ProtectionOut.of(v.protection),
            created_at=v.created_at,
        )


class WorkspaceList(CamelModel):
    """Workspaces of a project."""

    items: list[WorkspaceOut]
    total: int


class PartOut(CamelModel):
    """One cluster's backup or restore of a workspace request."""

    cluster_id: str
    cluster_name: str
    name: str
    phase: str
    failure_reason: str | None

    @classmethod
    def of(cls, p: PartView) -> PartOut:
        """Build from the service's view."""
        return cls(
            cluster_id=p.cluster_id,
            cluster_name=p.cluster_name,
            name=p.name,
            phase=p.phase,
            failure_reason=p.failure_reason,
        )


class WorkspaceBackupIn(BackupFields):
    """A workspace backup: the fields of a cluster backup, and which clusters."""

    backup_name: Ref
    cluster_ids: Annotated[list[Ref], Field(max_length=500)] = Field(default_factory=list)
    include_all_clusters: bool = True


class WorkspaceBackupOut(CamelModel):
    """A workspace backup with its roll-up phase, each cluster's backup and the clusters skipped."""

    id: str
    backup_name: str
    workspace: str
    phase: str
    clusters: list[PartOut]
    skipped: list[dict[str, Any]]
    namespaces: list[str]
    include_all_disks: bool
    schedule_name: str | None
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, v: WorkspaceBackupView) -> WorkspaceBackupOut:
        """Build from the service's view."""
        return cls(
            id=v.id,
            backup_name=v.name,
            workspace=v.workspace,
            phase=v.phase,
            clusters=[PartOut.of(p) for p in v.parts],
            skipped=v.skipped,
            namespaces=list(v.request.namespaces),
            include_all_disks=v.request.include_all_disks,
            schedule_name=v.schedule_name,
            created_by=v.created_by,
            created_at=v.created_at,
        )


class WorkspaceRestoreIn(RestoreCreate):
    """A workspace restore: the restore fields (each cluster restores into itself)."""


class WorkspaceRestoreOut(CamelModel):
    """A workspace restore with its roll-up phase, each cluster's restore and the clusters skipped."""

    id: str
    restore_name: str
    workspace: str
    backup_name: str
    phase: str
    clusters: list[PartOut]
    skipped: list[dict[str, Any]]
    created_at: datetime

    @classmethod
    def of(cls, v: WorkspaceRestoreView) -> WorkspaceRestoreOut:
        """Build from the service's view."""
        return cls(
            id=v.id,
            restore_name=v.name,
            workspace=v.workspace,
            backup_name=v.backup_name,
            phase=v.phase,
            clusters=[PartOut.of(p) for p in v.parts],
            skipped=v.skipped,
            created_at=v.created_at,
        )


class WorkspaceScheduleOut(CamelModel):
    """A workspace's schedule."""

    backup_prefix: str
    schedule: str
    preset: str
    paused: bool
    backup_location_id: str | None
    namespaces: list[str]
    next_run_at: datetime | None
    last_backup_name: str | None

    @classmethod
    def of(cls, row: BackupSchedule) -> WorkspaceScheduleOut:
        """Build from the stored schedule."""
        request = BackupRequest.from_json(row.request)
        return cls(
            backup_prefix=row.backup_prefix,
            schedule=row.schedule,
            preset=preset_for(row.schedule),
            paused=row.paused,
            backup_location_id=row.location_id,
            namespaces=list(request.namespaces),
            next_run_at=row.next_run_at,
            last_backup_name=row.last_backup_name,
        )


class ProtectionReport(CamelModel):
    """Protection status of every cluster and every workspace of a project."""

    clusters: list[ClusterStatusOut]
    workspaces: list[WorkspaceOut]


# -- workspaces ----------------------------------------------------------------------------------------
@router.post(BASE, response_model=WorkspaceOut, status_code=201)
def create_workspace(project: str, body: WorkspaceIn, principal: PrincipalDep, runtime: RuntimeDep) -> WorkspaceOut:
    """Create a workspace with clusters (editors)."""
    return WorkspaceOut.of(runtime.workspaces.create(principal, project, name=body.name, cluster_refs=body.cluster_ids))


@router.get(BASE, response_model=WorkspaceList)
def list_workspaces(project: str, principal: PrincipalDep, runtime: RuntimeDep) -> WorkspaceList:
    """Workspaces of a project with their protection status."""
    items = [WorkspaceOut.of(v) for v in runtime.workspaces.list_all(principal, project)]
    return WorkspaceList(items=items, total=len(items))


@router.get(BASE + "/{workspace}", response_model=WorkspaceOut)
def get_workspace(project: str, workspace: str, principal: PrincipalDep, runtime: RuntimeDep) -> WorkspaceOut:
    """One workspace."""
    return WorkspaceOut.of(runtime.workspaces.get(principal, project, workspace))


@router.patch(BASE + "/{workspace}", response_model=WorkspaceOut)
def patch_workspace(
    project: str, workspace: str, body: WorkspacePatch, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceOut:
    """Add and remove clusters (editors)."""
    view = runtime.workspaces.set_clusters(
        principal, project, workspace, add=body.add_cluster_ids, remove=body.remove_cluster_ids
    )
    return WorkspaceOut.of(view)


@router.put(BASE + "/{workspace}/clusters/{cluster}", response_model=WorkspaceOut)
def add_cluster(
    project: str, workspace: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceOut:
    """Add one cluster (editors)."""
    return WorkspaceOut.of(runtime.workspaces.set_clusters(principal, project, workspace, add=[cluster]))


@router.delete(BASE + "/{workspace}/clusters/{cluster}", response_model=WorkspaceOut)
def remove_cluster(
    project: str, workspace: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceOut:
    """Remove one cluster (editors); its backups stay."""
    return WorkspaceOut.of(runtime.workspaces.set_clusters(principal, project, workspace, remove=[cluster]))


@router.delete(BASE + "/{workspace}", status_code=204)
def delete_workspace(project: str, workspace: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Delete a workspace and all its backups (admins)."""
    runtime.workspaces.delete(principal, project, workspace)
    return Response(status_code=204)


# -- backups, restores, schedule ---------------------------------------------------------------------------
@router.post(BASE + "/{workspace}/backups", response_model=WorkspaceBackupOut, status_code=202)
def backup_workspace(
    project: str, workspace: str, body: WorkspaceBackupIn, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceBackupOut:
    """Back up the workspace's clusters under one request (editors); disconnected agents are skipped."""
    view = runtime.workspaces.backup(
        principal,
        project,
        workspace,
        name=body.backup_name,
        request=body.to_request(),
        location_id=(body.backup_location_id or "").strip() or None,
        cluster_refs=body.cluster_ids,
        include_all_clusters=body.include_all_clusters and not body.cluster_ids,
    )
    return WorkspaceBackupOut.of(view)


@router.get(BASE + "/{workspace}/backups", response_model=list[WorkspaceBackupOut])
def list_workspace_backups(
    project: str, workspace: str, principal: PrincipalDep, runtime: RuntimeDep
) -> list[WorkspaceBackupOut]:
    """A workspace's backups with roll-up and per-cluster phases."""
    return [WorkspaceBackupOut.of(v) for v in runtime.workspaces.list_backups(principal, project, workspace)]


@router.get(BASE + "/{workspace}/backups/{name}", response_model=WorkspaceBackupOut)
def get_workspace_backup(
    project: str, workspace: str, name: str, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceBackupOut:
    """One workspace backup."""
    return WorkspaceBackupOut.of(runtime.workspaces.get_backup(principal, project, workspace, name))


@router.delete(BASE + "/{workspace}/backups/{name}", response_model=WorkspaceBackupOut, status_code=202)
def delete_workspace_backup(
    project: str, workspace: str, name: str, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceBackupOut:
    """Delete every cluster's backup of a workspace backup (admins)."""
    return WorkspaceBackupOut.of(runtime.workspaces.delete_backup(principal, project, workspace, name))


@router.post(BASE + "/{workspace}/backups/{name}/restores", response_model=WorkspaceRestoreOut, status_code=202)
def restore_workspace(
    project: str, workspace: str, name: str, body: WorkspaceRestoreIn, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceRestoreOut:
    """Restore a workspace backup on every cluster still in the workspace (editors)."""
    view = runtime.workspaces.restore(principal, project, workspace, name, request=body.to_request())
    return WorkspaceRestoreOut.of(view)


@router.get(BASE + "/{workspace}/restores", response_model=list[WorkspaceRestoreOut])
def list_workspace_restores(
    project: str, workspace: str, principal: PrincipalDep, runtime: RuntimeDep
) -> list[WorkspaceRestoreOut]:
    """A workspace's restores."""
    return [WorkspaceRestoreOut.of(v) for v in runtime.workspaces.list_restores(principal, project, workspace)]


@router.put(BASE + "/{workspace}/backup-schedule", response_model=WorkspaceScheduleOut)
def set_workspace_schedule(
    project: str, workspace: str, body: ScheduleIn, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceScheduleOut:
    """Create or replace the workspace's schedule (editors); cron in UTC."""
    row = runtime.workspaces.set_schedule(
        principal,
        project,
        workspace,
        backup_prefix=body.backup_prefix,
        schedule=body.schedule,
        paused=body.paused,
        request=body.to_request(),
        location_id=(body.backup_location_id or "").strip() or None,
    )
    return WorkspaceScheduleOut.of(row)


@router.get(BASE + "/{workspace}/backup-schedule", response_model=WorkspaceScheduleOut)
def get_workspace_schedule(
    project: str, workspace: str, principal: PrincipalDep, runtime: RuntimeDep
) -> WorkspaceScheduleOut:
    """The workspace's schedule."""
    return WorkspaceScheduleOut.of(runtime.workspaces.get_schedule(principal, project, workspace))


@router.delete(BASE + "/{workspace}/backup-schedule", status_code=204)
def delete_workspace_schedule(project: str, workspace: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Remove the workspace's schedule."""
    runtime.workspaces.delete_schedule(principal, project, workspace)
    return Response(status_code=204)


@router.get("/projects/{project}/protection", response_model=ProtectionReport)
def protection(project: str, principal: PrincipalDep, runtime: RuntimeDep) -> ProtectionReport:
    """Every cluster's and workspace's last successful backup, next scheduled one and RPO risk."""
    clusters, workspaces = runtime.workspaces.protection(principal, project)
    return ProtectionReport(
        clusters=[ClusterStatusOut.of(c) for c in clusters], workspaces=[WorkspaceOut.of(w) for w in workspaces]
    )
