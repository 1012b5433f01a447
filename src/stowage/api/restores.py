"""API v1 for restores: restore a backup (or preview it with ``dryRun``), list restores, items and logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from stowage.api.backups import FilterList, LogLineOut, LogPageOut
from stowage.api.deps import PrincipalDep, RuntimeDep
from stowage.api.schemas import CamelModel, ErrorOut
from stowage.domain.backups import ClusterResourceMode, clean_list
from stowage.domain.restores import ExistingResourcePolicy, RestorePhase, RestoreRequest
from stowage.services.restores import RestoreView

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["restores"])

NamespaceName = Annotated[str, Field(max_length=63)]


class RestoreCreate(CamelModel):
    """What to restore, where and how (Palette's fields and more)."""

    destination_cluster_id: Annotated[str, Field(max_length=200)] | None = None
    include_namespaces: FilterList = Field(default_factory=list)
    excluded_namespaces: FilterList = Field(default_factory=list)
    namespace_mapping: Annotated[dict[NamespaceName, NamespaceName], Field(max_length=200)] = Field(
        default_factory=dict
    )
    include_cluster_resource_mode: ClusterResourceMode = ClusterResourceMode.AUTO
    restore_pvs: Annotated[bool, Field(alias="restorePVs")] = True
    preserve_node_ports: bool = False
    existing_resource_policy: ExistingResourcePolicy = ExistingResourcePolicy.NONE
    label_selector: Annotated[str, Field(max_length=4096)] | None = None
    dry_run: bool = False

    def to_request(self) -> RestoreRequest:
        """The domain request."""
        return RestoreRequest(
            include_namespaces=clean_list(self.include_namespaces),
            excluded_namespaces=clean_list(self.excluded_namespaces),
            namespace_mapping={k.strip(): v.strip() for k, v in self.namespace_mapping.items()},
            cluster_resource_mode=self.include_cluster_resource_mode,
            restore_pvs=self.restore_pvs,
            preserve_node_ports=self.preserve_node_ports,
            existing_resource_policy=self.existing_resource_policy,
            label_selector=(self.label_selector or "").strip() or None,
            dry_run=self.dry_run,
        )


class RestoreProgressOut(CamelModel):
    """How far a restore got."""

    total_items: int
    items_restored: int


class RestoreOut(CamelModel):
    """A restore (or a preview, ``dryRun: true``)."""

    id: str
    restore_name: str
    project: str
    backup_name: str
    source_cluster_id: str
    source_cluster_name: str | None
    destination_cluster_id: str
    destination_cluster_name: str
    backup_location_id: str
    phase: RestorePhase
    failure_reason: str | None
    progress: RestoreProgressOut
    summary: dict[str, int]
    problems: list[dict[str, Any]]
    include_namespaces: list[str]
    excluded_namespaces: list[str]
    namespace_mapping: dict[str, str]
    include_cluster_resource_mode: ClusterResourceMode
    restore_pvs: bool = Field(serialization_alias="restorePVs")
    preserve_node_ports: bool
    existing_resource_policy: ExistingResourcePolicy
    label_selector: str | None
    dry_run: bool
    storage_prefix: str
    created_by: str
    created_at: datetime
    start_time: datetime | None
    completion_time: datetime | None

    @classmethod
    def of(cls, view: RestoreView) -> RestoreOut:
        """Build from the service's view."""
        request = view.request
        return cls(
            id=view.id,
            restore_name=view.name,
            project=view.project,
            backup_name=view.backup_name,
            source_cluster_id=view.source_cluster_id,
            source_cluster_name=view.source_cluster_name,
            destination_cluster_id=view.destination_cluster_id,
            destination_cluster_name=view.destination_cluster_name,
            backup_location_id=view.location_id,
            phase=view.phase,
            failure_reason=view.failure_reason,
            progress=RestoreProgressOut(total_items=view.total_items, items_restored=view.items_restored),
            summary=view.summary,
            problems=view.problems,
            include_namespaces=list(request.include_namespaces),
            excluded_namespaces=list(request.excluded_namespaces),
            namespace_mapping=dict(request.namespace_mapping),
            include_cluster_resource_mode=request.cluster_resource_mode,
            restore_pvs=request.restore_pvs,
            preserve_node_ports=request.preserve_node_ports,
            existing_resource_policy=request.existing_resource_policy,
            label_selector=request.label_selector,
            dry_run=request.dry_run,
            storage_prefix=view.storage_prefix,
            created_by=view.created_by,
            created_at=view.created_at,
            start_time=view.started_at,
            completion_time=view.completed_at,
        )


class RestoreList(CamelModel):
    """Restores into a cluster, newest first."""

    items: list[RestoreOut]
    total: int


class RestoreItemOut(CamelModel):
    """One item's result, or its planned action in a preview."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    action: str
    reason: str | None


class RestoreItemList(CamelModel):
    """A page of item results."""

    items: list[RestoreItemOut]
    total: int


@router.post(
    "/projects/{project}/clusters/{cluster}/backups/{name}/restores", response_model=RestoreOut, status_code=202
)
def create_restore(
    project: str, cluster: str, name: str, body: RestoreCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> RestoreOut:
    """Restore a backup into a cluster of the project (editors); ``dryRun`` previews it without changes."""
    view = runtime.restores.create(
        principal,
        project,
        cluster,
        name,
        request=body.to_request(),
        destination_cluster_ref=(body.destination_cluster_id or "").strip() or None,
    )
    return RestoreOut.of(view)


@router.get("/projects/{project}/clusters/{cluster}/restores", response_model=RestoreList)
def list_restores(
    project: str,
    cluster: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RestoreList:
    """Restores into a cluster, newest first."""
    items, total = runtime.restores.list_page(principal, project, cluster, limit=limit, offset=offset)
    return RestoreList(items=[RestoreOut.of(v) for v in items], total=total)


@router.get("/projects/{project}/clusters/{cluster}/restores/{name}", response_model=RestoreOut)
def get_restore(project: str, cluster: str, name: str, principal: PrincipalDep, runtime: RuntimeDep) -> RestoreOut:
    """One restore into a cluster."""
    return RestoreOut.of(runtime.restores.get(principal, project, cluster, name))


@router.get("/projects/{project}/clusters/{cluster}/restores/{name}/items", response_model=RestoreItemList)
def restore_items(
    project: str,
    cluster: str,
    name: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    action: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RestoreItemList:
    """Per-item results (created/updated/skipped/failed) or a preview's plan (create/update/skip/conflict)."""
    items, total = runtime.restores.items(principal, project, cluster, name, action=action, limit=limit, offset=offset)
    return RestoreItemList(
        items=[
            RestoreItemOut(
                api_version=i.api_version,
                kind=i.kind,
                namespace=i.namespace,
                name=i.name,
                action=i.action,
                reason=i.reason,
            )
            for i in items
        ],
        total=total,
    )


@router.get("/projects/{project}/clusters/{cluster}/restores/{name}/logs", response_model=LogPageOut)
def restore_logs(
    project: str,
    cluster: str,
    name: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPageOut:
    """The restore's log lines after the cursor ``after``; live while it runs."""
    page = runtime.restores.logs(principal, project, cluster, name, after=after, limit=limit)
    return LogPageOut(
        lines=[LogLineOut(id=x.id, at=x.at, level=x.level, message=x.message) for x in page.lines],
        next_after=page.next_after,
        finished=page.finished,
    )
