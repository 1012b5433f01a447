"""What every web route shares: templates, sessions, the signed-in visitor, and friendly errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from stowage import errors
from stowage.domain.access import Permission, Principal, allows
from stowage.services.locations import MAX_PAGE as LOCATIONS_MAX_PAGE
from stowage.services.locations import SavedLocation
from stowage.services.policies import StsInfo
from stowage.services.runtime import Runtime
from stowage.services.users import UserView
from stowage.web import csrf
from stowage.web.forms import split_remedy
from stowage.web.sessions import COOKIE, SessionCodec, WebSession, session_key

log = logging.getLogger("stowage.web")
WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
# Pages load only their own scripts and styles: no inline script can run even if some text slipped through.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FRIENDLY_TITLES = {400: "Something is not right", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
NOTICES = {
    "signed-out": "You are signed out.",
    "created": "Backup location created.",
    "updated": "Changes saved.",
    "default": "This is now the project's default backup location.",
    "deleted": "Backup location deleted. Nothing in the bucket was touched.",
    "validated-ok": "Validation passed: the location is Available.",
    "validated-failed": "Validation failed: the location is Unavailable. See the report below.",
    "password": "Password changed. Other sessions of yours are signed out.",
    "user-created": "User added.",
    "user-deleted": "User removed.",
    "cluster-deleted": "Cluster deleted. Its agent token no longer works; its audit entries are kept.",
    "token-revoked": "Agent token revoked: the cluster's agent is refused until you rotate the token.",
    "project-created": "Project created. Add its first backup location.",
    "external-id-rotated": "External ID rotated.",
    "api-token-revoked": "API token revoked: requests with it are refused from now on.",
}


class LoginRequired(Exception):
    """The page needs a signed-in user."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Visitor:
    """The signed-in user of a request and their session."""

    user: UserView
    session: WebSession

    @property
    def principal(self) -> Principal:
        """The principal the user acts as."""
        return self.user.principal

    def can(self, permission: Permission) -> bool:
        """True when the user's role allows the permission."""
        return allows(self.user.role, permission)


class WebState:
    """The web UI's long-lived parts, built once when the app is assembled."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.codec = SessionCodec(session_key(runtime.settings))
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = format_when
        self.env.filters["ago"] = format_ago
        self.env.filters["iso"] = lambda value: value.isoformat() if isinstance(value, datetime) else ""
        self.env.filters["urlpart"] = lambda value: quote(str(value), safe="")
        self.env.globals["split_remedy"] = split_remedy
        self.env.globals["locations_url"] = locations_url
        self.env.globals["clusters_url"] = clusters_url
        self.env.globals["issuances_url"] = issuances_url
        self.env.globals["general_url"] = general_url


def web_state(request: Request) -> WebState:
    """The web state of the app serving this request."""
    state: WebState = request.app.state.web
    return state


def runtime_of(request: Request) -> Runtime:
    """The services of the app serving this request."""
    return web_state(request).runtime


async def sts_panel(request: Request, who: Visitor, project: str) -> tuple[StsInfo | None, str]:
    """The project's STS panel, or ``None`` and the reason the control plane has no AWS identity."""
    try:
        return await run_in_threadpool(runtime_of(request).policies.sts_info, who.principal, project), ""
    except errors.StsUnavailable as exc:
        return None, exc.message


def install_state(app: FastAPI) -> None:
    """Build the web state from the app's runtime."""
    app.state.web = WebState(app.state.runtime)


def format_when(value: datetime | None) -> str:
    """A timestamp as people read it (UTC), or a dash."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago a timestamp was, as people say it ("3 minutes ago"), or a dash."""
    if value is None:
        return "—"
    current = now or datetime.now(UTC)
    when = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = int((current - when).total_seconds())
    if seconds < 0:
        # Clocks of several servers may differ by a little; a future time is still "just now" to a reader.
        seconds = 0
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now" if seconds < 10 else f"{seconds} seconds ago"


# -- URLs of project pages ------------------------------------------------------------------------------
def settings_url(project: str, section: str, *parts: str) -> str:
    """The URL of a page under one section of a project's settings (every part URL-quoted)."""
    base = f"/projects/{quote(project, safe='')}/settings/{section}"
    return "/".join([base, *(quote(p, safe="") for p in parts)])


def locations_url(project: str, *parts: str) -> str:
    """The URL of a page under a project's Backup Locations settings."""
    return settings_url(project, "backup-locations", *parts)


def clusters_url(project: str, *parts: str) -> str:
    """The URL of a page under a project's Clusters settings."""
    return settings_url(project, "clusters", *parts)


def general_url(project: str, *parts: str) -> str:
    """The URL of a page under a project's General settings."""
    return settings_url(project, "general", *parts)


def issuances_url(project: str, **filters: str) -> str:
    """The URL of a project's credential issuances (audit log), optionally filtered."""
    query = urlencode({k: v for k, v in filters.items() if v})
    return settings_url(project, "credential-issuances") + (f"?{query}" if query else "")


def page_number(request: Request, name: str = "offset") -> int:
    """A non-negative integer query parameter (0 when absent or not a number)."""
    try:
        return max(0, int(request.query_params.get(name, "0")))
    except ValueError:
        return 0


async def project_frame(request: Request, who: Visitor, project_ref: str) -> dict[str, Any]:
    """What every project page shows: the project itself and the switcher's list."""
    runtime = runtime_of(request)
    project = await run_in_threadpool(runtime.tenancy.project, who.principal, project_ref)
    projects = await run_in_threadpool(runtime.tenancy.list_projects, who.principal)
    return {"project": project, "projects": projects}


async def project_locations(request: Request, who: Visitor, project_ref: str) -> list[SavedLocation]:
    """Every location of a project, by name (read a page at a time, as the service hands them out)."""
    runtime = runtime_of(request)
    found: list[SavedLocation] = []
    while True:
        page = await run_in_threadpool(
            runtime.locations.list_page, who.principal, project_ref, limit=LOCATIONS_MAX_PAGE, offset=len(found)
        )
        found.extend(page.items)
        if not page.items or len(found) >= page.total:
            return found


# -- sessions and visitors ----------------------------------------------------------------------------
def current_session(request: Request) -> WebSession | None:
    """The session this request arrived with (or one made while handling it)."""
    new: WebSession | None = getattr(request.state, "new_session", None)
    if new is not None:
        return new
    old: WebSession | None = getattr(request.state, "web_session", None)
    return old


def ensure_session(request: Request) -> WebSession:
    """The request's session, starting an anonymous one (for the login form's CSRF token) when there is none."""
    session = current_session(request)
    if session is None:
        session = WebSession.anonymous()
        request.state.new_session = session
    return session


def set_session(request: Request, session: WebSession) -> None:
    """Replace the session; the cookie is written with the response."""
    request.state.new_session = session


def end_session(request: Request) -> None:
    """End the session now and clear its cookie."""
    session = current_session(request)
    if session is not None:
        web_state(request).codec.end(session.sid)
    request.state.clear_session = True


async def visitor(request: Request) -> Visitor:
    """The signed-in visitor, or ``LoginRequired``."""
    session = current_session(request)
    if session is None or session.user_id is None:
        raise LoginRequired()
    runtime = runtime_of(request)
    try:
        user = await run_in_threadpool(runtime.users.session_user, session.user_id, session.stamp)
    except errors.Unauthenticated as exc:
        raise LoginRequired(exc.message) from exc
    return Visitor(user=user, session=session)


async def read_form(request: Request) -> FormData:
    """The request's form, after checking its CSRF token (field or header)."""
    try:
        form = await request.form(max_files=0, max_fields=200)
    except Exception as exc:  # any malformed body is a bad request, never a crash
        raise errors.InvalidInput("The form could not be read: reload the page and try again.") from exc
    sent = form.get(csrf.FIELD)
    token = sent if isinstance(sent, str) else request.headers.get(csrf.HEADER)
    csrf.check(current_session(request), token)
    return form


def text(form: Mapping[str, Any], name: str, default: str = "") -> str:
    """A text field of a form ('' when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) and not isinstance(value, UploadFile) else default


def flag(form: Mapping[str, Any], name: str) -> bool:
    """A checkbox of a form."""
    return text(form, name).lower() in {"on", "true", "1", "yes"}


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


# -- rendering ----------------------------------------------------------------------------------------
def is_json_request(request: Request) -> bool:
    """JSON endpoints of the UI live under /ui/."""
    return request.url.path.startswith("/ui/")


def render(
    request: Request, template: str, *, status: int = 200, who: Visitor | None = None, **context: Any
) -> HTMLResponse:
    """Render a page with the context every page needs."""
    web = web_state(request)
    session = current_session(request)
    notice_key = request.query_params.get("notice", "")
    base: dict[str, Any] = {
        "visitor": who,
        "csrf_token": session.csrf if session else "",
        "notice": NOTICES.get(notice_key, ""),
        "path": request.url.path,
        "projects": [],
        "project": None,
        "can_manage": bool(who and who.can(Permission.MANAGE_LOCATIONS)),
        "can_manage_clusters": bool(who and who.can(Permission.MANAGE_CLUSTERS)),
        "is_admin": bool(who and who.can(Permission.MANAGE_TOKENS)),
    }
    base.update(context)
    html = web.env.get_template(template).render(base)
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    """See-other redirect (a POST answered with a page to GET)."""
    return RedirectResponse(url, status_code=303)


def error_response(request: Request, status: int, message: str, *, code: str = "error", **extra: Any) -> Response:
    """A friendly error: JSON for UI endpoints, a page otherwise."""
    if is_json_request(request):
        return JSONResponse({"code": code, "message": message, **extra}, status_code=status)
    title = FRIENDLY_TITLES.get(status, "Something went wrong")
    return render(request, "error.html", status=status, title=title, message=message, status_code=status)


def _status_of(exc: errors.StowageError) -> int:
    if isinstance(exc, errors.NotFound):
        return 404
    if isinstance(exc, errors.Forbidden):
        return 403
    if isinstance(exc, errors.Conflict | errors.StsUnavailable):
        return 409
    if isinstance(exc, errors.InvalidInput | errors.ValidationFailed):
        return 422
    if isinstance(exc, errors.CloudError):
        return 502
    return 400


class WebRoute(APIRoute):
    """A route that reads and writes the session cookie and turns every error into a friendly answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler."""
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            web = web_state(request)
            request.state.web_session = web.codec.loads(request.cookies.get(COOKIE))
            request.state.new_session = None
            request.state.clear_session = False
            try:
                response = await original(request)
            except LoginRequired as exc:
                response = _login_required(request, exc.message)
            except csrf.CsrfRejected:
                response = error_response(
                    request,
                    403,
                    "This form expired or did not come from a Stowage page, so nothing was changed. "
                    "Reload the page and try again.",
                    code="csrf_rejected",
                )
            except errors.Unauthenticated as exc:
                response = _login_required(request, exc.message)
            except errors.StowageError as exc:
                field = exc.details.get("field") if isinstance(exc.details, dict) else None
                response = error_response(request, _status_of(exc), exc.message, code=exc.code, field=field)
            except RequestValidationError:
                response = error_response(request, 400, "The request is missing something: reload the page.")
            except Exception as exc:  # the visitor sees a friendly page, the log gets the details
                log.error("unexpected error in the web UI: %s", type(exc).__name__, exc_info=exc)
                response = error_response(
                    request, 500, "Something went wrong inside Stowage; the error was logged. Try again in a moment."
                )
            if request.state.clear_session:
                web.codec.clear(request, response)
            elif request.state.new_session is not None:
                web.codec.write(request, response, request.state.new_session)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handler


def _login_required(request: Request, message: str) -> Response:
    if is_json_request(request):
        return JSONResponse(
            {"code": "unauthenticated", "message": message or "Your session ended: sign in again."}, status_code=401
        )
    # After signing in, come back to the page asked for; a form post cannot be replayed, so go home then.
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    url = "/login?next=" + quote(target, safe="")
    if message:
        request.state.clear_session = True
    return redirect(url)
