"""Project Settings → General (External ID rotation), Settings → Projects and API tokens, and the cluster page's
trust policies, over HTTP against a real server (no AWS identity: STS is unavailable and the pages say why).

Roles (viewers and editors refused for admin actions), CSRF on every new form, the API token shown once and
never again, bad input explained under its field, another tenant's project not found.
"""

from __future__ import annotations

import html
import re
import secrets
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from stowage.services.tenancy import hash_token, new_external_id
from stowage.store.database import Database
from stowage.store.tables import ApiToken, Project, Tenant
from tests.support.servers import StowageServer
from tests.web.support import WebClient, forms_of, register

# An API token as created here ("stw_" + 43 URL-safe characters); agent tokens ("stwa_") and hints don't match.
API_TOKEN = re.compile(r"stw_[A-Za-z0-9_-]{40,}")
TOKENS = "/settings/tokens"
PROJECTS = "/settings/projects"
ROLE_ARN = "arn:aws:iam::222222222222:role/stowage-{}"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _general(project: str) -> str:
    return f"/projects/{project}/settings/general"


def _project(server: StowageServer) -> str:
    """A fresh project (through the API), so counts and External IDs belong to one test."""
    name = _unique("proj")
    with server.client() as api:
        assert api.post("/api/v1/projects", json={"name": name}).status_code == 201
    return name


def _location(server: StowageServer, project: str, name: str, *, sts: bool = True, direct: bool = False) -> str:
    """A location saved through the API without the live checks; returns its id."""
    credentials: dict[str, str] = (
        {"type": "sts", "roleArn": ROLE_ARN.format(name)}
        if sts
        else {"type": "static", "accessKeyId": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": "s" * 40}
    )
    body: dict[str, Any] = {
        "name": name,
        "bucket": f"bucket-{uuid.uuid4().hex[:8]}",
        "region": "eu-west-1",
        "credentials": credentials,
        "agentAccess": "direct" if direct else "brokered",
        "skipValidation": True,
    }
    with server.client() as api:
        created = api.post(f"/api/v1/projects/{project}/backup-locations", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _external_id(server: StowageServer, project: str) -> str:
    with server.client() as api:
        answer = api.get(f"/api/v1/projects/{project}")
    assert answer.status_code == 200
    return str(answer.json()["externalId"])


def _foreign_project(server_db: Database) -> tuple[str, str, str]:
    """A project of another tenant: (name, id, External ID)."""
    with server_db.session() as session:
        tenant = Tenant(name=_unique("other"))
        session.add(tenant)
        session.flush()
        project = Project(tenant_id=tenant.id, name=_unique("secret"), external_id=new_external_id())
        session.add(project)
        session.flush()
        return project.name, project.id, project.external_id


# -- Project Settings → General -----------------------------------------------------------------------------
def test_general_page_shows_name_external_id_and_why_sts_is_unavailable(admin: WebClient, viewer: WebClient) -> None:
    project = _project(admin.server)
    external_id = _external_id(admin.server, project)
    page = admin.get(_general(project))
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert re.search(rf'data-testid="project-name">{project}<', page.text)
    assert f'data-testid="external-id">{external_id}</code>' in text
    assert 'data-copy="#external-id"' in page.text
    assert 'data-testid="sts-unavailable"' in page.text and "STS method is unavailable" in text
    assert 'data-testid="account-id"' not in page.text
    # General is the first entry of the side menu, and the current one here.
    menu = re.search(r'<aside class="sidenav".*?</aside>', page.text, flags=re.S)
    assert menu
    entries = re.findall(r'<a href="([^"]+)"', menu.group(0))
    assert entries[0] == _general(project)
    assert f'href="{_general(project)}" aria-current="page">General</a>' in page.text
    assert 'href="' + _general(project) + '/rotate-external-id"' in page.text
    # Viewers read it, without the rotate action.
    seen = viewer.get(_general(project))
    assert seen.status_code == 200
    assert external_id in seen.text
    assert "rotate-external-id" not in seen.text
    assert "Only admins may rotate the External ID." in seen.text


def test_rotating_the_external_id_warns_names_the_locations_and_changes_it(admin: WebClient) -> None:
    project = _project(admin.server)
    _location(admin.server, project, "alpha")
    _location(admin.server, project, "beta", direct=True)
    _location(admin.server, project, "keys-only", sts=False)
    before = _external_id(admin.server, project)

    confirm = admin.get(_general(project) + "/rotate-external-id")
    assert confirm.status_code == 200
    text = html.unescape(confirm.text)
    assert "Every IAM role that trusts the current External ID stops working" in text
    assert re.search(r'data-testid="affected-count">2 STS locations of this project are affected', text)
    affected = re.search(r'<ul data-testid="affected">(.*?)</ul>', confirm.text, flags=re.S)
    assert affected
    assert "alpha" in affected.group(1) and "beta" in affected.group(1)
    assert "keys-only" not in affected.group(1)  # static keys don't use the External ID
    assert _external_id(admin.server, project) == before  # looking is not rotating

    rotated = admin.post(_general(project) + "/rotate-external-id")
    assert rotated.status_code == 303
    assert rotated.headers["location"] == _general(project) + "?notice=external-id-rotated"
    after = _external_id(admin.server, project)
    assert after != before
    assert len(after) >= 43
    page = admin.get(rotated.headers["location"])
    text = html.unescape(page.text)
    assert f'data-testid="external-id">{after}</code>' in text
    assert before not in text
    assert "update the sts:ExternalId condition of their trust policies, then re-validate" in text
    listed = re.search(r'<ul data-testid="affected">(.*?)</ul>', page.text, flags=re.S)
    assert listed and "alpha" in listed.group(1) and "beta" in listed.group(1)
    assert "Re-validate now" in text
    # The plain page no longer carries the after-rotation advice.
    assert 'data-testid="rotated"' not in admin.get(_general(project)).text

    empty = _project(admin.server)
    none = admin.get(_general(empty) + "/rotate-external-id").text
    assert "No STS location of this project uses the External ID yet" in none


def test_only_admins_rotate_the_external_id(admin: WebClient, viewer: WebClient, editor: WebClient) -> None:
    project = _project(admin.server)
    before = _external_id(admin.server, project)
    for client in (viewer, editor):
        page = client.get(_general(project) + "/rotate-external-id")
        assert page.status_code == 403
        assert "Only admins may rotate the External ID" in page.text
        client.get(_general(project))  # a fresh CSRF token: the refusal is about the role, not the form
        refused = client.post(_general(project) + "/rotate-external-id")
        assert refused.status_code == 403
        assert "Ask an admin" in refused.text
    assert _external_id(admin.server, project) == before


def test_the_rotate_form_needs_its_csrf_token(admin: WebClient) -> None:
    project = _project(admin.server)
    before = _external_id(admin.server, project)
    posts = [
        tag for method, tag in forms_of(admin.get(_general(project) + "/rotate-external-id").text) if method == "post"
    ]
    assert posts and all('name="csrf_token"' in tag for tag in posts)
    assert admin.post(_general(project) + "/rotate-external-id", csrf=False).status_code == 403
    forged = admin.post(_general(project) + "/rotate-external-id", {"csrf_token": "forged"}, csrf=False)
    assert forged.status_code == 403
    assert "did not come from a Stowage page" in forged.text
    assert _external_id(admin.server, project) == before


def test_another_tenants_project_is_not_found(admin: WebClient, server_db: Database) -> None:
    name, project_id, external_id = _foreign_project(server_db)
    for ref in (name, project_id):
        for path in (_general(ref), _general(ref) + "/rotate-external-id"):
            page = admin.get(path)
            assert page.status_code == 404, path
            assert external_id not in page.text
        admin.get(PROJECTS)
        assert admin.post(_general(ref) + "/rotate-external-id").status_code == 404
    with server_db.session() as session:
        assert session.scalar(select(Project.external_id).where(Project.id == project_id)) == external_id
    assert name not in admin.get(PROJECTS).text


# -- Settings → Projects -----------------------------------------------------------------------------------
def test_admins_create_a_project_and_land_on_its_backup_locations(admin: WebClient) -> None:
    header = admin.get("/projects/default/settings/backup-locations").text
    assert 'href="/settings/projects#new-project" data-testid="new-project">New project</a>' in header
    page = admin.get(PROJECTS)
    assert page.status_code == 200
    assert 'id="new-project"' in page.text
    name = _unique("team")
    created = admin.post(PROJECTS, {"name": f"  {name} "})
    assert created.status_code == 303
    assert created.headers["location"] == f"/projects/{name}/settings/backup-locations?notice=project-created"
    landing = admin.get(created.headers["location"])
    assert landing.status_code == 200
    assert "Project created" in landing.text
    assert f'<option value="{name}" selected>' in landing.text  # the switcher is on the new project
    with admin.server.client() as api:
        assert name in [p["name"] for p in api.get("/api/v1/projects").json()]
    assert f'<tr data-project="{name}">' in admin.get(PROJECTS).text


def test_bad_project_names_are_explained_under_the_field(admin: WebClient) -> None:
    admin.get(PROJECTS)
    bad = admin.post(PROJECTS, {"name": "Team A"})
    assert bad.status_code == 422
    text = html.unescape(bad.text)
    assert re.search(r'data-problem-for="name"[^>]*>[^<]*uppercase letters', text)
    assert 'Did you mean "team-a"?' in text
    assert 'value="Team A"' in bad.text  # what was typed stays
    empty = admin.post(PROJECTS, {"name": ""})
    assert empty.status_code == 422 and "The project name is empty" in empty.text
    huge = admin.post(PROJECTS, {"name": "x" * 100_000})
    assert huge.status_code == 422
    assert len(huge.text) < 60_000
    taken = admin.post(PROJECTS, {"name": "default"})
    assert taken.status_code == 409
    assert re.search(r'data-problem-for="name"[^>]*>[^<]*already exists', html.unescape(taken.text))
    for page in (bad, empty, huge, taken):
        assert "Traceback" not in page.text


def test_viewers_and_editors_cannot_create_projects(admin: WebClient, viewer: WebClient, editor: WebClient) -> None:
    for client in (viewer, editor):
        header = client.get("/projects/default/settings/backup-locations").text
        assert 'data-testid="new-project"' not in header
        page = client.get(PROJECTS)
        assert page.status_code == 200  # the list is what the switcher shows anyway
        assert 'action="/settings/projects"' not in page.text
        assert "Only admins may add projects." in page.text
        name = _unique("sneaky")
        refused = client.post(PROJECTS, {"name": name})
        assert refused.status_code == 403
        assert "Only admins may add projects" in refused.text
        assert name not in admin.get(PROJECTS).text


def test_the_project_form_needs_its_csrf_token(admin: WebClient) -> None:
    posts = [tag for method, tag in forms_of(admin.get(PROJECTS).text) if method == "post"]
    assert posts and all('name="csrf_token"' in tag for tag in posts)
    name = _unique("csrf")
    assert admin.post(PROJECTS, {"name": name}, csrf=False).status_code == 403
    assert admin.post(PROJECTS, {"name": name, "csrf_token": "forged"}, csrf=False).status_code == 403
    assert name not in admin.get(PROJECTS).text


def test_tenant_settings_are_linked_together(admin: WebClient) -> None:
    for path in ("/settings/users", PROJECTS, TOKENS):
        page = admin.get(path)
        assert page.status_code == 200, path
        menu = re.search(r'<aside class="sidenav".*?</aside>', page.text, flags=re.S)
        assert menu, path
        for link in ("/settings/users", PROJECTS, TOKENS):
            assert f'href="{link}"' in menu.group(0), (path, link)
        assert f'href="{path}" aria-current="page"' in menu.group(0)


# -- Settings → API tokens ----------------------------------------------------------------------------------
def _create_token(client: WebClient, name: str, role: str = "viewer") -> tuple[str, httpx.Response]:
    client.get(TOKENS)
    page = client.post(TOKENS, {"name": name, "role": role})
    assert page.status_code == 201, page.text
    found = set(API_TOKEN.findall(page.text))
    assert len(found) == 1
    return found.pop(), page


def _row(page: str, name: str) -> str:
    for match in re.finditer(r'<tr data-token="([^"]+)">(.*?)</tr>', page, flags=re.S):
        if f'<span class="strong">{name}</span>' in match.group(2):
            return match.group(0)
    raise AssertionError(f"no row for token {name}")


def test_a_new_api_token_is_shown_once_and_never_again(admin: WebClient) -> None:
    name = _unique("ci")
    token, page = _create_token(admin, name, role="editor")
    text = html.unescape(page.text)
    assert "shown only once" in text
    assert 'data-copy="#api-token"' in page.text and 'data-copy="#token-commands"' in page.text
    assert f"export STOWAGE_TOKEN={token}" in text
    assert f"export STOWAGE_SERVER={admin.server.url}" in text
    assert page.headers["cache-control"] == "no-store"
    # It works, with its role.
    with admin.server.client(token) as api:
        assert api.get("/api/v1/projects").status_code == 200
        assert api.get("/api/v1/tokens").status_code == 403  # an editor token manages no tokens
    row = _row(admin.get(TOKENS).text, name)
    assert f"stw_…{token[-4:]}" in row and "editor" in row
    assert "just now" in row  # last used
    token_id = re.search(r'data-token="([^"]+)"', row)
    assert token_id
    # Never again: not in the list, its confirmation page or any other page.
    for path in (
        TOKENS,
        f"{TOKENS}/{token_id.group(1)}/revoke",
        "/settings/users",
        PROJECTS,
        "/account",
        _general("default"),
        "/projects/default/settings/backup-locations",
    ):
        shown = admin.get(path)
        assert shown.status_code == 200, path
        assert token not in shown.text, path
        assert API_TOKEN.search(shown.text) is None, path


def test_revoking_a_token_asks_first_and_then_refuses_it(admin: WebClient) -> None:
    name = _unique("old")
    token, _ = _create_token(admin, name)
    row = _row(admin.get(TOKENS).text, name)
    revoke = re.search(r'href="(/settings/tokens/[^"]+/revoke)"', row)
    assert revoke
    confirm = admin.get(revoke.group(1))
    assert confirm.status_code == 200
    assert "refused from now on" in confirm.text
    assert f"stw_…{token[-4:]}" in confirm.text
    with admin.server.client(token) as api:
        assert api.get("/api/v1/projects").status_code == 200  # looking is not revoking
    done = admin.post(revoke.group(1))
    assert done.status_code == 303
    assert done.headers["location"] == TOKENS + "?notice=api-token-revoked"
    listing = admin.get(done.headers["location"]).text
    assert "API token revoked" in listing
    row = _row(listing, name)
    assert "Revoked" in row and "/revoke" not in row
    with admin.server.client(token) as api:
        assert api.get("/api/v1/projects").status_code == 401
    assert "already revoked" in admin.get(revoke.group(1)).text
    assert admin.get(f"{TOKENS}/{uuid.uuid4()}/revoke").status_code == 404
    admin.get(TOKENS)
    assert admin.post(f"{TOKENS}/{uuid.uuid4()}/revoke").status_code == 404


def test_bad_token_input_is_explained_under_the_field(admin: WebClient) -> None:
    admin.get(TOKENS)
    empty = admin.post(TOKENS, {"name": "  ", "role": "viewer"})
    assert empty.status_code == 422
    assert re.search(r'data-problem-for="name"[^>]*>[^<]*Give the token a name', empty.text)
    role = admin.post(TOKENS, {"name": "odd-role", "role": "root"})
    assert role.status_code == 422
    assert re.search(r'data-problem-for="role"[^>]*>Choose a role', role.text)
    assert 'value="odd-role"' in role.text
    long = admin.post(TOKENS, {"name": "n" * 150, "role": "viewer"})
    assert long.status_code == 422
    assert re.search(r'data-problem-for="name"[^>]*>[^<]*1–100 characters', long.text)
    for page in (empty, role, long):
        assert API_TOKEN.search(page.text) is None
        assert "Traceback" not in page.text
    assert "odd-role" not in admin.get(TOKENS).text


def test_viewers_and_editors_cannot_see_or_change_tokens(
    admin: WebClient, viewer: WebClient, editor: WebClient
) -> None:
    name = _unique("kept")
    token, _ = _create_token(admin, name)
    token_id = re.search(r'data-token="([^"]+)"', _row(admin.get(TOKENS).text, name))
    assert token_id
    revoke = f"{TOKENS}/{token_id.group(1)}/revoke"
    for client in (viewer, editor):
        assert 'href="/settings/tokens"' not in client.get(PROJECTS).text
        for path in (TOKENS, revoke):
            page = client.get(path)
            assert page.status_code == 403, path
            assert "Only admins may" in page.text
            assert name not in page.text
        client.get(PROJECTS)  # a fresh CSRF token: the refusal is about the role, not the form
        made = _unique("made")
        created = client.post(TOKENS, {"name": made, "role": "admin"})
        assert created.status_code == 403
        assert API_TOKEN.search(created.text) is None
        assert client.post(revoke).status_code == 403
        assert made not in admin.get(TOKENS).text
    with admin.server.client(token) as api:
        assert api.get("/api/v1/projects").status_code == 200


def test_token_forms_need_their_csrf_token(admin: WebClient) -> None:
    name = _unique("keep")
    token, _ = _create_token(admin, name)
    token_id = re.search(r'data-token="([^"]+)"', _row(admin.get(TOKENS).text, name))
    assert token_id
    revoke = f"{TOKENS}/{token_id.group(1)}/revoke"
    for path in (TOKENS, revoke):
        posts = [tag for method, tag in forms_of(admin.get(path).text) if method == "post"]
        assert posts and all('name="csrf_token"' in tag for tag in posts), path
    made = _unique("csrf")
    for path, data in ((TOKENS, {"name": made, "role": "admin"}), (revoke, {})):
        assert admin.post(path, data, csrf=False).status_code == 403, path
        forged = admin.post(path, {**data, "csrf_token": "forged"}, csrf=False)
        assert forged.status_code == 403
        assert API_TOKEN.search(forged.text) is None
    assert made not in admin.get(TOKENS).text
    with admin.server.client(token) as api:
        assert api.get("/api/v1/projects").status_code == 200


def test_another_tenants_token_is_not_found(admin: WebClient, server_db: Database) -> None:
    with server_db.session() as session:
        tenant = Tenant(name=_unique("other"))
        session.add(tenant)
        session.flush()
        row = ApiToken(
            tenant_id=tenant.id,
            name="their-token",
            role="admin",
            token_hash=hash_token("stw_" + secrets.token_urlsafe(32)),
            hint="wxyz",
        )
        session.add(row)
        session.flush()
        token_id = row.id
    assert "their-token" not in admin.get(TOKENS).text
    assert admin.get(f"{TOKENS}/{token_id}/revoke").status_code == 404
    admin.get(TOKENS)
    assert admin.post(f"{TOKENS}/{token_id}/revoke").status_code == 404
    with server_db.session() as session:
        assert session.scalar(select(ApiToken.revoked_at).where(ApiToken.id == token_id)) is None


# -- the cluster page's trust policies (no AWS identity here; test_clusters_live.py shows real ones) ----------
def test_cluster_page_says_what_direct_access_needs(admin: WebClient) -> None:
    project = _project(admin.server)
    _location(admin.server, project, "brokered-one")
    cluster = register(admin, project=project, cloud_account_id="333333333333")
    page = admin.get(cluster.url).text
    assert "brokered locations need no trust for this cluster" in page
    assert 'data-testid="trust-policy"' not in page

    _location(admin.server, project, "direct-one", direct=True)
    _location(admin.server, project, "direct-keys", sts=False, direct=True)
    page = admin.get(cluster.url).text
    assert 'data-testid="trust-unavailable"' in page
    assert "STS method is unavailable" in html.unescape(page)
    assert "direct-keys: static keys, so there is no role to trust" in page

    accountless = register(admin, project=project)
    page = admin.get(accountless.url).text
    assert 'data-testid="needs-account"' in page
    assert "register it again with its 12-digit account ID" in page
    assert "direct-one" in page
