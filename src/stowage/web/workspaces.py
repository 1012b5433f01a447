"""Project Settings → Workspaces: groups of clusters backed up and restored together, their protection status,
the Back up now, Schedule and Restore dialogs, and deleting with confirmation (admins)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stowage import errors
from stowage.domain.access import Permission
from stowage.domain.backups import BackupPhase, BackupRequest, ClusterResourceMode, backup_name_problem, clean_list
from stowage.domain.protection import Protection
from stowage.domain.restores import ExistingResourcePolicy, RestoreRequest
from stowage.domain.restores import request_problems as restore_problems
from stowage.domain.schedules import PRESETS, preset_for, schedule_problem
from stowage.services.workspaces import (
    WORKSPACE_BACKUP_NAME_MAX,
    WorkspaceBackupView,
    WorkspaceView,
    workspace_name_problem,
)
from stowage.store.tables import BackupSchedule
from stowage.web.backups import (
    DEFAULT_PREFIX,
    HELPERS,
    _request_of,
    _request_values,
    _values,
)
from stowage.web.clusters import RISK_LABELS
from stowage.web.common import (
    Visitor,
    WebRoute,
    clusters_url,
    project_frame,
    project_locations,
    read_form,
    redirect,
    render,
    runtime_of,
    settings_url,
    text,
    visitor,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PHASE_LABELS: dict[str, str] = {p.value: str(label) for p, label in HELPERS["phase_labels"].items()}
# The service names fields as the API does; the forms' fields are snake_case.
FORM_FIELDS = {
    "name": "name",
    "backupName": "name",
    "backupPrefix": "prefix",
    "schedule": "cron",
    "clusterIds": "clusters",
    "includeNamespaces": "namespaces",
    "excludedNamespaces": "excluded_namespaces",
    "namespaceMapping": "namespace_mapping",
    "labelSelector": "label_selector",
    "backupLocationId": "location",
}
BACKUP_FIELDS = (
    "name",
    "location",
    "expiry",
    "custom_hours",
    "include_all_disks",
    "cluster_resources",
    "namespaces",
    "excluded_namespaces",
    "included_resources",
    "excluded_resources",
    "label_selector",
)
SCHEDULE_FIELDS = ("prefix", "preset", "cron", "paused", *BACKUP_FIELDS[1:])
RESTORE_LENGTHS = {
    "namespaces": 20_000,
    "excluded_namespaces": 20_000,
    "namespace_mapping": 20_000,
    "cluster_resources": 16,
    "restore_pvs": 8,
    "preserve_node_ports": 8,
    "existing": 16,
    "label_selector": 4096,
    "dry_run": 8,
}
NOTICES = {
    "workspace-created": "Workspace created.",
    "workspace-deleted": "Workspace deleted. Its backups are being removed from the bucket.",
    "clusters-changed": "The workspace's clusters changed. A removed cluster keeps its backups.",
    "backup-created": "Backup requested: each connected cluster's agent starts its part with its next heartbeat.",
    "backup-deleting": "Deleting the workspace backup: each cluster's backup is being removed.",
    "schedule-saved": "Backup schedule saved.",
    "schedule-removed": "Backup schedule removed. Its backups stay until they expire.",
    "schedule-none": "The workspace has no backup schedule: nothing to remove.",
    "restore-created": "Restore requested: each cluster's agent restores its own backup.",
}
DIALOGS = ("backup", "schedule")
_CHECKED = {"on", "true", "1", "yes"}


# -- URLs and presentation ------------------------------------------------------------------------------
def workspaces_url(project: str, *parts: str, **query: str) -> str:
    """A page under a project's Workspaces."""
    url = settings_url(project, "workspaces", *parts)
    kept = {k: v for k, v in query.items() if v}
    return url + (f"?{urlencode(kept)}" if kept else "")


def risk_key(protection: Protection) -> str:
    """The CSS name of a risk badge."""
    return protection.risk.value.replace("_", "-")


def phase_label(phase: str) -> str:
    """A phase (a string in the workspace views) as people read it."""
    return PHASE_LABELS.get(phase, phase)


def phase_css(phase: str) -> str:
    """The CSS name of a phase's badge."""
    return phase.lower()


def tally(view: WorkspaceBackupView) -> str:
    """``2 of 3 clusters completed``."""
    done = sum(1 for p in view.parts if p.phase == BackupPhase.COMPLETED.value)
    total = len(view.parts) + len(view.skipped)
    return f"{done} of {total} cluster{'' if total == 1 else 's'} completed"


def active(view: WorkspaceBackupView) -> bool:
    """True while a part is new or running (the page refreshes itself)."""
    return any(p.phase in (BackupPhase.NEW.value, BackupPhase.IN_PROGRESS.value) for p in view.parts)


def _now_name(now: datetime | None = None) -> str:
    return f"ws-{(now or datetime.now(UTC)).strftime('%Y%m%d-%H%M%S')}"


WS_HELPERS: dict[str, Any] = {
    **HELPERS,
    "risk_labels": RISK_LABELS,
    "risk_key": risk_key,
    "ws_phase_label": phase_label,
    "ws_phase_css": phase_css,
    "tally": tally,
    "workspaces_url": workspaces_url,
    "existing_policies": list(ExistingResourcePolicy),
}


def _require(who: Visitor, permission: Permission, what: str) -> None:
    if not who.can(permission):
        who_may = "admins" if permission is Permission.DELETE_BACKUPS else "editors and admins"
        raise errors.Forbidden(
            f"Your role '{who.user.role}' can look at workspaces but not {what}: only {who_may} may. Ask one of them."
        )


def _field_of(exc: errors.StowageError) -> str:
    raw = getattr(exc, "field", None) or (exc.details.get("field") if isinstance(exc.details, dict) else None)
    return FORM_FIELDS.get(str(raw or ""), "form")


def _notice(request: Request) -> dict[str, Any]:
    key = request.query_params.get("notice", "")
    return {"notice": NOTICES[key]} if key in NOTICES else {}


# -- the list and the create form ---------------------------------------------------------------------------
async def _list_page(
    request: Request,
    who: Visitor,
    project: str,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    problems: dict[str, str] | None = None,
) -> Response:
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    views = await run_in_threadpool(runtime.workspaces.list_all, who.principal, project)
    clusters = await run_in_threadpool(runtime.clusters.list, who.principal, project)
    return render(
        request,
        "workspaces.html",
        status=status,
        who=who,
        **frame,
        **_notice(request),
        **WS_HELPERS,
        workspaces=views,
        clusters=clusters,
        values=values or {"name": "", "clusters": []},
        problems=problems or {},
        can_run=who.can(Permission.RUN_BACKUPS),
        open_form=bool(problems),
    )


@router.get("/projects/{project}/settings/workspaces")
async def workspaces_page(request: Request, project: str) -> Response:
    """The project's workspaces with their protection, and (for editors) the form to create one."""
    who = await visitor(request)
    return await _list_page(request, who, project)


@router.post("/projects/{project}/settings/workspaces")
async def create_workspace(request: Request, project: str) -> Response:
    """Create a workspace with the clusters ticked."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "create them")
    name = text(form, "name")[:200].strip()
    picked = [str(v)[:64] for v in form.getlist("clusters") if isinstance(v, str)][:500]
    values = {"name": name, "clusters": picked}
    problem = workspace_name_problem(name)
    if problem:
        return await _list_page(request, who, project, status=422, values=values, problems={"name": problem})
    try:
        view = await run_in_threadpool(
            lambda: runtime_of(request).workspaces.create(who.principal, project, name=name, cluster_refs=picked)
        )
    except errors.Conflict as exc:
        return await _list_page(request, who, project, status=409, values=values, problems={"name": exc.message})
    except (errors.InvalidInput, errors.NotFound) as exc:
        field = _field_of(exc) if isinstance(exc, errors.InvalidInput) else "clusters"
        return await _list_page(request, who, project, status=422, values=values, problems={field: exc.message})
    return redirect(workspaces_url(project, view.name, notice="workspace-created"))


# -- one workspace ------------------------------------------------------------------------------------------
async def _schedule_of(request: Request, who: Visitor, project: str, ref: str) -> BackupSchedule | None:
    try:
        return await run_in_threadpool(runtime_of(request).workspaces.get_schedule, who.principal, project, ref)
    except errors.NotFound:
        return None


def _schedule_defaults(schedule: BackupSchedule | None) -> dict[str, str]:
    if schedule is None:
        return {
            "prefix": DEFAULT_PREFIX,
            "preset": PRESETS[0].key,
            "cron": "",
            "paused": "",
            "location": "",
            **_request_values(BackupRequest()),
        }
    return {
        "prefix": schedule.backup_prefix,
        "preset": preset_for(schedule.schedule),
        "cron": schedule.schedule,
        "paused": "on" if schedule.paused else "",
        "location": schedule.location_id or "",
        **_request_values(BackupRequest.from_json(schedule.request)),
    }


def _backup_defaults(locations: list[Any]) -> dict[str, str]:
    default = next((loc for loc in locations if loc.spec.is_default), None)
    return {"name": _now_name(), "location": default.id if default else "", **_request_values(BackupRequest())}


async def _workspace_page(
    request: Request,
    who: Visitor,
    project: str,
    ref: str,
    *,
    status: int = 200,
    dialog: str = "",
    backup_values: dict[str, Any] | None = None,
    backup_problems: dict[str, str] | None = None,
    schedule_values: dict[str, str] | None = None,
    schedule_problems: dict[str, str] | None = None,
    add_problem: str = "",
) -> Response:
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    view: WorkspaceView = await run_in_threadpool(runtime.workspaces.get, who.principal, project, ref)
    backups = await run_in_threadpool(runtime.workspaces.list_backups, who.principal, project, view.id)
    restores = await run_in_threadpool(runtime.workspaces.list_restores, who.principal, project, view.id)
    clusters = await run_in_threadpool(runtime.clusters.list, who.principal, project)
    members = {c.id for c in view.clusters}
    locations = await project_locations(request, who, project)
    schedule = await _schedule_of(request, who, project, view.id)
    label = next((p.label for p in PRESETS if schedule and p.key == preset_for(schedule.schedule)), "")
    return render(
        request,
        "workspace.html",
        status=status,
        who=who,
        **frame,
        **_notice(request),
        **WS_HELPERS,
        workspace=view,
        backups=backups,
        restores=restores,
        others=[c for c in clusters if c.id not in members],
        locations=locations,
        default_location=next((loc for loc in locations if loc.spec.is_default), None),
        schedule=schedule,
        schedule_label=label,
        can_run=who.can(Permission.RUN_BACKUPS),
        can_delete=who.can(Permission.DELETE_BACKUPS),
        dialog=dialog,
        create={"clusters": [c.id for c in view.clusters], **(backup_values or _backup_defaults(locations))},
        create_problems=backup_problems or {},
        sched=schedule_values or _schedule_defaults(schedule),
        sched_problems=schedule_problems or {},
        add_problem=add_problem,
        active_backups=any(active(b) for b in backups),
        name_max=WORKSPACE_BACKUP_NAME_MAX,
    )


@router.get("/projects/{project}/settings/workspaces/{ref}")
async def workspace_page(request: Request, project: str, ref: str) -> Response:
    """A workspace: its clusters' connection and protection, its backups and restores, and the dialogs."""
    who = await visitor(request)
    dialog = request.query_params.get("dialog", "")
    if dialog not in DIALOGS or not who.can(Permission.RUN_BACKUPS):
        dialog = ""
    return await _workspace_page(request, who, project, ref, dialog=dialog)


@router.post("/projects/{project}/settings/workspaces/{ref}/clusters")
async def add_cluster(request: Request, project: str, ref: str) -> Response:
    """Add a cluster to the workspace."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "change their clusters")
    cluster = text(form, "cluster")[:200].strip()
    if not cluster:
        return await _workspace_page(request, who, project, ref, status=422, add_problem="Choose a cluster to add.")
    try:
        view = await run_in_threadpool(
            lambda: runtime_of(request).workspaces.set_clusters(who.principal, project, ref, add=[cluster])
        )
    except errors.NotFound as exc:
        if "orkspace" in exc.message:
            raise
        return await _workspace_page(request, who, project, ref, status=422, add_problem=exc.message)
    return redirect(workspaces_url(project, view.name, notice="clusters-changed"))


@router.post("/projects/{project}/settings/workspaces/{ref}/clusters/{cluster_id}/remove")
async def remove_cluster(request: Request, project: str, ref: str, cluster_id: str) -> Response:
    """Remove a cluster from the workspace; its backups stay."""
    who = await visitor(request)
    await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "change their clusters")
    view = await run_in_threadpool(
        lambda: runtime_of(request).workspaces.set_clusters(who.principal, project, ref, remove=[cluster_id])
    )
    return redirect(workspaces_url(project, view.name, notice="clusters-changed"))


@router.post("/projects/{project}/settings/workspaces/{ref}/backups")
async def backup_now(request: Request, project: str, ref: str) -> Response:
    """Back up the ticked clusters now; the result page shows each cluster's part and the clusters skipped."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "back them up")
    values: dict[str, Any] = _values(form, BACKUP_FIELDS)
    picked = [str(v)[:64] for v in form.getlist("clusters") if isinstance(v, str)][:500]
    backup_request, problems = _request_of(values)
    name = values["name"].strip()
    name_problem = backup_name_problem(name)
    if not name_problem and len(name) > WORKSPACE_BACKUP_NAME_MAX:
        name_problem = (
            f"Use at most {WORKSPACE_BACKUP_NAME_MAX} characters: each cluster's backup is named <name>-<cluster>."
        )
    if name_problem:
        problems["name"] = name_problem
    if not picked:
        problems["clusters"] = "Choose at least one cluster to back up."
    if not problems:
        try:
            view = await run_in_threadpool(
                lambda: runtime_of(request).workspaces.backup(
                    who.principal,
                    project,
                    ref,
                    name=name,
                    request=backup_request,
                    location_id=values["location"].strip() or None,
                    cluster_refs=picked,
                    include_all_clusters=False,
                )
            )
        except (errors.InvalidInput, errors.Conflict) as exc:
            field = _field_of(exc)
            problems["name" if field == "form" and "named" in exc.message else field] = exc.message
        else:
            return redirect(workspaces_url(project, view.workspace, "backups", view.name, notice="backup-created"))
    return await _workspace_page(
        request,
        who,
        project,
        ref,
        status=409 if "already" in problems.get("name", "") else 422,
        dialog="backup",
        backup_values={**values, "clusters": picked},
        backup_problems=problems,
    )


@router.post("/projects/{project}/settings/workspaces/{ref}/backup-schedule")
async def save_schedule(request: Request, project: str, ref: str) -> Response:
    """Create or replace the workspace's schedule; the preset "Never" removes it."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "schedule backups")
    runtime = runtime_of(request)
    values = _values(form, SCHEDULE_FIELDS)
    preset = next((p for p in PRESETS if p.key == values["preset"]), None)
    if preset is not None and preset.key == "never":
        view = await run_in_threadpool(runtime.workspaces.get, who.principal, project, ref)
        if await _schedule_of(request, who, project, view.id) is None:
            return redirect(workspaces_url(project, view.name, notice="schedule-none"))
        await run_in_threadpool(runtime.workspaces.delete_schedule, who.principal, project, view.id)
        return redirect(workspaces_url(project, view.name, notice="schedule-removed"))
    backup_request, problems = _request_of(values)
    cron = " ".join(values["cron"].split()) if preset is None or preset.cron is None else preset.cron
    if preset is None:
        problems["preset"] = "Choose one of the schedules (or Never to remove it)."
    else:
        cron_problem = schedule_problem(cron)
        if cron_problem:
            problems["cron"] = cron_problem
    if not problems:
        try:
            await run_in_threadpool(
                lambda: runtime.workspaces.set_schedule(
                    who.principal,
                    project,
                    ref,
                    backup_prefix=values["prefix"],
                    schedule=cron,
                    paused=values["paused"].lower() in _CHECKED,
                    request=backup_request,
                    location_id=values["location"].strip() or None,
                )
            )
        except (errors.InvalidInput, errors.Conflict) as exc:
            problems[_field_of(exc)] = exc.message
        else:
            view = await run_in_threadpool(runtime.workspaces.get, who.principal, project, ref)
            return redirect(workspaces_url(project, view.name, notice="schedule-saved"))
    return await _workspace_page(
        request, who, project, ref, status=422, dialog="schedule", schedule_values=values, schedule_problems=problems
    )


@router.get("/projects/{project}/settings/workspaces/{ref}/delete")
async def confirm_delete(request: Request, project: str, ref: str) -> Response:
    """Ask before deleting a workspace (admins)."""
    who = await visitor(request)
    _require(who, Permission.DELETE_BACKUPS, "delete them")
    frame = await project_frame(request, who, project)
    runtime = runtime_of(request)
    view = await run_in_threadpool(runtime.workspaces.get, who.principal, project, ref)
    backups = await run_in_threadpool(runtime.workspaces.list_backups, who.principal, project, view.id)
    return render(
        request, "workspace_delete.html", who=who, **frame, **WS_HELPERS, workspace=view, backup=None, backups=backups
    )


@router.post("/projects/{project}/settings/workspaces/{ref}/delete")
async def delete_workspace(request: Request, project: str, ref: str) -> Response:
    """Delete a workspace and all its backups (admins); its clusters stay."""
    who = await visitor(request)
    await read_form(request)
    _require(who, Permission.DELETE_BACKUPS, "delete them")
    await run_in_threadpool(runtime_of(request).workspaces.delete, who.principal, project, ref)
    return redirect(workspaces_url(project, notice="workspace-deleted"))


# -- one workspace backup -----------------------------------------------------------------------------------
def _restore_defaults() -> dict[str, str]:
    return {
        "namespaces": "",
        "excluded_namespaces": "",
        "namespace_mapping": "",
        "cluster_resources": "Auto",
        "restore_pvs": "on",
        "preserve_node_ports": "",
        "existing": ExistingResourcePolicy.NONE.value,
        "label_selector": "",
        "dry_run": "",
    }


def _restore_of(values: Mapping[str, str]) -> tuple[RestoreRequest, dict[str, str]]:
    """The restore request of the form and every field's problem, by the same rules as the service."""
    problems: dict[str, str] = {}
    mapping: dict[str, str] = {}
    for line in re.split(r"[,\n]", values.get("namespace_mapping", "")):
        if not line.strip():
            continue
        old, sep, new = line.partition("=")
        if not sep or not old.strip() or not new.strip():
            problems["namespace_mapping"] = f"Write each mapping as old=new, one per line; {line.strip()!r} is not."
            continue
        mapping[old.strip()] = new.strip()
    try:
        mode = ClusterResourceMode(values.get("cluster_resources") or "Auto")
    except ValueError:
        problems["cluster_resources"] = "Choose Always, Auto or Never for cluster resources."
        mode = ClusterResourceMode.AUTO
    try:
        policy = ExistingResourcePolicy(values.get("existing") or "none")
    except ValueError:
        problems["existing"] = "Choose to leave existing objects as they are, or to update them."
        policy = ExistingResourcePolicy.NONE
    request = RestoreRequest(
        include_namespaces=clean_list(re.split(r"[,\n]", values.get("namespaces", ""))),
        excluded_namespaces=clean_list(re.split(r"[,\n]", values.get("excluded_namespaces", ""))),
        namespace_mapping=mapping,
        cluster_resource_mode=mode,
        restore_pvs=values.get("restore_pvs", "").lower() in _CHECKED,
        preserve_node_ports=values.get("preserve_node_ports", "").lower() in _CHECKED,
        existing_resource_policy=policy,
        label_selector=values.get("label_selector", "").strip() or None,
        dry_run=values.get("dry_run", "").lower() in _CHECKED,
    )
    for problem in restore_problems(request):
        problems.setdefault(FORM_FIELDS.get(problem.field, "form"), problem.message)
    return request, problems


async def _backup_page(
    request: Request,
    who: Visitor,
    project: str,
    ref: str,
    name: str,
    *,
    status: int = 200,
    dialog: str = "",
    restore_values: dict[str, str] | None = None,
    restore_problems_: dict[str, str] | None = None,
) -> Response:
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    workspace = await run_in_threadpool(runtime.workspaces.get, who.principal, project, ref)
    view = await run_in_threadpool(runtime.workspaces.get_backup, who.principal, project, workspace.id, name)
    restores = [
        r
        for r in await run_in_threadpool(runtime.workspaces.list_restores, who.principal, project, workspace.id)
        if r.backup_name == view.name
    ]
    return render(
        request,
        "workspace_backup.html",
        status=status,
        who=who,
        **frame,
        **_notice(request),
        **WS_HELPERS,
        workspace=workspace,
        backup=view,
        restores=restores,
        active=active(view) or any(p.phase in ("New", "InProgress") for r in restores for p in r.parts),
        can_run=who.can(Permission.RUN_BACKUPS),
        can_delete=who.can(Permission.DELETE_BACKUPS),
        can_restore=any(p.phase in ("Completed", "PartiallyFailed") for p in view.parts),
        dialog=dialog,
        restore=restore_values or _restore_defaults(),
        restore_problems=restore_problems_ or {},
        backup_url=lambda project_name, cluster_id, part: clusters_url(project_name, cluster_id, "backups", part),
    )


@router.get("/projects/{project}/settings/workspaces/{ref}/backups/{name}")
async def workspace_backup_page(request: Request, project: str, ref: str, name: str) -> Response:
    """A workspace backup: the roll-up phase, each cluster's backup, the clusters skipped and why; Restore."""
    who = await visitor(request)
    dialog = "restore" if request.query_params.get("dialog") == "restore" and who.can(Permission.RUN_BACKUPS) else ""
    return await _backup_page(request, who, project, ref, name, dialog=dialog)


@router.post("/projects/{project}/settings/workspaces/{ref}/backups/{name}/restores")
async def restore_backup(request: Request, project: str, ref: str, name: str) -> Response:
    """Restore a workspace backup on every cluster still in the workspace (each into itself)."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "restore them")
    values = {key: text(form, key)[:limit] for key, limit in RESTORE_LENGTHS.items()}
    restore_request, problems = _restore_of(values)
    if not problems:
        try:
            await run_in_threadpool(
                lambda: runtime_of(request).workspaces.restore(
                    who.principal, project, ref, name, request=restore_request
                )
            )
        except (errors.InvalidInput, errors.Conflict) as exc:
            problems[_field_of(exc)] = exc.message
        else:
            view = await run_in_threadpool(runtime_of(request).workspaces.get, who.principal, project, ref)
            return redirect(workspaces_url(project, view.name, "backups", name, notice="restore-created"))
    return await _backup_page(
        request,
        who,
        project,
        ref,
        name,
        status=422,
        dialog="restore",
        restore_values=values,
        restore_problems_=problems,
    )


@router.get("/projects/{project}/settings/workspaces/{ref}/backups/{name}/delete")
async def confirm_delete_backup(request: Request, project: str, ref: str, name: str) -> Response:
    """Ask before deleting a workspace backup (admins)."""
    who = await visitor(request)
    _require(who, Permission.DELETE_BACKUPS, "delete their backups")
    frame = await project_frame(request, who, project)
    runtime = runtime_of(request)
    workspace = await run_in_threadpool(runtime.workspaces.get, who.principal, project, ref)
    view = await run_in_threadpool(runtime.workspaces.get_backup, who.principal, project, workspace.id, name)
    return render(
        request, "workspace_delete.html", who=who, **frame, **WS_HELPERS, workspace=workspace, backup=view, backups=[]
    )


@router.post("/projects/{project}/settings/workspaces/{ref}/backups/{name}/delete")
async def delete_backup(request: Request, project: str, ref: str, name: str) -> Response:
    """Delete every cluster's backup of a workspace backup (admins)."""
    who = await visitor(request)
    await read_form(request)
    _require(who, Permission.DELETE_BACKUPS, "delete their backups")
    view = await run_in_threadpool(runtime_of(request).workspaces.delete_backup, who.principal, project, ref, name)
    return redirect(workspaces_url(project, view.workspace, notice="backup-deleting"))
