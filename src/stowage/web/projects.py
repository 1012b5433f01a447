"""Project Settings → General (account ID, External ID and its rotation) and Settings → Projects (admins add them)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stowage import errors
from stowage.domain.access import Permission
from stowage.domain.locations import StsCredentials
from stowage.domain.naming import project_name_problem
from stowage.services.locations import SavedLocation
from stowage.services.tenancy import ROTATION_WARNING, ProjectView
from stowage.web.common import (
    Visitor,
    WebRoute,
    general_url,
    locations_url,
    project_frame,
    project_locations,
    read_form,
    redirect,
    render,
    runtime_of,
    sts_panel,
    text,
    visitor,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
# Keeps a silly paste from being echoed back in full; the domain rule says what is actually allowed.
NAME_MAX_LENGTH = 200


def _require_rotate(who: Visitor) -> None:
    if not who.can(Permission.ROTATE_EXTERNAL_ID):
        raise errors.Forbidden(
            f"Only admins may rotate the External ID; your role '{who.user.role}' can look at it. Ask an admin."
        )


async def _sts_locations(request: Request, who: Visitor, project: str) -> list[SavedLocation]:
    """The project's STS locations: their roles trust the project's External ID."""
    found = await project_locations(request, who, project)
    return [loc for loc in found if isinstance(loc.spec.credentials, StsCredentials)]


# -- Project Settings → General ---------------------------------------------------------------------------
@router.get("/projects/{project}/settings/general")
async def general_page(request: Request, project: str) -> Response:
    """The project's name, Stowage's AWS account ID (or why STS is unavailable) and the External ID."""
    who = await visitor(request)
    frame = await project_frame(request, who, project)
    sts, sts_reason = await sts_panel(request, who, project)
    # Right after a rotation the page says what to do next, naming the locations whose roles must change.
    rotated = request.query_params.get("notice") == "external-id-rotated"
    affected = await _sts_locations(request, who, project) if rotated else []
    return render(
        request,
        "project_general.html",
        who=who,
        **frame,
        sts=sts,
        sts_reason=sts_reason,
        can_rotate=who.can(Permission.ROTATE_EXTERNAL_ID),
        rotated=rotated,
        affected=affected,
        warning=ROTATION_WARNING,
    )


@router.get("/projects/{project}/settings/general/rotate-external-id")
async def rotate_confirm_page(request: Request, project: str) -> Response:
    """Ask for confirmation before rotating, naming the STS locations whose roles stop working."""
    who = await visitor(request)
    _require_rotate(who)
    frame = await project_frame(request, who, project)
    affected = await _sts_locations(request, who, project)
    return render(request, "external_id_rotate.html", who=who, **frame, affected=affected)


@router.post("/projects/{project}/settings/general/rotate-external-id")
async def rotate_external_id(request: Request, project: str) -> Response:
    """Replace the External ID, then show the new one with what to update."""
    who = await visitor(request)
    await read_form(request)
    _require_rotate(who)
    view = await run_in_threadpool(runtime_of(request).tenancy.rotate_external_id, who.principal, project)
    # A redirect, so reloading the answer cannot rotate a second time.
    return redirect(general_url(view.name) + "?notice=external-id-rotated")


# -- Settings → Projects ---------------------------------------------------------------------------------
async def _projects_page(
    request: Request,
    who: Visitor,
    *,
    status: int = 200,
    name: str = "",
    problem: str = "",
) -> Response:
    projects = await run_in_threadpool(runtime_of(request).tenancy.list_projects, who.principal)
    return render(
        request,
        "projects.html",
        status=status,
        who=who,
        projects=projects,
        name=name,
        problem=problem,
        can_create=who.can(Permission.MANAGE_PROJECTS),
    )


@router.get("/settings/projects")
async def projects_page(request: Request) -> Response:
    """The tenant's projects, and for admins the form that adds one."""
    who = await visitor(request)
    return await _projects_page(request, who)


@router.post("/settings/projects")
async def create_project(request: Request) -> Response:
    """Add a project (admins) and open its Backup Locations."""
    who = await visitor(request)
    form = await read_form(request)
    if not who.can(Permission.MANAGE_PROJECTS):
        raise errors.Forbidden(f"Only admins may add projects; your role '{who.user.role}' cannot. Ask an admin.")
    name = text(form, "name")[:NAME_MAX_LENGTH].strip()
    # The service applies the same rule; asking first keeps the message under the field without a round trip.
    problem = project_name_problem(name)
    if problem:
        return await _projects_page(request, who, status=422, name=name, problem=problem)
    try:
        view: ProjectView = await run_in_threadpool(runtime_of(request).tenancy.create_project, who.principal, name)
    except errors.InvalidInput as exc:
        return await _projects_page(request, who, status=422, name=name, problem=exc.message)
    except errors.Conflict as exc:
        return await _projects_page(request, who, status=409, name=name, problem=exc.message)
    return redirect(locations_url(view.name) + "?notice=project-created")
