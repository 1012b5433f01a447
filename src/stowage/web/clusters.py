"""Project Settings → Clusters (register, rotate, revoke, delete) and the credential issuances audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stowage import errors
from stowage.domain.access import Permission
from stowage.domain.clusters import ConnectionStatus, cluster_name_problem
from stowage.domain.locations import AgentAccess, StsCredentials
from stowage.domain.naming import account_id_problem
from stowage.domain.policies import render as render_policy
from stowage.services.clusters import ClusterView
from stowage.services.locations import SavedLocation
from stowage.web.common import (
    Visitor,
    WebRoute,
    clusters_url,
    issuances_url,
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
ISSUANCES_PAGE_SIZE = 50
# Bounds that keep a silly paste from becoming a huge page; the domain rules say what is actually allowed.
MAX_LENGTHS = {"name": 200, "cloud_account_id": 64, "region": 128}
# The service names fields as the API does; the form's fields are snake_case.
SERVICE_FIELDS = {"name": "name", "cloudAccountId": "cloud_account_id", "region": "region"}
STATUS_LABELS = {"connected": "Connected", "disconnected": "Disconnected", "never": "Never connected"}
# Protection risk levels as the Clusters and Workspaces pages say them.
RISK_LABELS = {
    "on_time": "On time",
    "late": "Late",
    "missed": "Missed",
    "failing": "Failing",
    "never": "Never backed up",
}
# What each confirmed action does, as the confirmation page says it.
ACTIONS: dict[str, dict[str, str]] = {
    "rotate-token": {
        "title": "Rotate the agent token of “{name}”?",
        "body": "Stowage issues a new token and shows it once. The current token stops working at once, so the "
        "agent is refused until it runs with the new one.",
        "button": "Rotate token",
        "style": "btn-primary",
    },
    "revoke-token": {
        "title": "Revoke the agent token of “{name}”?",
        "body": "The agent is refused from now on, and no new token is issued. Rotate the token later to let it "
        "back in. The cluster, its settings and its audit entries stay.",
        "button": "Revoke token",
        "style": "btn-danger",
    },
    "delete": {
        "title": "Delete cluster “{name}”?",
        "body": "Stowage forgets this cluster and its agent token stops working at once. Backups already in the "
        "buckets are not touched, and its credential issuances stay in the audit log.",
        "button": "Delete cluster",
        "style": "btn-danger",
    },
}


def status_key(view: ClusterView) -> str:
    """The status a person reads: connected, disconnected, or never connected (no heartbeat yet)."""
    if view.last_heartbeat_at is None:
        return "never"
    return "connected" if view.status is ConnectionStatus.CONNECTED else "disconnected"


def _require_manage(who: Visitor, what: str) -> None:
    if not who.can(Permission.MANAGE_CLUSTERS):
        raise errors.Forbidden(
            f"Your role '{who.user.role}' can look at clusters but not {what}. Ask an editor or admin of this project."
        )


def _field(form: Any, name: str) -> str:
    return text(form, name)[: MAX_LENGTHS[name]].strip()


# -- the list and the register form ---------------------------------------------------------------------
async def _list_page(
    request: Request,
    who: Visitor,
    project: str,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    frame = await project_frame(request, who, project)
    views = await run_in_threadpool(runtime_of(request).clusters.list, who.principal, project)
    statuses, _ = await run_in_threadpool(runtime_of(request).workspaces.protection, who.principal, project)
    return render(
        request,
        "clusters.html",
        protection={s.id: s.protection for s in statuses},
        risk_labels=RISK_LABELS,
        status=status,
        who=who,
        **frame,
        clusters=views,
        status_key=status_key,
        status_labels=STATUS_LABELS,
        values=values or {"name": "", "cloud_account_id": "", "region": ""},
        problems=problems or {},
        error=error,
        open_form=bool(problems or error),
    )


@router.get("/projects/{project}/settings/clusters")
async def clusters_page(request: Request, project: str) -> Response:
    """The project's clusters with their agents' status, and the form to register one."""
    who = await visitor(request)
    return await _list_page(request, who, project)


@router.post("/projects/{project}/settings/clusters")
async def register(request: Request, project: str) -> Response:
    """Register a cluster and show its agent token, this once."""
    who = await visitor(request)
    form = await read_form(request)
    _require_manage(who, "register them")
    values = {name: _field(form, name) for name in MAX_LENGTHS}
    # The same rules the service applies, all at once, so every field's problem shows in one round trip.
    problems = {
        field: problem
        for field, problem in (
            ("name", cluster_name_problem(values["name"])),
            ("cloud_account_id", account_id_problem(values["cloud_account_id"] or None)),
        )
        if problem
    }
    if problems:
        return await _list_page(request, who, project, status=422, values=values, problems=problems)
    try:
        token, view = await run_in_threadpool(
            lambda: runtime_of(request).clusters.register(
                who.principal,
                project,
                name=values["name"],
                cloud_account_id=values["cloud_account_id"] or None,
                region=values["region"] or None,
            )
        )
    except errors.InvalidInput as exc:
        field = SERVICE_FIELDS.get(str(exc.field or ""), "")
        if not field:
            return await _list_page(request, who, project, status=422, values=values, error=exc.message)
        return await _list_page(request, who, project, status=422, values=values, problems={field: exc.message})
    except errors.Conflict as exc:
        return await _list_page(request, who, project, status=409, values=values, problems={"name": exc.message})
    return await _token_page(request, who, project, view, token, registered=True)


async def _token_page(
    request: Request, who: Visitor, project: str, view: ClusterView, token: str, *, registered: bool
) -> Response:
    frame = await project_frame(request, who, project)
    server = str(request.base_url).rstrip("/")
    return render(
        request,
        "cluster_token.html",
        status=201 if registered else 200,
        who=who,
        **frame,
        cluster=view,
        token=token,
        registered=registered,
        command=f"stowage agent --server {server} --token {token}",
    )


# -- one cluster ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DirectTrust:
    """The trust policy one direct-access location's role needs for a cluster, ready to paste."""

    location: SavedLocation
    policy: str


async def _direct_trust(request: Request, who: Visitor, project: str, view: ClusterView) -> dict[str, Any]:
    """What the cluster page says about trust: one policy per direct STS location, or why there is none."""
    locations = [
        loc for loc in await project_locations(request, who, project) if loc.spec.agent_access is AgentAccess.DIRECT
    ]
    # Only a role can trust account A; a static-key location has none, whatever its agent access says.
    direct = [loc for loc in locations if isinstance(loc.spec.credentials, StsCredentials)]
    static = [loc for loc in locations if not isinstance(loc.spec.credentials, StsCredentials)]
    entries: list[DirectTrust] = []
    reason = ""
    if direct and view.cloud_account_id:
        vending = runtime_of(request).vending
        for loc in direct:
            try:
                answer = await run_in_threadpool(vending.trust_policy, who.principal, project, view.id, loc.id)
            except errors.StsUnavailable as exc:
                reason = exc.message
                break
            except errors.NotFound:
                continue  # deleted while the page was being built
            entries.append(DirectTrust(location=loc, policy=render_policy(answer["trustPolicy"])))
    return {"direct_locations": direct, "static_direct": static, "trust_entries": entries, "trust_reason": reason}


@router.get("/projects/{project}/settings/clusters/{cluster_id}")
async def cluster_page(request: Request, project: str, cluster_id: str) -> Response:
    """One cluster: its agent's status, its token's state (never the token), trust for direct access, actions."""
    who = await visitor(request)
    frame = await project_frame(request, who, project)
    view = await run_in_threadpool(runtime_of(request).clusters.get, who.principal, project, cluster_id)
    return render(
        request,
        "cluster.html",
        who=who,
        **frame,
        cluster=view,
        status_key=status_key,
        status_labels=STATUS_LABELS,
        **await _direct_trust(request, who, project, view),
    )


@router.get("/projects/{project}/settings/clusters/{cluster_id}/{action}")
async def confirm_page(request: Request, project: str, cluster_id: str, action: str) -> Response:
    """Ask for confirmation before rotating, revoking or deleting."""
    who = await visitor(request)
    if action not in ACTIONS:
        raise errors.NotFound("There is no such page. Use the menu to find your way.")
    _require_manage(who, "change them")
    frame = await project_frame(request, who, project)
    view = await run_in_threadpool(runtime_of(request).clusters.get, who.principal, project, cluster_id)
    wording = {key: value.format(name=view.name) for key, value in ACTIONS[action].items()}
    return render(request, "cluster_confirm.html", who=who, **frame, cluster=view, action=action, wording=wording)


@router.post("/projects/{project}/settings/clusters/{cluster_id}/rotate-token")
async def rotate_token(request: Request, project: str, cluster_id: str) -> Response:
    """Replace the agent token and show the new one, this once."""
    who = await visitor(request)
    await read_form(request)
    _require_manage(who, "rotate their tokens")
    token, view = await run_in_threadpool(runtime_of(request).clusters.rotate_token, who.principal, project, cluster_id)
    return await _token_page(request, who, project, view, token, registered=False)


@router.post("/projects/{project}/settings/clusters/{cluster_id}/revoke-token")
async def revoke_token(request: Request, project: str, cluster_id: str) -> Response:
    """Revoke the agent token (the agent is refused until the token is rotated)."""
    who = await visitor(request)
    await read_form(request)
    _require_manage(who, "revoke their tokens")
    view = await run_in_threadpool(runtime_of(request).clusters.revoke_token, who.principal, project, cluster_id)
    return redirect(clusters_url(view.project, view.id) + "?notice=token-revoked")


@router.post("/projects/{project}/settings/clusters/{cluster_id}/delete")
async def delete(request: Request, project: str, cluster_id: str) -> Response:
    """Delete the cluster (its token stops working; the audit keeps its entries)."""
    who = await visitor(request)
    await read_form(request)
    _require_manage(who, "delete them")
    await run_in_threadpool(runtime_of(request).clusters.delete, who.principal, project, cluster_id)
    return redirect(clusters_url(project) + "?notice=cluster-deleted")


# -- the audit log ------------------------------------------------------------------------------------------
@router.get("/projects/{project}/settings/credential-issuances")
async def issuances_page(request: Request, project: str) -> Response:
    """Credentials STS issued to the project's clusters, newest first, optionally for one location or cluster."""
    who = await visitor(request)
    frame = await project_frame(request, who, project)
    location_id = request.query_params.get("location", "")[:64]
    cluster_id = request.query_params.get("cluster", "")[:64]
    offset = page_number(request)
    runtime = runtime_of(request)
    # One more than a page tells whether there is a next page without counting the whole log.
    rows = await run_in_threadpool(
        lambda: runtime.vending.issuances(
            who.principal,
            project,
            location_id=location_id or None,
            cluster_id=cluster_id or None,
            limit=ISSUANCES_PAGE_SIZE + 1,
            offset=offset,
        )
    )
    items, more = rows[:ISSUANCES_PAGE_SIZE], len(rows) > ISSUANCES_PAGE_SIZE
    filters = {"location": location_id, "cluster": cluster_id}
    return render(
        request,
        "issuances.html",
        who=who,
        **frame,
        items=items,
        offset=offset,
        page_size=ISSUANCES_PAGE_SIZE,
        filter_label=await _filter_label(request, who, project, location_id, cluster_id, items),
        filters=filters,
        prev_url=_issuances_page_url(project, filters, offset - ISSUANCES_PAGE_SIZE) if offset > 0 else "",
        next_url=_issuances_page_url(project, filters, offset + ISSUANCES_PAGE_SIZE) if more else "",
    )


def _issuances_page_url(project: str, filters: dict[str, str], offset: int) -> str:
    url = issuances_url(project, **filters)
    if offset <= 0:
        return url
    return url + ("&" if "?" in url else "?") + urlencode({"offset": offset})


async def _filter_label(
    request: Request, who: Visitor, project: str, location_id: str, cluster_id: str, items: list[Any]
) -> str:
    """What the log is narrowed to, by name (the audit keeps names after a location or cluster is deleted)."""
    parts: list[str] = []
    runtime = runtime_of(request)
    if location_id:
        name = next((i.location_name for i in items if i.location_id == location_id), "")
        if not name:
            try:
                saved = await run_in_threadpool(runtime.locations.get, who.principal, project, location_id)
                name = saved.spec.name
            except errors.NotFound:
                name = location_id
        parts.append(f"location “{name}”")
    if cluster_id:
        name = next((i.cluster_name for i in items if i.cluster_id == cluster_id), "")
        if not name:
            try:
                name = (await run_in_threadpool(runtime.clusters.get, who.principal, project, cluster_id)).name
            except errors.NotFound:
                name = cluster_id
        parts.append(f"cluster “{name}”")
    return " and ".join(parts)
