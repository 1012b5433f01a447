"""Project Settings → Clusters, the credential issuances page and agent access, over HTTP against a real server.

Register, rotate, revoke and delete through the pages; the agent token shown once and never again; roles,
CSRF, another tenant's project, bad input; the audit log (rows written straight into the server's database:
real issuances need STS, which ``test_clusters_live.py`` covers); agent access on the location pages.
"""

from __future__ import annotations

import html
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from stowage.services.tenancy import hash_token, new_external_id
from stowage.store.database import Database
from stowage.store.tables import Cluster, CredentialIssuance, Project, Tenant
from tests.web.support import (
    AGENT_TOKEN,
    WebClient,
    create_unverified,
    forms_of,
    heartbeat,
    location_form,
    register,
)

CLUSTERS = "/projects/default/settings/clusters"
ISSUANCES = "/projects/default/settings/credential-issuances"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# -- the list, registering, the token shown once ----------------------------------------------------------
def test_empty_state_invites_to_register_the_first_cluster(admin: WebClient) -> None:
    project = _unique("fresh")
    with admin.server.client() as api:
        assert api.post("/api/v1/projects", json={"name": project}).status_code == 201
    page = admin.get(f"/projects/{project}/settings/clusters")
    assert page.status_code == 200
    assert 'data-testid="empty-state"' in page.text
    assert "Register your first cluster" in page.text
    assert f'href="/projects/{project}/settings/clusters" aria-current="page">Clusters</a>' in page.text
    assert f'href="/projects/{project}/settings/credential-issuances"' in page.text
    assert 'name="csrf_token"' in page.text
    locations = admin.get(f"/projects/{project}/settings/backup-locations").text
    assert f'href="/projects/{project}/settings/clusters">Clusters</a>' in locations  # the tab next to it


def test_register_shows_the_token_once_with_the_command_and_never_again(admin: WebClient) -> None:
    cluster = register(admin, cloud_account_id="333333333333", region="eu-west-1")
    page = cluster.page.text
    assert "shown only once" in page
    assert 'data-copy="#agent-token"' in page
    assert f"stowage agent --server {admin.server.url} --token {cluster.token}" in html.unescape(page)
    assert 'data-copy="#agent-command"' in page
    assert cluster.page.headers["cache-control"] == "no-store"

    listing = admin.get(CLUSTERS)
    row = re.search(rf'<tr data-cluster="{cluster.name}">(.*?)</tr>', listing.text, flags=re.S)
    assert row, listing.text
    for text in ("333333333333", "eu-west-1", "Never connected", "badge-never"):
        assert text in row.group(1)
    # Nowhere again: not in the list, the cluster's page, its confirmation pages, the audit or the wizard.
    for path in (
        CLUSTERS,
        cluster.url,
        cluster.url + "/rotate-token",
        cluster.url + "/revoke-token",
        cluster.url + "/delete",
        ISSUANCES,
        "/projects/default/settings/backup-locations/new",
    ):
        shown = admin.get(path)
        assert shown.status_code == 200, path
        assert cluster.token not in shown.text, path
        assert AGENT_TOKEN.search(shown.text) is None, path
    detail = admin.get(cluster.url).text
    assert f"stwa_…{cluster.token[-4:]}" in detail  # the hint that tells tokens apart, nothing more
    # The token works for the agent.
    assert heartbeat(admin.server, cluster.token).status_code == 200


def test_status_badges_follow_the_heartbeats(admin: WebClient, server_db: Database) -> None:
    cluster = register(admin)
    assert heartbeat(admin.server, cluster.token, version="2.0.0-rc1").status_code == 200
    row = re.search(rf'<tr data-cluster="{cluster.name}">(.*?)</tr>', admin.get(CLUSTERS).text, flags=re.S)
    assert row
    assert "badge-connected" in row.group(1) and "Connected" in row.group(1)
    assert "2.0.0-rc1" in row.group(1)
    assert "just now" in row.group(1)
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">just now</time>', row.group(1))
    # Three missed heartbeats later (the default interval is 30 s) it is disconnected.
    with server_db.session() as session:
        row_db = session.scalar(select(Cluster).where(Cluster.name == cluster.name))
        assert row_db is not None
        row_db.last_heartbeat_at = datetime.now(UTC) - timedelta(minutes=7)
    row = re.search(rf'<tr data-cluster="{cluster.name}">(.*?)</tr>', admin.get(CLUSTERS).text, flags=re.S)
    assert row
    assert "badge-disconnected" in row.group(1) and "7 minutes ago" in row.group(1)


def test_bad_input_is_explained_under_the_field_not_a_500(admin: WebClient) -> None:
    admin.get(CLUSTERS)
    bad = admin.post(CLUSTERS, {"name": "Prod EU", "cloud_account_id": "1234", "region": ""})
    assert bad.status_code == 422
    text = html.unescape(bad.text)
    assert "Try 'prod-eu'" in text  # the domain rule's own suggestion
    assert 'data-problem-for="cloud_account_id"' in bad.text
    assert "12 digits" in text
    assert 'value="Prod EU"' in bad.text  # what was typed stays
    assert "Traceback" not in bad.text
    assert AGENT_TOKEN.search(bad.text) is None
    region = admin.post(CLUSTERS, {"name": _unique("r"), "region": "eu west 1"})
    assert region.status_code == 422
    assert re.search(r'data-problem-for="region"[^>]*>[^<]*region code', region.text)
    empty = admin.post(CLUSTERS, {"name": ""})
    assert empty.status_code == 422 and "Cluster name is required." in empty.text
    huge = admin.post(CLUSTERS, {"name": "x" * 100_000, "cloud_account_id": "9" * 5000})
    assert huge.status_code == 422
    assert len(huge.text) < 60_000  # the paste is cut, not echoed back in full
    taken = register(admin)
    again = admin.post(CLUSTERS, {"name": taken.name})
    assert again.status_code == 409
    assert "already exists" in again.text
    assert AGENT_TOKEN.search(again.text) is None


def test_rotate_revoke_and_delete(admin: WebClient) -> None:
    cluster = register(admin)
    confirm = admin.get(cluster.url + "/rotate-token")
    assert "stops working at once" in confirm.text
    rotated = admin.post(cluster.url + "/rotate-token")
    assert rotated.status_code == 200
    assert "shown only once" in rotated.text
    new_tokens = set(AGENT_TOKEN.findall(rotated.text))
    assert len(new_tokens) == 1
    new_token = new_tokens.pop()
    assert new_token != cluster.token
    assert heartbeat(admin.server, cluster.token).status_code == 401
    assert heartbeat(admin.server, new_token).status_code == 200
    assert new_token not in admin.get(cluster.url).text

    assert "refused from now on" in admin.get(cluster.url + "/revoke-token").text
    revoked = admin.post(cluster.url + "/revoke-token")
    assert revoked.status_code == 303
    assert revoked.headers["location"] == cluster.url + "?notice=token-revoked"
    detail = admin.get(revoked.headers["location"]).text
    assert "Agent token revoked" in detail
    assert "Token revoked" in detail
    assert "/revoke-token" not in detail  # nothing left to revoke; rotating lets it back in
    assert heartbeat(admin.server, new_token).status_code == 401
    assert "Token revoked" in admin.get(CLUSTERS).text

    assert "not touched" in admin.get(cluster.url + "/delete").text
    deleted = admin.post(cluster.url + "/delete")
    assert deleted.status_code == 303
    assert "Cluster deleted" in admin.get(deleted.headers["location"]).text
    gone = admin.get(cluster.url)
    assert gone.status_code == 404
    assert 'data-testid="error-message"' in gone.text
    assert admin.post(cluster.url + "/rotate-token").status_code == 404
    assert admin.get(cluster.url + "/nonsense").status_code == 404


def test_viewers_see_clusters_but_cannot_change_them(admin: WebClient, viewer: WebClient) -> None:
    cluster = register(admin)
    listing = viewer.get(CLUSTERS)
    assert listing.status_code == 200
    assert cluster.name in listing.text
    assert "Register a cluster" not in listing.text
    assert 'action="/projects/default/settings/clusters"' not in listing.text
    detail = viewer.get(cluster.url)
    assert detail.status_code == 200
    for action in ("Rotate token", "Revoke token", "/delete"):
        assert action not in detail.text
    assert viewer.get(ISSUANCES).status_code == 200
    for path in ("/rotate-token", "/revoke-token", "/delete"):
        page = viewer.get(cluster.url + path)
        assert page.status_code == 403
        assert "can look at clusters but not change them" in page.text
    viewer.get(CLUSTERS)  # a fresh CSRF token: the refusal is about the role, not the form
    refusals = {
        CLUSTERS: {"name": _unique("viewer-made")},
        cluster.url + "/rotate-token": {},
        cluster.url + "/revoke-token": {},
        cluster.url + "/delete": {},
    }
    for path, data in refusals.items():
        refused = viewer.post(path, data)
        assert refused.status_code == 403, path
        assert "can look at clusters but not" in refused.text
        assert "Ask an editor or admin" in refused.text
    # Nothing happened: the token still works and nothing was registered.
    assert heartbeat(admin.server, cluster.token).status_code == 200
    assert "viewer-made" not in admin.get(CLUSTERS).text


def test_every_cluster_form_carries_and_needs_its_csrf_token(admin: WebClient) -> None:
    cluster = register(admin)
    for path in (CLUSTERS, cluster.url + "/rotate-token", cluster.url + "/revoke-token", cluster.url + "/delete"):
        posts = [tag for method, tag in forms_of(admin.get(path).text) if method == "post"]
        assert posts, path
        assert all('name="csrf_token"' in tag for tag in posts), path
    attempts = {
        CLUSTERS: {"name": "made-by-csrf"},
        cluster.url + "/rotate-token": {},
        cluster.url + "/revoke-token": {},
        cluster.url + "/delete": {},
    }
    for path, data in attempts.items():
        assert admin.post(path, data, csrf=False).status_code == 403, path
        forged = admin.post(path, {**data, "csrf_token": "forged"}, csrf=False)
        assert forged.status_code == 403, path
        assert "did not come from a Stowage page" in forged.text
        assert AGENT_TOKEN.search(forged.text) is None
    assert heartbeat(admin.server, cluster.token).status_code == 200
    assert admin.get(cluster.url).status_code == 200
    assert "made-by-csrf" not in admin.get(CLUSTERS).text


def test_another_tenants_project_and_cluster_are_not_found(admin: WebClient, server_db: Database) -> None:
    with server_db.session() as session:
        tenant = Tenant(name=_unique("other"))
        session.add(tenant)
        session.flush()
        project = Project(tenant_id=tenant.id, name=_unique("secret"), external_id=new_external_id())
        session.add(project)
        session.flush()
        foreign = Cluster(
            project_id=project.id,
            name="their-cluster",
            token_hash=hash_token("stwa_" + secrets.token_urlsafe(32)),
            token_hint="abcd",
        )
        session.add(foreign)
        session.flush()
        project_name, project_id, cluster_id = project.name, project.id, foreign.id
    for ref in (project_name, project_id):
        for path in (
            f"/projects/{ref}/settings/clusters",
            f"/projects/{ref}/settings/clusters/{cluster_id}",
            f"/projects/{ref}/settings/clusters/{cluster_id}/delete",
            f"/projects/{ref}/settings/credential-issuances",
        ):
            page = admin.get(path)
            assert page.status_code == 404, path
            assert "their-cluster" not in page.text
    # Nor through the own project with the other tenant's cluster id, and no form reaches it.
    assert admin.get(f"{CLUSTERS}/{cluster_id}").status_code == 404
    admin.get(CLUSTERS)
    assert admin.post(f"{CLUSTERS}/{cluster_id}/delete").status_code == 404
    assert admin.post(f"/projects/{project_name}/settings/clusters", {"name": "sneaky"}).status_code == 404
    with server_db.session() as session:
        assert session.scalar(select(Cluster.id).where(Cluster.id == cluster_id)) is not None
        assert session.scalar(select(Cluster.id).where(Cluster.name == "sneaky")) is None


# -- the audit log ------------------------------------------------------------------------------------------
def _audit_rows(
    server_db: Database, project: str, location: tuple[str, str], cluster: tuple[str, str], count: int
) -> None:
    """Issuances as the vending service writes them: one a minute, the newest now."""
    now = datetime.now(UTC)
    with server_db.session() as session:
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        assert project_id
        for n in range(count):
            session.add(
                CredentialIssuance(
                    project_id=project_id,
                    cluster_id=cluster[0],
                    cluster_name=cluster[1],
                    location_id=location[0],
                    location_name=location[1],
                    access_key_id_prefix=f"ASIA{n:04d}",
                    expires_at=now - timedelta(minutes=n) + timedelta(hours=1),
                    issued_at=now - timedelta(minutes=n),
                )
            )


def test_issuances_newest_first_paginated_and_filtered_by_location(admin: WebClient, server_db: Database) -> None:
    project = _unique("audit")
    with admin.server.client() as api:
        assert api.post("/api/v1/projects", json={"name": project}).status_code == 201
    empty = admin.get(f"/projects/{project}/settings/credential-issuances")
    assert empty.status_code == 200
    assert "No credentials issued yet" in empty.text
    location = create_unverified(admin, project=project, name="primary")
    location_id = location.rsplit("/", 1)[1]
    cluster = register(admin, project=project, name="prod-eu")
    cluster_id = cluster.url.rsplit("/", 1)[1]
    _audit_rows(server_db, project, (location_id, "primary"), (cluster_id, "prod-eu"), 55)
    _audit_rows(server_db, project, (str(uuid.uuid4()), "archive-gone"), (str(uuid.uuid4()), "old-cluster"), 1)

    base = f"/projects/{project}/settings/credential-issuances"
    first = admin.get(base)
    assert first.status_code == 200
    keys = re.findall(r"<code>(ASIA\d{4})…</code>", first.text)
    assert len(keys) == 50
    assert keys[:2] in (["ASIA0000", "ASIA0000"], ["ASIA0000", "ASIA0001"])  # newest first
    assert "Brokered" in first.text and "Expires" in first.text
    assert "archive-gone" in first.text  # names stay after a location or cluster is deleted
    older = re.search(r'href="([^"]+offset=50)">Older</a>', first.text)
    assert older
    second = admin.get(html.unescape(older.group(1)))
    assert len(re.findall(r"<code>ASIA\d{4}…</code>", second.text)) == 6
    assert "Newer" in second.text and "Older" not in second.text

    # The location's page links to its own issuances; the filter leaves the other location out.
    detail = admin.get(location).text
    link = re.search(r'href="([^"]+)" data-testid="location-issuances"', detail)
    assert link
    assert html.unescape(link.group(1)) == f"{base}?location={location_id}"
    only = admin.get(html.unescape(link.group(1)))
    assert "Showing only location “primary”" in only.text
    assert "archive-gone" not in only.text
    by_cluster = admin.get(base, params={"cluster": cluster_id, "offset": "50"})
    assert len(re.findall(r"<code>ASIA\d{4}…</code>", by_cluster.text)) == 5
    assert "cluster “prod-eu”" in by_cluster.text
    assert f"{base}?cluster={cluster_id}" in html.unescape(admin.get(cluster.url).text)
    assert base in admin.get(f"/projects/{project}/settings/clusters").text
    for odd in ({"offset": "-5"}, {"offset": "many"}, {"location": "x" * 5000}):
        assert admin.get(base, params=odd).status_code == 200


# -- agent access on the location pages -----------------------------------------------------------------------
def test_agent_access_is_chosen_in_the_wizard_shown_and_edited(admin: WebClient) -> None:
    name = _unique("direct")
    detail = create_unverified(admin, name=name, agent_access="direct")
    page = admin.get(detail).text
    assert re.search(r'data-testid="agent-access">Direct<', page)
    assert "assumes this role itself" in page
    edit = admin.get(detail + "/edit").text
    assert 'name="agent_access" value="direct" checked' in edit
    form = {**location_form(name), "secret_access_key": ""}
    switched = admin.post(detail + "/edit", {**form, "agent_access": "brokered"})
    assert switched.status_code == 303, switched.text
    assert re.search(r'data-testid="agent-access">Brokered<', admin.get(detail).text)
    nonsense = admin.post(detail + "/edit", {**form, "agent_access": "sideways"})
    assert nonsense.status_code == 422
    assert "Choose brokered or direct" in nonsense.text
    brokered = create_unverified(admin, name=_unique("default-mode"))
    assert re.search(r'data-testid="agent-access">Brokered<', admin.get(brokered).text)
    wrong = admin.post_json(
        "/ui/projects/default/backup-locations", {**location_form("sideways"), "agent_access": "sideways"}
    )
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "agent_access"


def test_inline_checks_ask_for_account_a_only_in_direct_mode(admin: WebClient) -> None:
    admin.get("/projects/default/settings/backup-locations/new")
    url = "/ui/projects/default/backup-locations/check"
    direct = admin.post_json(url, location_form(agent_access="direct", cluster_trust="account")).json()
    assert "cluster_account_id" in direct["problems"]
    brokered = admin.post_json(url, location_form(agent_access="brokered", cluster_trust="account")).json()
    assert brokered["problems"] == {}
    bad = admin.post_json(url, location_form(agent_access="sideways")).json()
    assert "agent_access" in bad["problems"]
    # Without an AWS identity there are no policies to show, whatever the mode: a friendly JSON error.
    policies = admin.get("/ui/projects/default/policies", params={"bucket": "b-123", "agent_access": "direct"})
    assert policies.status_code in {409, 422}
    assert "message" in policies.json()
