"""Settings → API tokens (admins): the list, creating one (shown once) and revoking one."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stowage import errors
from stowage.domain.access import Permission, Role
from stowage.services.tenancy import TokenView
from stowage.web.common import (
    Visitor,
    WebRoute,
    read_form,
    redirect,
    render,
    runtime_of,
    text,
    visitor,
)
from stowage.web.users import ROLE_HELP, projects_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
TOKENS_URL = "/settings/tokens"
# Keeps a silly paste from being echoed back in full; the service says what is actually allowed.
NAME_MAX_LENGTH = 200


def _require_admin(who: Visitor, what: str) -> None:
    if not who.can(Permission.MANAGE_TOKENS):
        raise errors.Forbidden(f"Only admins may {what}; your role '{who.user.role}' cannot. Ask an admin.")


async def _list_page(
    request: Request,
    who: Visitor,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
) -> Response:
    tokens = await run_in_threadpool(runtime_of(request).tenancy.list_tokens, who.principal)
    return render(
        request,
        "tokens.html",
        status=status,
        who=who,
        projects=await projects_of(request, who),
        tokens=tokens,
        roles=list(Role),
        role_help=ROLE_HELP,
        values=values or {"name": "", "role": Role.VIEWER.value},
        problems=problems or {},
    )


@router.get(TOKENS_URL)
async def tokens_page(request: Request) -> Response:
    """The tenant's API tokens (never the tokens themselves) and the form to create one."""
    who = await visitor(request)
    _require_admin(who, "see and create API tokens")
    return await _list_page(request, who)


@router.post(TOKENS_URL)
async def create_token(request: Request) -> Response:
    """Create an API token and show it, this once."""
    who = await visitor(request)
    form = await read_form(request)
    _require_admin(who, "create API tokens")
    values = {"name": text(form, "name")[:NAME_MAX_LENGTH].strip(), "role": text(form, "role")}
    problems: dict[str, str] = {}
    if not values["name"]:
        problems["name"] = "Give the token a name that says who or what uses it, like “ci-backups”."
    role = next((r for r in Role if r.value == values["role"]), None)
    if role is None:
        problems["role"] = "Choose a role: viewer, editor or admin."
    if problems or role is None:
        return await _list_page(request, who, status=422, values=values, problems=problems)
    tenancy = runtime_of(request).tenancy
    try:
        token, view = await run_in_threadpool(tenancy.create_token, who.principal, name=values["name"], role=role)
    except errors.InvalidInput as exc:
        field = exc.field if exc.field in {"name", "role"} else "name"
        return await _list_page(request, who, status=422, values=values, problems={str(field): exc.message})
    server = str(request.base_url).rstrip("/")
    return render(
        request,
        "token_created.html",
        status=201,
        who=who,
        projects=await projects_of(request, who),
        token=token,
        view=view,
        commands=f"export STOWAGE_SERVER={server}\nexport STOWAGE_TOKEN={token}\nstowage projects list",
    )


async def _token(request: Request, who: Visitor, token_id: str) -> TokenView:
    """One token of the visitor's tenant (another tenant's is not found, like an unknown one)."""
    tokens = await run_in_threadpool(runtime_of(request).tenancy.list_tokens, who.principal)
    for view in tokens:
        if view.id == token_id:
            return view
    raise errors.NotFound("There is no such API token. It may have been deleted; see the list of tokens.")


@router.get(TOKENS_URL + "/{token_id}/revoke")
async def revoke_confirm_page(request: Request, token_id: str) -> Response:
    """Ask for confirmation before revoking a token."""
    who = await visitor(request)
    _require_admin(who, "revoke API tokens")
    view = await _token(request, who, token_id)
    return render(request, "token_revoke.html", who=who, projects=await projects_of(request, who), view=view)


@router.post(TOKENS_URL + "/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    """Revoke a token: every request with it is refused from now on."""
    who = await visitor(request)
    await read_form(request)
    _require_admin(who, "revoke API tokens")
    await run_in_threadpool(runtime_of(request).tenancy.revoke_token, who.principal, token_id)
    return redirect(TOKENS_URL + "?notice=api-token-revoked")
