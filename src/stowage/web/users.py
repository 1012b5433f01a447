"""Signing in and out, one's own password, and user management for admins."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stowage import errors
from stowage.domain.access import Role
from stowage.web.common import (
    LoginRequired,
    Visitor,
    WebRoute,
    current_session,
    end_session,
    ensure_session,
    read_form,
    redirect,
    render,
    runtime_of,
    safe_next,
    set_session,
    text,
    visitor,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
ROLE_HELP = {
    Role.ADMIN: "everything, including users, projects, API tokens, the External ID and skipping live validation",
    Role.EDITOR: "add, edit, validate and delete backup locations; register and manage clusters",
    Role.VIEWER: "read only",
}


async def projects_of(request: Request, who: Visitor) -> list[Any]:
    """The visitor's projects, for the header's project switcher."""
    runtime = runtime_of(request)
    return await run_in_threadpool(runtime.tenancy.list_projects, who.principal)


# -- sign in / out -------------------------------------------------------------------------------------
@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    session = current_session(request)
    if session is not None and session.user_id is not None:
        # A stale session simply shows the form.
        with contextlib.suppress(LoginRequired):
            await visitor(request)
            return redirect(safe_next(request.query_params.get("next")))
    ensure_session(request)
    return render(
        request, "login.html", next=safe_next(request.query_params.get("next")), email="", error="", status=200
    )


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the password and start a session."""
    form = await read_form(request)
    email = text(form, "email")[:300]
    password = text(form, "password")
    target = safe_next(text(form, "next"))
    runtime = runtime_of(request)
    client = request.client.host if request.client else "unknown"
    try:
        user = await run_in_threadpool(runtime.users.login, email, password, client=client)
    except errors.LoginThrottled as exc:
        return render(request, "login.html", status=429, next=target, email=email, error=exc.message, throttled=True)
    except errors.Unauthenticated as exc:
        return render(request, "login.html", status=401, next=target, email=email, error=exc.message)
    session = ensure_session(request)
    set_session(request, session.signed_in(user.id, user.session_stamp))
    return redirect(target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    await read_form(request)
    end_session(request)
    return redirect("/login?notice=signed-out")


# -- own account ---------------------------------------------------------------------------------------
@router.get("/account")
async def account_page(request: Request) -> Response:
    """The visitor's account: role and password change."""
    who = await visitor(request)
    return render(
        request, "account.html", who=who, projects=await projects_of(request, who), error="", role_help=ROLE_HELP
    )


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    """Change one's own password; the current session continues, the others end."""
    who = await visitor(request)
    form = await read_form(request)
    runtime = runtime_of(request)
    new = text(form, "new_password")
    if new != text(form, "confirm_password"):
        error = "The two new passwords differ: type the same one twice."
    else:
        try:
            user = await run_in_threadpool(
                runtime.users.change_password, who.user.id, text(form, "current_password"), new
            )
        except errors.InvalidInput as exc:
            error = exc.message
        else:
            set_session(request, who.session.signed_in(user.id, user.session_stamp))
            return redirect("/account?notice=password")
    return render(
        request,
        "account.html",
        status=422,
        who=who,
        projects=await projects_of(request, who),
        error=error,
        role_help=ROLE_HELP,
    )


# -- users (admins) ------------------------------------------------------------------------------------
async def _users_page(
    request: Request, who: Visitor, *, status: int = 200, error: str = "", email: str = ""
) -> Response:
    runtime = runtime_of(request)
    users = await run_in_threadpool(runtime.users.list_users, who.principal)
    return render(
        request,
        "users.html",
        status=status,
        who=who,
        projects=await projects_of(request, who),
        users=users,
        roles=list(Role),
        role_help=ROLE_HELP,
        error=error,
        email=email,
    )


@router.get("/settings/users")
async def users_page(request: Request) -> Response:
    """Users of the tenant (admins)."""
    who = await visitor(request)
    return await _users_page(request, who)


@router.post("/settings/users")
async def create_user(request: Request) -> Response:
    """Add a user (admins)."""
    who = await visitor(request)
    form = await read_form(request)
    runtime = runtime_of(request)
    email = text(form, "email")[:300]
    try:
        role = Role(text(form, "role"))
    except ValueError:
        return await _users_page(request, who, status=422, error="Choose a role.", email=email)
    try:
        await run_in_threadpool(
            lambda: runtime.users.create_user(who.principal, email=email, password=text(form, "password"), role=role)
        )
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _users_page(request, who, status=422, error=exc.message, email=email)
    return redirect("/settings/users?notice=user-created")


@router.post("/settings/users/{user_id}/delete")
async def delete_user(request: Request, user_id: str) -> Response:
    """Remove a user (admins)."""
    who = await visitor(request)
    await read_form(request)
    runtime = runtime_of(request)
    try:
        await run_in_threadpool(lambda: runtime.users.delete_user(who.principal, user_id, acting_user_id=who.user.id))
    except errors.Conflict as exc:
        return await _users_page(request, who, status=409, error=exc.message)
    return redirect("/settings/users?notice=user-deleted")
