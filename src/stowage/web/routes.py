"""Project Settings → Backup Locations: the list, the add-location wizard, details, edit, delete."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stowage import errors
from stowage.domain.access import Permission
from stowage.domain.checks import ValidationReport
from stowage.domain.locations import AgentAccess, Provider, StaticCredentials, StsCredentials
from stowage.domain.policies import render as render_policy
from stowage.domain.regions import ALL_REGIONS, REGION_NAMES
from stowage.services.locations import SavedLocation
from stowage.services.policies import PolicyRequest
from stowage.services.tenancy import DEFAULT_PROJECT
from stowage.web import backups, clusters, restores, tokens, users, workspaces
from stowage.web import projects as project_pages
from stowage.web.common import (
    STATIC_DIR,
    Visitor,
    WebRoute,
    install_state,
    locations_url,
    page_number,
    project_frame,
    read_form,
    redirect,
    render,
    runtime_of,
    sts_panel,
    text,
    visitor,
)
from stowage.web.forms import (
    cluster_trust_of,
    edit_changes,
    field_problems,
    report_json,
    seal,
    seal_matches,
    spec_from_form,
)
from stowage.web.sessions import session_key

log = logging.getLogger("stowage.web")
router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
AUTH_LABELS = {"sts": "STS", "static": "Static keys"}
AGENT_ACCESS_LABELS = {AgentAccess.BROKERED: "Brokered", AgentAccess.DIRECT: "Direct"}
AGENT_ACCESS_HELP = {
    AgentAccess.BROKERED: (
        "Agents get short-lived credentials from Stowage, confined to their cluster's own prefix of the bucket. "
        "The role trusts only Stowage; the clusters' AWS account needs no access, and every issuance is audited."
    ),
    AgentAccess.DIRECT: (
        "The agent, with its own identity in the cluster's AWS account (A), assumes this role itself with the "
        "project's External ID. Stowage stays out of the data path, but the role in the bucket's account (B) "
        "must trust account A too."
    ),
}
PROVIDER_LABELS = {Provider.AWS: "AWS", Provider.S3_COMPATIBLE: "S3-compatible"}


def install(app: FastAPI) -> None:
    """Register the UI's routes and static files."""
    install_state(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(users.router)
    app.include_router(project_pages.router)
    app.include_router(tokens.router)
    # Before clusters: its /clusters/{id}/{action} confirmation route would take the Backups tab's path.
    app.include_router(backups.router)
    app.include_router(restores.router)
    app.include_router(clusters.router)
    app.include_router(workspaces.router)
    app.include_router(router)
    app.include_router(fallback)


# -- navigation ----------------------------------------------------------------------------------------
@router.get("/")
async def home(request: Request) -> Response:
    """The first project's Backup Locations (the default project when there is one)."""
    who = await visitor(request)
    projects = await run_in_threadpool(runtime_of(request).tenancy.list_projects, who.principal)
    if not projects:
        if who.can(Permission.MANAGE_PROJECTS):
            return redirect("/settings/projects")
        return render(
            request,
            "error.html",
            who=who,
            status=404,
            title="No projects",
            status_code=404,
            message="Your tenant has no projects yet. Ask an admin to add one under Settings → Projects.",
        )
    names = [p.name for p in projects]
    chosen = DEFAULT_PROJECT if DEFAULT_PROJECT in names else names[0]
    return redirect(locations_url(chosen))


@router.get("/ui/switch-project")
async def switch_project(request: Request) -> Response:
    """The project switcher's target: the same settings page of another project."""
    await visitor(request)
    project = request.query_params.get("project", "")
    if not project:
        return redirect("/")
    return redirect(locations_url(project))


@router.get("/projects/{project}")
async def project_home(request: Request, project: str) -> Response:
    """A project's landing page is its settings."""
    await visitor(request)
    return redirect(locations_url(project))


@router.get("/projects/{project}/settings")
async def project_settings(request: Request, project: str) -> Response:
    """Project Settings opens on Backup Locations."""
    await visitor(request)
    return redirect(locations_url(project))


# -- list --------------------------------------------------------------------------------------------
@router.get("/projects/{project}/settings/backup-locations")
async def list_page(request: Request, project: str) -> Response:
    """The project's backup locations, filtered by the search box (the script asks for the table only)."""
    who = await visitor(request)
    search = request.query_params.get("search", "")[:200]
    offset = page_number(request)
    runtime = runtime_of(request)
    page = await run_in_threadpool(
        lambda: runtime.locations.list_page(
            who.principal, project, search=search or None, limit=PAGE_SIZE, offset=offset
        )
    )
    context: dict[str, Any] = {
        "page": page,
        "search": search,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "auth_labels": AUTH_LABELS,
        "provider_labels": PROVIDER_LABELS,
        "locations_url": locations_url,
        "prev_url": _page_url(project, search, offset - PAGE_SIZE) if offset > 0 else "",
        "next_url": _page_url(project, search, offset + PAGE_SIZE) if offset + PAGE_SIZE < page.total else "",
    }
    if request.query_params.get("fragment") == "1":
        frame: dict[str, Any] = {"project": await run_in_threadpool(runtime.tenancy.project, who.principal, project)}
        return render(request, "_locations_table.html", who=who, **frame, **context)
    return render(request, "locations.html", who=who, **await project_frame(request, who, project), **context)


def _page_url(project: str, search: str, offset: int) -> str:
    query = {k: v for k, v in (("search", search), ("offset", str(max(0, offset)))) if v and v != "0"}
    return locations_url(project) + (f"?{urlencode(query)}" if query else "")


# -- the wizard --------------------------------------------------------------------------------------
@router.get("/projects/{project}/settings/backup-locations/new")
async def wizard_page(request: Request, project: str) -> Response:
    """The "Add New Backup Location" wizard."""
    who = await visitor(request)
    if not who.can(Permission.MANAGE_LOCATIONS):
        raise errors.Forbidden(f"Your role '{who.user.role}' can look at backup locations but not add them.")
    frame = await project_frame(request, who, project)
    sts, sts_reason = await sts_panel(request, who, project)
    return render(
        request,
        "wizard.html",
        who=who,
        **frame,
        sts=sts,
        sts_reason=sts_reason,
        regions=[(code, REGION_NAMES.get(code, "")) for code in ALL_REGIONS],
        providers=PROVIDER_LABELS,
        agent_access_labels=AGENT_ACCESS_LABELS,
        agent_access_help=AGENT_ACCESS_HELP,
        cluster_accounts=await _cluster_accounts(request, who, project),
        locations_url=locations_url,
    )


async def _cluster_accounts(request: Request, who: Visitor, project: str) -> list[tuple[str, str]]:
    """(account ID, cluster names) of the project's registered clusters, to suggest as account A."""
    views = await run_in_threadpool(runtime_of(request).clusters.list, who.principal, project)
    accounts: dict[str, list[str]] = {}
    for view in views:
        if view.cloud_account_id:
            accounts.setdefault(view.cloud_account_id, []).append(view.name)
    return [(account, ", ".join(names)) for account, names in sorted(accounts.items())]


@router.post("/ui/projects/{project}/backup-locations/check")
async def check_fields(request: Request, project: str) -> Response:
    """Inline errors as the user types: the same naming rules as the API, no network."""
    who = await visitor(request)
    form = await read_form(request)
    await run_in_threadpool(runtime_of(request).tenancy.project, who.principal, project)
    problems = field_problems(form)
    return JSONResponse({"problems": {k: {"level": p.level, "message": p.message} for k, p in problems.items()}})


@router.get("/ui/projects/{project}/policies")
async def policies(request: Request, project: str) -> Response:
    """The permission and trust policies for what the wizard holds so far, as pretty JSON."""
    who = await visitor(request)
    query = request.query_params
    access = _agent_access_param(query.get("agent_access") or query.get("agentAccess"))
    # Brokered agents never assume the role, so account A gets no statement (and its fields, hidden then,
    # must not fail the request); without a choice the spec's multi-account statement is given as before.
    account, role = (None, None) if access is AgentAccess.BROKERED else cluster_trust_of(query)
    policy_request = PolicyRequest(
        bucket=query.get("bucket", "").strip()[:255],
        region=(query.get("region", "").strip() or "us-east-1")[:128],
        prefix=query.get("prefix", "").strip()[:1024] or None,
        kms_key_arn=query.get("kms_key_arn", "").strip()[:2048] or None,
        cluster_account_id=account,
        cluster_role_arn=role,
        volume_snapshots=query.get("volume_snapshots", "on").lower() in {"on", "true", "1"},
        agent_access=access,
    )
    documents = await run_in_threadpool(runtime_of(request).policies.policies, who.principal, project, policy_request)
    answer: dict[str, object] = {name: render_policy(doc) for name, doc in documents.items() if isinstance(doc, dict)}
    if documents.get("trustPolicyUnavailable"):
        answer["trustPolicyUnavailable"] = documents["trustPolicyUnavailable"]
    return JSONResponse(answer)


def _agent_access_param(raw: str | None) -> AgentAccess | None:
    if not raw:
        return None
    try:
        return AgentAccess(raw)
    except ValueError as exc:
        raise errors.InvalidInput("Choose brokered or direct as the agent access.", field="agent_access") from exc


@router.post("/ui/projects/{project}/backup-locations/validate")
async def validate(request: Request, project: str) -> Response:
    """Validate the wizard's inputs live; a passing report comes with a seal that Create requires."""
    who = await visitor(request)
    form = await read_form(request)
    spec = spec_from_form(form)
    runtime = runtime_of(request)
    report: ValidationReport = await run_in_threadpool(runtime.locations.validate, who.principal, project, spec)
    key = session_key(runtime.settings)
    token = seal(key, who.session.sid, spec) if report.ok else None
    return JSONResponse({"report": report_json(report), "token": token})


@router.post("/ui/projects/{project}/backup-locations")
async def create(request: Request, project: str) -> Response:
    """Create the location, only for inputs that passed validation (the service validates again anyway)."""
    who = await visitor(request)
    form = await read_form(request)
    spec = spec_from_form(form)
    runtime = runtime_of(request)
    skip = text(form, "skip_validation") == "on"
    if skip and not who.can(Permission.SKIP_VALIDATION):
        raise errors.Forbidden("Only admins may save a location without live validation.")
    key = session_key(runtime.settings)
    if not skip and not seal_matches(key, who.session.sid, spec, text(form, "validation_token")):
        return JSONResponse(
            {
                "code": "validate_first",
                "message": "These settings have not passed validation as they are now. Click Validate, then Create.",
            },
            status_code=409,
        )
    try:
        saved: SavedLocation = await run_in_threadpool(
            lambda: runtime.locations.create(who.principal, project, spec, skip_validation=skip)
        )
    except errors.ValidationFailed as exc:
        report = ValidationReport.from_dict(exc.details.get("report", {}))
        return JSONResponse({"code": exc.code, "message": exc.message, "report": report_json(report)}, status_code=422)
    return JSONResponse({"redirect": locations_url(saved.project, saved.id) + "?notice=created"}, status_code=201)


# -- one location -------------------------------------------------------------------------------------
async def _detail(
    request: Request, who: Visitor, project: str, location_id: str, *, status: int = 200, **extra: Any
) -> Response:
    runtime = runtime_of(request)
    frame = await project_frame(request, who, project)
    saved = await run_in_threadpool(runtime.locations.get, who.principal, project, location_id)
    history = await run_in_threadpool(runtime.locations.history, who.principal, project, location_id)
    return render(
        request,
        "location.html",
        status=status,
        who=who,
        **frame,
        loc=saved,
        history=history,
        auth_labels=AUTH_LABELS,
        provider_labels=PROVIDER_LABELS,
        agent_access_labels=AGENT_ACCESS_LABELS,
        agent_access_help=AGENT_ACCESS_HELP,
        locations_url=locations_url,
        is_sts=isinstance(saved.spec.credentials, StsCredentials),
        **extra,
    )


@router.get("/projects/{project}/settings/backup-locations/{location_id}")
async def detail_page(request: Request, project: str, location_id: str) -> Response:
    """Settings, status and validation history of one location."""
    who = await visitor(request)
    return await _detail(request, who, project, location_id)


@router.post("/projects/{project}/settings/backup-locations/{location_id}/validate")
async def revalidate(request: Request, project: str, location_id: str) -> Response:
    """Re-validate now and show the outcome."""
    who = await visitor(request)
    await read_form(request)
    runtime = runtime_of(request)
    _, report = await run_in_threadpool(runtime.locations.revalidate, who.principal, project, location_id)
    notice = "validated-ok" if report.ok else "validated-failed"
    return redirect(locations_url(project, location_id) + f"?notice={notice}")


@router.post("/projects/{project}/settings/backup-locations/{location_id}/default")
async def make_default(request: Request, project: str, location_id: str) -> Response:
    """Make this the project's default location."""
    who = await visitor(request)
    await read_form(request)
    await run_in_threadpool(runtime_of(request).locations.set_default, who.principal, project, location_id)
    return redirect(locations_url(project, location_id) + "?notice=default")


@router.get("/projects/{project}/settings/backup-locations/{location_id}/edit")
async def edit_page(request: Request, project: str, location_id: str) -> Response:
    """The edit form, filled with the current settings (never the secret)."""
    who = await visitor(request)
    saved = await run_in_threadpool(runtime_of(request).locations.get, who.principal, project, location_id)
    return await _edit(request, who, project, saved, values=_values_of(saved))


def _values_of(saved: SavedLocation) -> dict[str, Any]:
    spec = saved.spec
    creds = spec.credentials
    return {
        "name": spec.name,
        "provider": spec.provider.value,
        "bucket": spec.bucket,
        "region": spec.region,
        "s3_url": spec.s3_url or "",
        "force_path_style": spec.force_path_style,
        "ca_cert": spec.ca_cert or "",
        "prefix": spec.prefix or "",
        "kms_key_arn": spec.kms_key_arn or "",
        "volume_snapshots": spec.volume_snapshots,
        "agent_access": spec.agent_access.value,
        "auth": creds.type,
        "role_arn": creds.role_arn if isinstance(creds, StsCredentials) else "",
        "access_key_id": creds.access_key_id if isinstance(creds, StaticCredentials) else "",
    }


async def _edit(
    request: Request,
    who: Visitor,
    project: str,
    saved: SavedLocation,
    *,
    values: dict[str, Any],
    status: int = 200,
    error: str = "",
    error_field: str = "",
    report: ValidationReport | None = None,
) -> Response:
    if not who.can(Permission.MANAGE_LOCATIONS):
        raise errors.Forbidden(f"Your role '{who.user.role}' can look at backup locations but not change them.")
    frame = await project_frame(request, who, project)
    return render(
        request,
        "location_edit.html",
        status=status,
        who=who,
        **frame,
        loc=saved,
        values=values,
        error=error,
        error_field=error_field,
        report=report,
        regions=[(code, REGION_NAMES.get(code, "")) for code in ALL_REGIONS],
        providers=PROVIDER_LABELS,
        agent_access_labels=AGENT_ACCESS_LABELS,
        agent_access_help=AGENT_ACCESS_HELP,
        locations_url=locations_url,
        had_secret=isinstance(saved.spec.credentials, StaticCredentials),
    )


@router.post("/projects/{project}/settings/backup-locations/{location_id}/edit")
async def edit(request: Request, project: str, location_id: str) -> Response:
    """Save an edit; what changes access must pass validation again (the service enforces it)."""
    who = await visitor(request)
    form = await read_form(request)
    runtime = runtime_of(request)
    saved = await run_in_threadpool(runtime.locations.get, who.principal, project, location_id)
    values: dict[str, Any] = {k: text(form, k) for k in _values_of(saved)}
    values["force_path_style"] = text(form, "force_path_style") == "on"
    values["volume_snapshots"] = text(form, "volume_snapshots") == "on"
    try:
        changes = edit_changes(form)
        updated = await run_in_threadpool(
            lambda: runtime.locations.update(who.principal, project, location_id, changes)
        )
    except errors.ValidationFailed as exc:
        report = ValidationReport.from_dict(exc.details.get("report", {}))
        return await _edit(request, who, project, saved, values=values, status=422, error=exc.message, report=report)
    except (errors.InvalidInput, errors.Conflict) as exc:
        field = exc.details.get("field", "") if isinstance(exc.details, dict) else ""
        return await _edit(
            request, who, project, saved, values=values, status=422, error=exc.message, error_field=str(field or "")
        )
    return redirect(locations_url(updated.project, updated.id) + "?notice=updated")


@router.get("/projects/{project}/settings/backup-locations/{location_id}/delete")
async def delete_page(request: Request, project: str, location_id: str) -> Response:
    """Ask for confirmation before deleting."""
    who = await visitor(request)
    if not who.can(Permission.MANAGE_LOCATIONS):
        raise errors.Forbidden(f"Your role '{who.user.role}' can look at backup locations but not delete them.")
    frame = await project_frame(request, who, project)
    saved = await run_in_threadpool(runtime_of(request).locations.get, who.principal, project, location_id)
    return render(request, "location_delete.html", who=who, **frame, loc=saved, locations_url=locations_url)


@router.post("/projects/{project}/settings/backup-locations/{location_id}/delete")
async def delete(request: Request, project: str, location_id: str) -> Response:
    """Delete the location (the bucket's contents stay)."""
    who = await visitor(request)
    await read_form(request)
    await run_in_threadpool(runtime_of(request).locations.delete, who.principal, project, location_id)
    return redirect(locations_url(project) + "?notice=deleted")


# -- anything else under the UI's paths is a friendly 404 ---------------------------------------------
fallback = APIRouter(route_class=WebRoute, include_in_schema=False)


@fallback.get("/logout")
async def logout_link(request: Request) -> Response:
    """Signing out changes state, so it is a form post; a plain link just goes home."""
    del request
    return redirect("/")


@fallback.api_route("/projects/{rest:path}", methods=["GET", "POST"])
@fallback.api_route("/account/{rest:path}", methods=["GET", "POST"])
@fallback.api_route("/ui/{rest:path}", methods=["GET", "POST"])
@fallback.api_route("/settings/{rest:path}", methods=["GET", "POST"])
async def not_found(request: Request, rest: str) -> Response:
    """No such page."""
    del rest
    await visitor(request)
    raise errors.NotFound("There is no such page. Use the menu to find your way.")
