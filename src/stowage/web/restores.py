"""Restores in the web UI: Restore from a backup's page (the form, Preview, Confirm Restore), a cluster's Restores
tab, and a restore's page (live progress, summary, per-item results or the preview's plan, problems, logs)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stowage import errors
from stowage.domain.access import Permission
from stowage.domain.backups import BackupPhase, ClusterResourceMode, clean_list
from stowage.domain.restores import ExistingResourcePolicy, ItemAction, ItemResult, RestorePhase, RestoreRequest
from stowage.domain.restores import request_problems as restore_problems
from stowage.services.restores import RestoreView
from stowage.web.backups import backup_url, tab_url
from stowage.web.common import (
    Visitor,
    WebRoute,
    clusters_url,
    page_number,
    project_frame,
    read_form,
    redirect,
    render,
    runtime_of,
    text,
    visitor,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
ITEMS_PAGE = 100
# Items shown per action on the grouped view; "Show all" opens the action's own paged list.
ITEMS_PER_GROUP = 25
LOG_PAGE = 1000
MAPPING_ROWS = 3
_CHECKED = {"on", "true", "1", "yes"}
PHASE_LABELS = {
    RestorePhase.NEW: "New",
    RestorePhase.IN_PROGRESS: "In progress",
    RestorePhase.COMPLETED: "Completed",
    RestorePhase.PARTIALLY_FAILED: "Partially failed",
    RestorePhase.FAILED: "Failed",
}
RESULT_ACTIONS = (ItemAction.CREATED, ItemAction.UPDATED, ItemAction.SKIPPED, ItemAction.FAILED)
PLAN_ACTIONS = (ItemAction.CREATE, ItemAction.UPDATE, ItemAction.SKIP, ItemAction.CONFLICT)
ACTION_LABELS = {
    ItemAction.CREATED: "Created",
    ItemAction.UPDATED: "Updated",
    ItemAction.SKIPPED: "Skipped",
    ItemAction.FAILED: "Failed",
    ItemAction.CREATE: "Create",
    ItemAction.UPDATE: "Update",
    ItemAction.SKIP: "Skip",
    ItemAction.CONFLICT: "Conflict",
}
# The CSS tone of an action's badge.
ACTION_TONES = {
    ItemAction.CREATED: "completed",
    ItemAction.CREATE: "completed",
    ItemAction.UPDATED: "inprogress",
    ItemAction.UPDATE: "inprogress",
    ItemAction.SKIPPED: "new",
    ItemAction.SKIP: "new",
    ItemAction.FAILED: "failed",
    ItemAction.CONFLICT: "failed",
}
CLUSTER_RESOURCE_HELP = {
    ClusterResourceMode.ALWAYS: "Restore the backup's cluster-scoped resources (CRDs, StorageClasses, ClusterRoles…) "
    "even when only some namespaces are restored.",
    ClusterResourceMode.AUTO: "All of them when every namespace is restored; otherwise only those the restored "
    "namespaces need (the PersistentVolumes of their claims).",
    ClusterResourceMode.NEVER: "Only namespaced resources.",
}
MAX_LENGTHS = {
    "destination": 200,
    "namespaces": 20_000,
    "excluded_namespaces": 20_000,
    "cluster_resources": 16,
    "restore_pvs": 8,
    "preserve_node_ports": 8,
    "existing": 16,
    "label_selector": 4096,
    "action": 16,
}
MAX_MAPPINGS = 200
# The service names fields as the API does; the form's fields are snake_case.
FORM_FIELDS = {
    "destinationClusterId": "destination",
    "includeNamespaces": "namespaces",
    "excludedNamespaces": "excluded_namespaces",
    "namespaceMapping": "namespace_mapping",
    "includeClusterResourceMode": "cluster_resources",
    "existingResourcePolicy": "existing",
    "labelSelector": "label_selector",
}
NOTICES = {
    "preview-created": "Preview requested: the destination's agent plans the restore with its next heartbeat; nothing "
    "in the cluster changes.",
    "restore-created": "Restore requested: the destination's agent starts it with its next heartbeat.",
}


@dataclass(frozen=True, slots=True)
class FormValues:
    """The restore form as typed (kept to show it again) and its namespace mapping rows."""

    fields: dict[str, str]
    mapping: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ActionGroup:
    """The items of one action: how many, and the first of them."""

    action: ItemAction
    label: str
    tone: str
    count: int
    items: list[ItemResult]


# -- presentation helpers -------------------------------------------------------------------------------
def phase_key(phase: RestorePhase) -> str:
    """The CSS name of a phase's badge."""
    return phase.value.lower()


def percent(view: RestoreView) -> int:
    """How far a restore (or a preview's planning) got, 0 to 100 (100 once it completed)."""
    if view.phase is RestorePhase.COMPLETED:
        return 100
    if view.total_items <= 0:
        return 0
    return min(100, view.items_restored * 100 // view.total_items)


def progress_text(view: RestoreView) -> str:
    """The progress line under the bar."""
    if view.request.dry_run:
        # A preview reports the items planned so far while it runs, and 0 restored at the end.
        if view.phase.finished:
            return f"{view.total_items} items in the plan"
        return f"{view.items_restored} of {view.total_items} items planned ({percent(view)}%)"
    return f"{view.items_restored} of {view.total_items} items restored ({percent(view)}%)"


def tally(summary: Mapping[str, int]) -> str:
    """Counts per action in a fixed order, for tables."""
    order = [a.value for a in (*RESULT_ACTIONS, *PLAN_ACTIONS)]
    known = [a for a in order if summary.get(a)]
    rest = sorted(a for a in summary if a not in order and summary[a])
    return ", ".join(f"{summary[a]} {a}" for a in (*known, *rest)) or "—"


def listed(values: Sequence[str], empty: str = "—") -> str:
    """A list on one line."""
    return ", ".join(values) if values else empty


HELPERS: dict[str, Any] = {
    "phase_key": phase_key,
    "phase_labels": PHASE_LABELS,
    "percent": percent,
    "progress_text": progress_text,
    "tally": tally,
    "listed": listed,
    "action_labels": ACTION_LABELS,
    "action_tones": ACTION_TONES,
    "cluster_modes": list(ClusterResourceMode),
    "cluster_resource_help": CLUSTER_RESOURCE_HELP,
}


# -- URLs -------------------------------------------------------------------------------------------------
def restores_url(project: str, cluster_id: str, **query: str) -> str:
    """The cluster's Restores tab."""
    kept = {k: v for k, v in query.items() if v}
    return clusters_url(project, cluster_id, "restores") + (f"?{urlencode(kept)}" if kept else "")


def restore_url(project: str, cluster_id: str, name: str, **query: str) -> str:
    """A restore's page."""
    kept = {k: v for k, v in query.items() if v}
    return clusters_url(project, cluster_id, "restores", name) + (f"?{urlencode(kept)}" if kept else "")


def form_url(project: str, source_id: str, backup: str, **query: str) -> str:
    """The Restore form of a backup (also where it is sent)."""
    kept = {k: v for k, v in query.items() if v}
    return backup_url(project, source_id, backup, "restore") + (f"?{urlencode(kept)}" if kept else "")


def live_url(project: str, cluster_id: str, name: str) -> str:
    """The JSON the restore page polls for its phase, progress and new log lines."""
    return clusters_url(project, cluster_id, "restores", name, "live").replace("/projects/", "/ui/projects/", 1)


URLS: dict[str, Any] = {
    "restores_url": restores_url,
    "restore_url": restore_url,
    "form_url": form_url,
    "backup_url": backup_url,
    "tab_url": tab_url,
}


# -- the form ---------------------------------------------------------------------------------------------
def _require(who: Visitor) -> None:
    if not who.can(Permission.RUN_BACKUPS):
        raise errors.Forbidden(
            f"Your role '{who.user.role}' can look at backups and restores but not restore: only editors and admins "
            "may. Ask one of them."
        )


def _entries(value: str) -> tuple[str, ...]:
    """Names separated by commas or new lines."""
    return clean_list(re.split(r"[,\n]", value))


def values_of(form: FormData) -> FormValues:
    """The form's fields clipped to their bounds, and its mapping rows (old → new) as typed."""
    fields = {name: text(form, name)[:bound] for name, bound in MAX_LENGTHS.items()}
    olds = [str(v)[: 63 * 4] for v in form.getlist("map_old")][:MAX_MAPPINGS]
    news = [str(v)[: 63 * 4] for v in form.getlist("map_new")][:MAX_MAPPINGS]
    news += [""] * (len(olds) - len(news))
    rows = [(old, new) for old, new in zip(olds, news, strict=False) if old.strip() or new.strip()]
    return FormValues(fields, rows)


def request_of(values: FormValues) -> tuple[RestoreRequest, dict[str, str]]:
    """The restore request of the form and every field's problem, by the same rules as the service."""
    problems: dict[str, str] = {}
    fields = values.fields
    mapping: dict[str, str] = {}
    for old, new in values.mapping:
        old, new = old.strip(), new.strip()
        if not old or not new:
            problems.setdefault(
                "namespace_mapping", f"Fill in both sides of each mapping row ({old or '?'} → {new or '?'})."
            )
        elif old in mapping:
            problems.setdefault("namespace_mapping", f"Namespace {old!r} is mapped twice; map each namespace once.")
        else:
            mapping[old] = new
    try:
        mode = ClusterResourceMode(fields.get("cluster_resources") or ClusterResourceMode.AUTO.value)
    except ValueError:
        problems["cluster_resources"] = "Choose Always, Auto or Never for cluster resources."
        mode = ClusterResourceMode.AUTO
    try:
        policy = ExistingResourcePolicy(fields.get("existing") or ExistingResourcePolicy.NONE.value)
    except ValueError:
        problems["existing"] = "Choose to skip existing objects or to update them."
        policy = ExistingResourcePolicy.NONE
    request = RestoreRequest(
        include_namespaces=_entries(fields.get("namespaces", "")),
        excluded_namespaces=_entries(fields.get("excluded_namespaces", "")),
        namespace_mapping=mapping,
        cluster_resource_mode=mode,
        restore_pvs=fields.get("restore_pvs", "").lower() in _CHECKED,
        preserve_node_ports=fields.get("preserve_node_ports", "").lower() in _CHECKED,
        existing_resource_policy=policy,
        label_selector=fields.get("label_selector", "").strip() or None,
        dry_run=fields.get("action") != "confirm",
    )
    for problem in restore_problems(request):
        problems.setdefault(FORM_FIELDS.get(problem.field, "form"), problem.message)
    return request, problems


def values_from(request: RestoreRequest, destination: str) -> FormValues:
    """A request (a preview's, or the defaults) as the form's values."""
    return FormValues(
        {
            "destination": destination,
            "namespaces": "\n".join(request.include_namespaces),
            "excluded_namespaces": "\n".join(request.excluded_namespaces),
            "cluster_resources": request.cluster_resource_mode.value,
            "restore_pvs": "on" if request.restore_pvs else "off",
            "preserve_node_ports": "on" if request.preserve_node_ports else "off",
            "existing": request.existing_resource_policy.value,
            "label_selector": request.label_selector or "",
        },
        list(request.namespace_mapping.items()),
    )


def _field_of(exc: errors.StowageError) -> str:
    raw = getattr(exc, "field", None) or (exc.details.get("field") if isinstance(exc.details, dict) else None)
    return FORM_FIELDS.get(str(raw or ""), "form")


async def _form(
    request: Request,
    who: Visitor,
    project: str,
    cluster_id: str,
    name: str,
    *,
    values: FormValues | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    _require(who)
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    backup = await run_in_threadpool(runtime.backups.get, who.principal, project, cluster.id, name)
    clusters = await run_in_threadpool(runtime.clusters.list, who.principal, project)
    shown = values or values_from(RestoreRequest(), cluster.id)
    rows = list(shown.mapping) + [("", "")] * max(1, MAPPING_ROWS - len(shown.mapping))
    return render(
        request,
        "restore_new.html",
        status=status,
        who=who,
        **frame,
        **HELPERS,
        **URLS,
        cluster=cluster,
        backup=backup,
        clusters=clusters,
        values=shown.fields,
        rows=rows,
        problems=problems or {},
        restorable=backup.phase in (BackupPhase.COMPLETED, BackupPhase.PARTIALLY_FAILED),
    )


@router.get("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/restore")
async def restore_form(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """The Restore form of a backup; ``?preview=<restore>&to=<cluster>`` starts from a preview's options."""
    who = await visitor(request)
    preview, to = request.query_params.get("preview", "")[:200], request.query_params.get("to", "")[:200]
    values = None
    if preview and to:
        try:
            view = await run_in_threadpool(runtime_of(request).restores.get, who.principal, project, to, preview)
        except errors.NotFound:
            view = None  # gone or mistyped: start from the defaults
        if view is not None:
            values = values_from(view.request, view.destination_cluster_id)
    return await _form(request, who, project, cluster_id, name, values=values)


@router.post("/projects/{project}/settings/clusters/{cluster_id}/backups/{name}/restore")
async def create_restore(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """Preview (a dry-run restore) or, with ``action=confirm``, restore for real; problems shown next to fields."""
    who = await visitor(request)
    form = await read_form(request)
    _require(who)
    values = values_of(form)
    restore_request, problems = request_of(values)
    if not problems:
        try:
            view = await run_in_threadpool(
                lambda: runtime_of(request).restores.create(
                    who.principal,
                    project,
                    cluster_id,
                    name,
                    request=restore_request,
                    destination_cluster_ref=values.fields["destination"].strip() or None,
                )
            )
        except (errors.InvalidInput, errors.Conflict) as exc:
            problems[_field_of(exc)] = exc.message
        else:
            notice = "preview-created" if view.request.dry_run else "restore-created"
            return redirect(restore_url(project, view.destination_cluster_id, view.name, notice=notice))
    return await _form(
        request, who, project, cluster_id, name, values=values, problems=problems, status=422 if problems else 200
    )


# -- the Restores tab --------------------------------------------------------------------------------------
@router.get("/projects/{project}/settings/clusters/{cluster_id}/restores")
async def restores_tab(request: Request, project: str, cluster_id: str) -> Response:
    """The restores (and previews) into a cluster, newest first; ``?fragment=1`` is the table alone."""
    who = await visitor(request)
    runtime = runtime_of(request)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    offset = page_number(request)
    items, total = await run_in_threadpool(
        lambda: runtime.restores.list_page(who.principal, project, cluster.id, limit=PAGE_SIZE, offset=offset)
    )
    previous = restores_url(project, cluster.id, offset=str(max(0, offset - PAGE_SIZE))) if offset > 0 else ""
    following = restores_url(project, cluster.id, offset=str(offset + PAGE_SIZE)) if offset + PAGE_SIZE < total else ""
    context: dict[str, Any] = {
        **HELPERS,
        **URLS,
        "cluster": cluster,
        "restores": items,
        "total": total,
        "offset": offset,
        "active": any(not v.phase.finished for v in items),
        "prev_url": previous,
        "next_url": following,
        "fragment_url": restores_url(project, cluster.id, fragment="1", offset=str(offset) if offset else ""),
    }
    if request.query_params.get("fragment") == "1":
        project_view = await run_in_threadpool(runtime.tenancy.project, who.principal, project)
        return render(request, "_restores_table.html", who=who, project=project_view, **context)
    frame = await project_frame(request, who, project)
    return render(request, "restores.html", who=who, **frame, **context)


# -- one restore ------------------------------------------------------------------------------------------
def _actions(view: RestoreView) -> tuple[ItemAction, ...]:
    return PLAN_ACTIONS if view.request.dry_run else RESULT_ACTIONS


async def _groups(
    request: Request, who: Visitor, project: str, cluster_id: str, view: RestoreView
) -> list[ActionGroup]:
    """Per action: its count and its first items (the action's own list has them all)."""
    runtime = runtime_of(request)

    def read() -> list[ActionGroup]:
        groups: list[ActionGroup] = []
        for action in _actions(view):
            items, count = runtime.restores.items(
                who.principal, project, cluster_id, view.name, action=action.value, limit=ITEMS_PER_GROUP
            )
            if count:
                groups.append(ActionGroup(action, ACTION_LABELS[action], ACTION_TONES[action], count, items))
        return groups

    return await run_in_threadpool(read)


def _action_param(request: Request, view: RestoreView) -> ItemAction | None:
    raw = request.query_params.get("action", "")
    if not raw:
        return None
    try:
        action = ItemAction(raw)
    except ValueError as exc:
        raise errors.NotFound(f"There is no item action {raw[:20]!r}; choose one of the counts shown.") from exc
    return action if action in _actions(view) else None


def confirm_fields(view: RestoreView) -> list[tuple[str, str]]:
    """A preview's request as the hidden fields of Confirm Restore (the same names as the form's)."""
    values = values_from(view.request, view.destination_cluster_id)
    hidden = [(k, v) for k, v in values.fields.items()]
    for old, new in values.mapping:
        hidden += [("map_old", old), ("map_new", new)]
    return [*hidden, ("action", "confirm")]


@router.get("/projects/{project}/settings/clusters/{cluster_id}/restores/{name}")
async def restore_page(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """One restore or preview: phase, live progress, summary, items by action, problems, failure reason, logs."""
    who = await visitor(request)
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    cluster = await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)
    view = await run_in_threadpool(runtime.restores.get, who.principal, project, cluster.id, name)
    logs = await run_in_threadpool(
        lambda: runtime.restores.logs(who.principal, project, cluster.id, view.name, after=0, limit=LOG_PAGE)
    )
    action = _action_param(request, view)
    groups = await _groups(request, who, project, cluster.id, view)
    page: dict[str, Any] = {}
    if action is not None:
        offset = page_number(request)
        items, total = await run_in_threadpool(
            lambda: runtime.restores.items(
                who.principal, project, cluster.id, view.name, action=action.value, limit=ITEMS_PAGE, offset=offset
            )
        )

        def at(value: int) -> str:
            return restore_url(project, cluster.id, view.name, action=action.value, offset=str(value) if value else "")

        page = {
            "items": items,
            "total": total,
            "offset": offset,
            "prev_url": at(max(0, offset - ITEMS_PAGE)) if offset > 0 else "",
            "next_url": at(offset + ITEMS_PAGE) if offset + ITEMS_PAGE < total else "",
        }
    notice_key = request.query_params.get("notice", "")
    extra: dict[str, Any] = {"notice": NOTICES[notice_key]} if notice_key in NOTICES else {}
    can_run = who.can(Permission.RUN_BACKUPS)
    return render(
        request,
        "restore.html",
        who=who,
        **frame,
        **extra,
        **HELPERS,
        **URLS,
        cluster=cluster,
        restore=view,
        logs=logs,
        groups=groups,
        action=action,
        page=page,
        live=live_url(project, cluster.id, view.name),
        can_run=can_run,
        can_confirm=can_run
        and view.request.dry_run
        and view.phase in (RestorePhase.COMPLETED, RestorePhase.PARTIALLY_FAILED),
        hidden=confirm_fields(view),
    )


def _live_json(view: RestoreView, lines: list[dict[str, Any]], next_after: int, logs_finished: bool) -> dict[str, Any]:
    return {
        "phase": view.phase.value,
        "phaseLabel": PHASE_LABELS[view.phase],
        "finished": view.phase.finished,
        "dryRun": view.request.dry_run,
        "failureReason": view.failure_reason,
        "totalItems": view.total_items,
        "itemsRestored": view.items_restored,
        "percent": percent(view),
        "progressText": progress_text(view),
        "lines": lines,
        "nextAfter": next_after,
        "logsFinished": logs_finished,
    }


@router.get("/ui/projects/{project}/settings/clusters/{cluster_id}/restores/{name}/live")
async def restore_live(request: Request, project: str, cluster_id: str, name: str) -> Response:
    """JSON for the restore page's live view: phase, progress, failure reason and log lines after ``after``."""
    who = await visitor(request)
    runtime = runtime_of(request)
    after = page_number(request, "after")
    view = await run_in_threadpool(runtime.restores.get, who.principal, project, cluster_id, name)
    logs = await run_in_threadpool(
        lambda: runtime.restores.logs(who.principal, project, cluster_id, view.name, after=after, limit=LOG_PAGE)
    )
    lines = [
        {"id": line.id, "at": line.at.strftime("%H:%M:%S"), "level": line.level, "message": line.message}
        for line in logs.lines
    ]
    return JSONResponse(_live_json(view, lines, logs.next_after, logs.finished))
