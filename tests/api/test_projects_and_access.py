"""Projects, tokens, roles and tenancy through a real uvicorn server (``stowage serve``)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from stowage.domain.access import Role
from stowage.services.tenancy import hash_token, new_external_id
from stowage.store.database import Database
from stowage.store.tables import ApiToken, Project, Tenant
from tests.support.servers import StowageServer


def _token(server: StowageServer, role: str, name: str | None = None) -> str:
    with server.client() as http:
        answer = http.post("/api/v1/tokens", json={"name": name or f"t-{role}", "role": role})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["token"].startswith("stw_") and body["role"] == role
    return str(body["token"])


def test_first_start_creates_default_tenant_project_and_admin(server: StowageServer) -> None:
    with server.client() as http:
        projects = http.get("/api/v1/projects").json()
    assert [p["name"] for p in projects] == ["default"]
    assert len(projects[0]["externalId"]) >= 43  # 32 random bytes, URL-safe


def test_generated_admin_token_is_stored_0600_and_never_logged(server_factory) -> None:  # type: ignore[no-untyped-def]
    srv = server_factory(extra_env={"STOWAGE_ADMIN_TOKEN": ""})
    token_file = srv.data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    # Shown only on a terminal; a collected log says where it is, never what it is (docs/operations.md, Logs).
    log = srv.log.read_text()
    assert token not in log and str(token_file) in log
    with srv.client(token) as http:
        assert http.get("/api/v1/projects").status_code == 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, "Missing bearer token"), ("Bearer nope", "Unknown token"), ("Basic abc", "Missing bearer token")],
)
def test_unauthenticated_calls_get_401(server: StowageServer, header: str | None, expected: str) -> None:
    import httpx

    headers = {"Authorization": header} if header else {}
    answer = httpx.get(f"{server.url}/api/v1/projects", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthenticated" and expected in answer.json()["message"]


def test_roles_are_enforced_on_every_kind_of_endpoint(server: StowageServer) -> None:
    viewer, editor = _token(server, "viewer"), _token(server, "editor")
    body = {
        "name": "roles",
        "bucket": "roles-bucket",
        "region": "us-east-1",
        "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/r"},
        "skipValidation": True,
    }
    with server.client(viewer) as http:
        assert http.get("/api/v1/projects").status_code == 200
        assert http.get("/api/v1/projects/default/backup-locations").status_code == 200
        denied = http.post("/api/v1/projects/default/backup-locations", json=body)
        assert denied.status_code == 403 and "viewer" in denied.json()["message"]
        assert http.post("/api/v1/projects", json={"name": "nope"}).status_code == 403
        assert http.get("/api/v1/tokens").status_code == 403
    with server.client(editor) as http:
        assert http.post("/api/v1/projects", json={"name": "nope"}).status_code == 403
        assert http.post("/api/v1/projects/default/external-id/rotate").status_code == 403
        # skipValidation is for admins only.
        assert http.post("/api/v1/projects/default/backup-locations", json=body).status_code == 403
        assert http.post("/api/v1/tokens", json={"name": "x", "role": "admin"}).status_code == 403


def test_revoked_token_gets_401(server: StowageServer) -> None:
    token = _token(server, "viewer", name="to-revoke")
    with server.client() as http:
        token_id = next(t["id"] for t in http.get("/api/v1/tokens").json() if t["name"] == "to-revoke")
        revoked = http.delete(f"/api/v1/tokens/{token_id}")
        assert revoked.status_code == 200 and revoked.json()["revokedAt"]
        assert "token" not in revoked.json()  # the secret is shown only once, at creation
    with server.client(token) as http:
        answer = http.get("/api/v1/projects")
    assert answer.status_code == 401 and "revoked" in answer.json()["message"]


def test_projects_create_duplicate_invalid_and_rotation(server: StowageServer) -> None:
    with server.client() as http:
        created = http.post("/api/v1/projects", json={"name": "team-a"})
        assert created.status_code == 201
        again = http.post("/api/v1/projects", json={"name": "team-a"})
        assert again.status_code == 409 and again.json()["code"] == "conflict"
        bad = http.post("/api/v1/projects", json={"name": "Team A!"})
        assert bad.status_code == 422 and bad.json()["details"]["field"] == "name"
        by_id = http.get(f"/api/v1/projects/{created.json()['id']}")
        assert by_id.json()["name"] == "team-a"
        rotated = http.post("/api/v1/projects/team-a/external-id/rotate").json()
        assert rotated["project"]["externalId"] != created.json()["externalId"]
        assert "breaks" in rotated["warning"] or "refuses" in rotated["warning"]


def test_a_project_of_another_tenant_is_404(server: StowageServer) -> None:
    """Tenants have no API yet: the second tenant is written straight into the server's database."""
    db = Database(f"sqlite:///{server.data_dir / 'stowage.db'}")
    other_token = "stw_other_tenant_token_0123456789"
    with db.session() as session:
        tenant = Tenant(name="other")
        session.add(tenant)
        session.flush()
        session.add(Project(tenant_id=tenant.id, name="secret-project", external_id=new_external_id()))
        session.add(
            ApiToken(
                tenant_id=tenant.id, name="o", role=Role.ADMIN.value, token_hash=hash_token(other_token), hint="6789"
            )
        )
    with db.session() as session:
        foreign_id = session.scalar(select(Project.id).where(Project.name == "secret-project"))
    db.dispose()
    with server.client() as http:
        assert http.get("/api/v1/projects/secret-project").status_code == 404
        assert http.get(f"/api/v1/projects/{foreign_id}/backup-locations").status_code == 404
        assert "secret-project" not in http.get("/api/v1/projects").text
    with server.client(other_token) as http:
        assert [p["name"] for p in http.get("/api/v1/projects").json()] == ["secret-project"]
        assert http.get("/api/v1/projects/default").status_code == 404


def test_sts_without_aws_identity_is_409_with_reason(server: StowageServer) -> None:
    with server.client() as http:
        answer = http.get("/api/v1/projects/default/sts")
        policies = http.get("/api/v1/projects/default/policies", params={"bucket": "my-bucket"})
    assert answer.status_code == 409
    body = answer.json()
    assert body["code"] == "sts_unavailable"
    assert "STS method is unavailable" in body["message"]
    assert body["details"]["reason"] in {"cloud_credentials_missing", "cloud_endpoint_error"}
    # The permission policy needs no identity (static keys use it too); only the trust policy is absent.
    assert policies.status_code == 200, policies.text
    served = policies.json()
    assert served["permissionPolicy"]["Statement"]
    assert served["trustPolicy"] is None
    assert "STS method is unavailable" in served["trustPolicyUnavailable"]


def test_openapi_is_served(server: StowageServer) -> None:
    with server.client() as http:
        spec = http.get("/openapi.json").json()
    assert "/api/v1/projects/{project}/backup-locations" in spec["paths"]
