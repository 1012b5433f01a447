"""A cluster's Backups tab: the list, the Create Backup and Schedule Backups dialogs, a backup's page (live
progress and logs, contents, warnings and errors) and deleting a backup with confirmation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stowage import errors
from stowage.domain.access import Permission
from stowage.domain.backups import (
    BACKUP_NAME_MAX_LENGTH,
    DEFAULT_DURATION_HOURS,
    BackupPhase,
    BackupRequest,
    ClusterResourceMode,
    backup_name_problem,
    clean_list,
    request_problems,
    suggest_name,
)
from stowage.domain.schedules import PRESETS, backup_prefix_problem, preset_for, schedule_problem
from stowage.services.backups import BackupView, Contents, ScheduleView
from stowage.services.clusters import ClusterView
from stowage.services.locations import SavedLocation
from stowage.web.clusters import STATUS_LABELS, status_key
from stowage.web.common import (
    Visitor,
    WebRoute,
    clusters_url,
    page_number,
    project_frame,
    project_locations,
    read_form,
    redirect,
    render,
    runtime_of,
    text,
    visitor,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
LOG_PAGE = 1000
# How many items of one kind the contents list shows before it says how many more there are.
CONTENTS_PER_KIND = 500
DEFAULT_PREFIX = "scheduled"
# Palette's expiry choices (hours), then a custom number of hours.
EXPIRY_CHOICES: tuple[tuple[str, str], ...] = (("24", "1 day"), ("168", "7 days"), ("720", "30 days"))
CLUSTER_RESOURCE_HELP = {
    ClusterResourceMode.ALWAYS: "Cluster-scoped resources (CRDs, ClusterRoles, StorageClasses, PersistentVolumes…) are "
    "always backed up, even when only some namespaces are.",
    ClusterResourceMode.AUTO: "Backing up all namespaces includes every cluster-scoped resource; with some namespaces "
    "chosen, only the cluster-scoped resources they use (the PersistentVolumes of their claims).",
    ClusterResourceMode.NEVER: "No cluster-scoped resources, only namespaced ones.",
}
PHASE_LABELS = {
    BackupPhase.NEW: "New",
    BackupPhase.IN_PROGRESS: "In progress",
    BackupPhase.COMPLETED: "Completed",
    BackupPhase.PARTIALLY_FAILED: "Partially failed",
    BackupPhase.FAILED: "Failed",
    BackupPhase.DELETING: "Deleting",
}
# Bounds that keep a silly paste from becoming a huge page; the domain rules say what is actually allowed.
MAX_LENGTHS = {
    "name": 200,
    "location": 200,
    "expiry": 16,
    "custom_hours": 16,
    "include_all_disks": 8,
    "cluster_resources": 16,
    "namespaces": 20_000,
    "excluded_namespaces": 20_000,
    "included_resources": 20_000,
    "excluded_resources": 20_000,
    "label_selector": 4096,
    "prefix": 200,
    "preset": 16,
    "cron": 200,
    "paused": 8,
}
CREATE_FIELDS = (
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
SCHEDULE_FIELDS = ("prefix", "preset", "cron", "paused", *CREATE_FIELDS[1:])
# The service names fields as the API does; the form's fields are snake_case.
FORM_FIELDS = {
    "backupName": "name",
    "backupPrefix": "prefix",
    "schedule": "cron",
    "backupLocationId": "location",
    "durationInHours": "custom_hours",
    "includeClusterResourceMode": "cluster_resources",
    "namespaces": "namespaces",
    "excludedNamespaces": "excluded_namespaces",
    "includedResources": "included_resources",
    "excludedResources": "excluded_resources",
    "labelSelector": "label_selector",
}
NOTICES = {
    "backup-created": "Backup requested: the cluster's agent starts it with its next heartbeat.",
    "backup-deleting": "Deleting the backup: its objects and EBS snapshots are being removed.",
    "schedule-saved": "Backup schedule saved.",
    "schedule-removed": "Backup schedule removed. Its backups stay until they expire.",
    "schedule-none": "The cluster has no backup schedule: nothing to remove.",
    "schedule-paused": "Backup schedule paused: no scheduled backups run until you resume it.",
    "schedule-resumed": "Backup schedule resumed.",
}
DIALOGS = ("create", "schedule")


# -- presentation helpers -------------------------------------------------------------------------------
def human_size(size: int) -> str:
    """Bytes as people read them (binary units)."""
    value = float(max(size, 0))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def phase_key(phase: BackupPhase) -> str:
    """The CSS name of a phase's badge."""
    return phase.value.lower()


def percent(view: BackupView) -> int:
    """How far a backup got, 0 to 100 (100 once it completed, whatever the counts say)."""
    if view.phase is BackupPhase.COMPLETED:
        return 100
    if view.total_items <= 0:
        return 0
    return min(100, view.items_backed_up * 100 // view.total_items)


def duration_text(hours: int) -> str:
    """An expiry duration as people say it."""
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'' if days == 1 else 's'}"
    return f"{hours} hour{'' if hours == 1 else 's'}"


def listed(values: tuple[str, ...], empty: str = "—") -> str:
    """A filter list on one line."""
    return ", ".join(values) if values else empty


def namespaces_text(request: BackupRequest) -> str:
    """Which namespaces a backup covers, in a few words."""
    shown = "All" if request.all_namespaces else ", ".join(request.namespaces)
    if request.excluded_namespaces:
        shown += f" (except {', '.join(request.excluded_namespaces)})"
    return shown


@dataclass(frozen=True, slots=True)
class Kind:
    """The items of one apiVersion/Kind in a backup."""

    api_version: str
    kind: str
    items: list[str]
    count: int


def group_resources(resources: Mapping[str, list[str]]) -> list[Kind]:
    """The resource list grouped by apiVersion and Kind, biggest first, then by name."""
    kinds: list[Kind] = []
    for key, items in resources.items():
        api_version, _, kind = key.rpartition("/")
        kinds.append(Kind(api_version or "v1", kind, sorted(items)[:CONTENTS_PER_KIND], len(items)))
    kinds.sort(key=lambda k: (k.api_version != "v1", k.api_version, k.kind))
    return kinds


HELPERS: dict[str, Any] = {
    "human_size": human_size,
    "phase_key": phase_key,
    "phase_labels": PHASE_LABELS,
    "percent": percent,
    "duration_text": duration_text,
    "listed": listed,
    "namespaces_text": namespaces_text,
    "expiry_choices": EXPIRY_CHOICES,
    "cluster_modes": list(ClusterResourceMode),
    "cluster_resource_help": CLUSTER_RESOURCE_HELP,
    "presets": PRESETS,
    "status_key": status_key,
    "status_labels": STATUS_LABELS,
}


# -- URLs -------------------------------------------------------------------------------------------------
def tab_url(project: str, cluster_id: str, **query: str) -> str:
    """The cluster's Backups tab."""
    url = clusters_url(project, cluster_id, "backups")
    kept = {k: v for k, v in query.items() if v}
    return url + (f"?{urlencode(kept)}" if kept else "")


def backup_url(project: str, cluster_id: str, name: str, *parts: str) -> str:
    """A backup's page (or a page under it)."""
    return clusters_url(project, cluster_id, "backups", name, *parts)


def live_url(project: str, cluster_id: str, name: str) -> str:
    """The JSON the backup page polls for its phase, progress and new log lines."""
    return clusters_url(project, cluster_id, "backups", name, "live").replace("/projects/", "/ui/projects/", 1)


# -- the forms ------------------------------------------------------------------------------------------------
def _require(who: Visitor, permission: Permission, what: str) -> None:
    if not who.can(permission):
        who_may = "admins" if permission is Permission.DELETE_BACKUPS else "editors and admins"
        raise errors.Forbidden(
            f"Your role '{who.user.role}' can look at backups but not {what}: only {who_may} may. Ask one of them."
        )


def _values(form: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """The form's fields, clipped to their bounds (what is typed is kept to show it again)."""
    return {name: text(form, name)[: MAX_LENGTHS[name]] for name in names}


def _entries(value: str) -> tuple[str, ...]:
    """Names separated by commas or new lines."""
    return clean_list(re.split(r"[,\n]", value))


def _request_of(values: Mapping[str, str]) -> tuple[BackupRequest, dict[str, str]]:
    """The backup request of the form and every field's problem, by the same rules as the service."""
    problems: dict[str, str] = {}
    hours = DEFAULT_DURATION_HOURS
    choice = values.get("expiry", "") or str(DEFAULT_DURATION_HOURS)
    if choice == "custom":
        raw = values.get("custom_hours", "").strip()
        if raw.isdigit() and len(raw) <= 9:
            hours = int(raw)
        else:
            problems["custom_hours"] = (
                "Enter how many hours to keep the backup, as a whole number like 48 (between 1 and 87600)."
            )
    elif choice in {c for c, _ in EXPIRY_CHOICES}:
        hours = int(choice)
    else:
        problems["custom_hours"] = "Choose 1 day, 7 days, 30 days, or a custom number of hours."
    try:
        mode = ClusterResourceMode(values.get("cluster_resources") or ClusterResourceMode.AUTO.value)
    except ValueError:
        problems["cluster_resources"] = "Choose Always, Auto or Never for cluster resources."
        mode = ClusterResourceMode.AUTO
    request = BackupRequest(
        namespaces=_entries(values.get("namespaces", "")),
        excluded_namespaces=_entries(values.get("excluded_namespaces", "")),
        included_resources=_entries(values.get("included_resources", "")),
        excluded_resources=_entries(values.get("excluded_resources", "")),
        label_selector=values.get("label_selector", "").strip() or None,
        cluster_resource_mode=mode,
        include_all_disks=values.get("include_all_disks", "").lower() in {"on", "true", "1", "yes"},
        duration_hours=hours,
    )
    for problem in request_problems(request):
        field = FORM_FIELDS.get(problem.field, "form")
        problems.setdefault(field, problem.message)
    return request, problems


def _request_values(request: BackupRequest) -> dict[str, str]:
    """A saved request as form fields."""
    hours = str(request.duration_hours)
    preset = hours in {c for c, _ in EXPIRY_CHOICES}
    return {
        "expiry": hours if preset else "custom",
        "custom_hours": "" if preset else hours,
        "include_all_disks": "on" if request.include_all_disks else "",
        "cluster_resources": request.cluster_resource_mode.value,
        "namespaces": "\n".join(request.namespaces),
        "excluded_namespaces": "\n".join(request.excluded_namespaces),
        "included_resources": "\n".join(request.included_resources),
        "excluded_resources": "\n".join(request.excluded_resources),
        "label_selector": request.label_selector or "",
    }


def suggested_name(cluster_name: str, now: datetime | None = None) -> str:
    """A fresh backup name to start from: ``<cluster>-<UTC date>-<time>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    name = suggest_name(f"{cluster_name}-{stamp}")
    if len(f"{cluster_name}-{stamp}") > BACKUP_NAME_MAX_LENGTH or backup_name_problem(name):
        return f"backup-{stamp}"
    return name


def _create_defaults(cluster: ClusterView, locations: list[SavedLocation]) -> dict[str, str]:
    default = next((loc for loc in locations if loc.spec.is_default), None)
    return {
        "name": suggested_name(cluster.name),
        "location": default.id if default else "",
        **_request_values(BackupRequest()),
    }


def _schedule_defaults(schedule: ScheduleView | None) -> dict[str, str]:
    if schedule is None:
        return {
            "prefix": DEFAULT_PREFIX,
            "preset": PRESETS[0].key,
            "cron": "",
            "paused": "",
            "location": "",
            **_request_values(BackupRequest()),
        }
    preset = preset_for(schedule.schedule)
    return {
        "prefix": schedule.backup_prefix,
        "preset": preset,
        "cron": schedule.schedule,
        "paused": "on" if schedule.paused else "",
        "location": schedule.location_id or "",
        **_request_values(schedule.request),
    }


def _field_of(exc: errors.StowageError) -> str:
    raw = getattr(exc, "field", None) or (exc.details.get("field") if isinstance(exc.details, dict) else None)
    return FORM_FIELDS.get(str(raw or ""), "form")


# -- the Backups tab --------------------------------------------------------------------------------------
async def _schedule_of(request: Request, who: Visitor, project: str, cluster_id: str) -> ScheduleView | None:
    try:
        return await run_in_threadpool(runtime_of(request).backups.get_schedule, who.principal, project, cluster_id)
    except errors.NotFound:
        return None


async def _tab(
    request: Request,
    who: Visitor,
    project: str,
    cluster_id: str,
    *,
    status: int = 200,
    dialog: str = "",
    create: dict[str, str] | None = None,
    create_problems: dict[str, str] | None = None,
    schedule_values: dict[str, str] | None = None,
    schedule_problems: dict[str, str] | None = None,
    fragment: bool = False,
) -> Response:
    runtime = runtime_of(request)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    offset = page_number(request)
    items, total = await run_in_threadpool(
        lambda: runtime.backups.list_page(who.principal, project, cluster.id, limit=PAGE_SIZE, offset=offset)
    )
    page: dict[str, Any] = {
        "backups": items,
        "total": total,
        "offset": offset,
        "active": any(not v.phase.finished for v in items),
        "prev_url": tab_url(project, cluster.id, offset=str(max(0, offset - PAGE_SIZE))) if offset > 0 else "",
        "next_url": tab_url(project, cluster.id, offset=str(offset + PAGE_SIZE)) if offset + PAGE_SIZE < total else "",
        "fragment_url": tab_url(project, cluster.id, fragment="1", offset=str(offset) if offset else ""),
    }
    if fragment:
        return render(
            request,
            "_backups_table.html",
            who=who,
            project=await _project(request, who, project),
            cluster=cluster,
            backup_url=backup_url,
            can_run=who.can(Permission.RUN_BACKUPS),
            **page,
            **HELPERS,
        )
    frame = await project_frame(request, who, project)
    locations = await project_locations(request, who, project)
    schedule = await _schedule_of(request, who, project, cluster.id)
    notice_key = request.query_params.get("notice", "")
    extra: dict[str, Any] = {"notice": NOTICES[notice_key]} if notice_key in NOTICES else {}
    return render(
        request,
        "backups.html",
        status=status,
        who=who,
        **frame,
        **extra,
        **page,
        **HELPERS,
        cluster=cluster,
        backup_url=backup_url,
        tab_url=tab_url,
        locations=locations,
        default_location=next((loc for loc in locations if loc.spec.is_default), None),
        schedule=schedule,
        schedule_label=_schedule_label(schedule),
        can_run=who.can(Permission.RUN_BACKUPS),
        can_delete=who.can(Permission.DELETE_BACKUPS),
        dialog=dialog,
        create=create or _create_defaults(cluster, locations),
        create_problems=create_problems or {},
        sched=schedule_values or _schedule_defaults(schedule),
        sched_problems=schedule_problems or {},
    )


async def _project(request: Request, who: Visitor, project: str) -> Any:
    return await run_in_threadpool(runtime_of(request).tenancy.project, who.principal, project)


def _schedule_label(schedule: ScheduleView | None) -> str:
    if schedule is None:
        return ""
    key = preset_for(schedule.schedule)
    preset = next(p for p in PRESETS if p.key == key)
    return preset.label


@router.get("/projects/{project}/settings/clusters/{cluster_id}/backups")
async def backups_tab(request: Request, project: str, cluster_id: str) -> Response:
    """The cluster's backups, its schedule, and (for editors) the Create and Schedule dialogs."""
    who = await visitor(request)
    if request.query_params.get("fragment") == "1":
        return await _tab(request, who, project, cluster_id, fragment=True)
    dialog = request.query_params.get("dialog", "")
    if dialog in DIALOGS and not who.can(Permission.RUN_BACKUPS):
        dialog = ""
    return await _tab(request, who, project, cluster_id, dialog=dialog if dialog in DIALOGS else "")


@router.post("/projects/{project}/settings/clusters/{cluster_id}/backups")
async def create_backup(request: Request, project: str, cluster_id: str) -> Response:
    """Request a backup now; problems are shown next to their fields, with everything typed kept."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "create backups")
    values = _values(form, CREATE_FIELDS)
    backup_request, problems = _request_of(values)
    name = values["name"].strip()
    name_problem = backup_name_problem(name)
    if name_problem:
        problems["name"] = name_problem
    if not problems:
        try:
            view = await run_in_threadpool(
                lambda: runtime_of(request).backups.create(
                    who.principal,
                    project,
                    cluster_id,
                    name=name,
                    request=backup_request,
                    location_id=values["location"].strip() or None,
                )
            )
        except errors.InvalidInput as exc:
            problems[_field_of(exc)] = exc.message
        except errors.Conflict as exc:
            problems[_field_of(exc) if _field_of(exc) != "form" else "name"] = exc.message
        else:
            return redirect(backup_url(project, view.cluster_id, view.name) + "?notice=backup-created")
    return await _tab(
        request,
        who,
        project,
        cluster_id,
        status=409 if "name" in problems and not name_problem and len(problems) == 1 else 422,
        dialog="create",
        create=values,
        create_problems=problems,
    )


@router.post("/projects/{project}/settings/clusters/{cluster_id}/backup-schedule")
async def save_schedule(request: Request, project: str, cluster_id: str) -> Response:
    """Create or replace the cluster's schedule; the preset "Never" removes it."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "schedule backups")
    runtime = runtime_of(request)
    values = _values(form, SCHEDULE_FIELDS)
    preset = next((p for p in PRESETS if p.key == values["preset"]), None)
    if preset is not None and preset.key == "never":
        try:
            await run_in_threadpool(runtime.backups.delete_schedule, who.principal, project, cluster_id)
        except errors.NotFound:
            return redirect(tab_url(project, cluster_id, notice="schedule-none"))
        return redirect(tab_url(project, cluster_id, notice="schedule-removed"))
    backup_request, problems = _request_of(values)
    cron = " ".join(values["cron"].split()) if preset is None or preset.cron is None else preset.cron
    if preset is None:
        problems["preset"] = "Choose one of the schedules (or Never to remove it)."
    else:
        cron_problem = schedule_problem(cron)
        if cron_problem:
            problems["cron"] = cron_problem
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    prefix = values["prefix"].strip()
    prefix_problem = backup_prefix_problem(prefix, cluster.name)
    if prefix_problem:
        problems["prefix"] = prefix_problem
    if not problems:
        try:
            await run_in_threadpool(
                lambda: runtime.backups.set_schedule(
                    who.principal,
                    project,
                    cluster.id,
                    backup_prefix=prefix,
                    schedule=cron,
                    paused=values["paused"].lower() in {"on", "true", "1", "yes"},
                    request=backup_request,
                    location_id=values["location"].strip() or None,
                )
            )
        except (errors.InvalidInput, errors.Conflict) as exc:
            problems[_field_of(exc)] = exc.message
        else:
            return redirect(tab_url(project, cluster.id, notice="schedule-saved"))
    return await _tab(
        request,
        who,
        project,
        cluster.id,
        status=422,
        dialog="schedule",
        schedule_values=values,
        schedule_problems=problems,
    )


@router.post("/projects/{project}/settings/clusters/{cluster_id}/backup-schedule/pause")
async def pause_schedule(request: Request, project: str, cluster_id: str) -> Response:
    """Pause or resume the cluster's schedule."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "pause or resume schedules")
    paused = text(form, "paused").lower() in {"on", "true", "1", "yes"}
    view = await run_in_threadpool(
        lambda: runtime_of(request).backups.pause_schedule(who.principal, project, cluster_id, paused=paused)
    )
    return redirect(tab_url(project, view.cluster_id, notice="schedule-paused" if paused else "schedule-resumed"))


# -- one backup -------------------------------------------------------------------------------------------
def _live_json(view: BackupView, lines: list[dict[str, Any]], next_after: int, logs_finished: bool) -> dict[str, Any]:
    return {
        "phase": view.phase.value,
        "phaseLabel": PHASE_LABELS[view.phase],
        "phaseKey": phase_key(view.phase),
        "finished": view.phase.finished,
        "failureReason": view.failure_reason,
        "totalItems": view.total_items,
        "itemsBackedUp": view.items_backed_up,
        "percent": percent(view),
        "size": human_size(view.size_bytes),
        "lines": lines,
        "nextAfter": next_after,
        "logsFinished": logs_finished,
    }


@router.get("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}")
async def backup_page(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """One backup: phase, live progress and logs, failure reason, the request's fields, contents."""
    who = await visitor(request)
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    view = await run_in_threadpool(runtime.backups.get, who.principal, project, cluster.id, name)
    logs = await run_in_threadpool(
        lambda: runtime.backups.logs(who.principal, project, cluster.id, view.name, after=0, limit=LOG_PAGE)
    )
    notice_key = request.query_params.get("notice", "")
    extra: dict[str, Any] = {"notice": NOTICES[notice_key]} if notice_key in NOTICES else {}
    return render(
        request,
        "backup.html",
        who=who,
        **frame,
        **extra,
        **HELPERS,
        cluster=cluster,
        backup=view,
        logs=logs,
        tab_url=tab_url,
        backup_url=backup_url,
        live=live_url(project, cluster.id, view.name),
        can_delete=who.can(Permission.DELETE_BACKUPS),
    )


@router.get("/ui/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/live")
async def backup_live(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """JSON for the backup page's live view: phase, progress, failure reason and log lines after ``after``."""
    who = await visitor(request)
    runtime = runtime_of(request)
    after = page_number(request, "after")
    view = await run_in_threadpool(runtime.backups.get, who.principal, project, cluster_id, name)
    logs = await run_in_threadpool(
        lambda: runtime.backups.logs(who.principal, project, cluster_id, view.name, after=after, limit=LOG_PAGE)
    )
    lines = [
        {"id": line.id, "at": line.at.strftime("%H:%M:%S"), "level": line.level, "message": line.message}
        for line in logs.lines
    ]
    return JSONResponse(_live_json(view, lines, logs.next_after, logs.finished))


async def _contents(
    request: Request, who: Visitor, project: str, cluster_id: str, name: str
) -> tuple[Contents | None, str]:
    """The backup's contents, or why they cannot be listed (not completed yet, bucket unreachable, ...)."""
    try:
        found = await run_in_threadpool(runtime_of(request).backups.contents, who.principal, project, cluster_id, name)
    except (errors.Conflict, errors.CloudError, errors.StsUnavailable) as exc:
        return None, exc.message
    except errors.NotFound as exc:
        # The backup itself is still there (it was just read): the resource list or the location is missing.
        return None, exc.message
    return found, ""


@router.get("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/contents")
async def contents_page(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """What a completed backup holds, grouped by apiVersion/Kind, and its per-item warnings and errors."""
    who = await visitor(request)
    runtime = runtime_of(request)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    view = await run_in_threadpool(runtime.backups.get, who.principal, project, cluster.id, name)
    found, reason = await _contents(request, who, project, cluster.id, view.name)
    context: dict[str, Any] = {
        "cluster": cluster,
        "backup": view,
        "contents": found,
        "reason": reason,
        "kinds": group_resources(found.resources) if found else [],
        "per_kind": CONTENTS_PER_KIND,
    }
    if request.query_params.get("fragment") == "1":
        return render(request, "_backups_contents.html", who=who, **context)
    frame = await project_frame(request, who, project)
    return render(
        request,
        "backup_contents.html",
        who=who,
        **frame,
        **context,
        **HELPERS,
        tab_url=tab_url,
        backup_url=backup_url,
    )


@router.get("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/delete")
async def confirm_delete(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """Ask before deleting a backup (admins)."""
    who = await visitor(request)
    _require(who, Permission.DELETE_BACKUPS, "delete them")
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    view = await run_in_threadpool(runtime.backups.get, who.principal, project, cluster.id, name)
    return render(
        request,
        "backup_delete.html",
        who=who,
        **frame,
        **HELPERS,
        cluster=cluster,
        backup=view,
        tab_url=tab_url,
        backup_url=backup_url,
    )


@router.post("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/delete")
async def delete_backup(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """Delete a backup: its objects and EBS snapshots, then its record (admins)."""
    who = await visitor(request)
    await read_form(request)
    _require(who, Permission.DELETE_BACKUPS, "delete them")
    view = await run_in_threadpool(runtime_of(request).backups.request_delete, who.principal, project, cluster_id, name)
    return redirect(tab_url(project, view.cluster_id, notice="backup-deleting"))


# -- sync from the bucket, and verification -----------------------------------------------------------------
@router.post("/projects/{project}/settings/clusters/{cluster_id}/backups/sync")
async def sync_backups(request: Request, project: str, cluster_id: str) -> Response:
    """Import the cluster's backups found in the project's buckets, and show what was imported and skipped."""
    who = await visitor(request)
    await read_form(request)
    _require(who, Permission.RUN_BACKUPS, "sync them from the bucket")
    runtime = runtime_of(request)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    result = await run_in_threadpool(runtime.backup_sync.sync_cluster, who.principal, project, cluster.id)
    frame = await project_frame(request, who, project)
    return render(
        request,
        "backups_sync.html",
        who=who,
        **frame,
        **HELPERS,
        cluster=cluster,
        result=result,
        tab_url=tab_url,
        backup_url=backup_url,
    )


@router.post("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/verify")
async def verify_backup(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """Re-read every object of the backup and show how it compares with its SHA-256 manifest."""
    who = await visitor(request)
    await read_form(request)
    runtime = runtime_of(request)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    view = await run_in_threadpool(runtime.backups.get, who.principal, project, cluster.id, name)
    found, reason = None, ""
    try:
        found = await run_in_threadpool(runtime.backup_sync.verify, who.principal, project, cluster.id, view.name)
    except (errors.Conflict, errors.CloudError, errors.StsUnavailable, errors.NotFound) as exc:
        # The backup was just read, so a NotFound here is its location: say why nothing could be checked.
        reason = exc.message
    frame = await project_frame(request, who, project)
    return render(
        request,
        "backup_verify.html",
        status=200 if found is not None else 409,
        who=who,
        **frame,
        **HELPERS,
        cluster=cluster,
        backup=view,
        report=found,
        reason=reason,
        tab_url=tab_url,
        backup_url=backup_url,
    )
