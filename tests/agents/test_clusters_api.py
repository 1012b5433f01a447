"""Cluster and agent endpoints through a real server (SQLite, no AWS identity): registration, tokens, roles,
heartbeats, and every refusal of the vending endpoint that needs no AWS."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.agents.helpers import agent_client, create_location, register
from tests.support.servers import StowageServer

CLUSTERS = "/api/v1/projects/default/clusters"


@pytest.fixture
def http(server: StowageServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
        for item in client.get(CLUSTERS).json()["items"]:
            client.delete(f"{CLUSTERS}/{item['id']}")
        for item in client.get("/api/v1/projects/default/backup-locations", params={"limit": 500}).json()["items"]:
            client.delete(f"/api/v1/projects/default/backup-locations/{item['id']}")


def token_for(http: httpx.Client, role: str) -> str:
    answer = http.post("/api/v1/tokens", json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_register_shows_the_token_once_and_stores_only_its_hash(http: httpx.Client, server: StowageServer) -> None:
    created = register(http, "prod-eu", cloudAccountId="333333333333", region="eu-west-1")
    token = created["agentToken"]
    assert token.startswith("stwa_") and len(token) > 40
    assert created["name"] == "prod-eu" and created["status"] == "disconnected"
    assert created["cloudAccountId"] == "333333333333" and created["tokenHint"] == token[-4:]
    shown = http.get(f"{CLUSTERS}/{created['id']}").json()
    assert "agentToken" not in shown and token not in str(shown)
    assert http.get(f"{CLUSTERS}/prod-eu").json()["id"] == created["id"]  # by name too
    with sqlite3.connect(server.data_dir / "stowage.db") as db:
        (stored,) = db.execute("SELECT token_hash FROM clusters WHERE id = ?", (created["id"],)).fetchone()
    assert stored == hashlib.sha256(token.encode()).hexdigest()


def test_register_rejects_bad_input_and_duplicates(http: httpx.Client) -> None:
    register(http, "dup")
    again = http.post(CLUSTERS, json={"name": "dup"})
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    bad_name = http.post(CLUSTERS, json={"name": "Prod EU"})
    assert bad_name.status_code == 422 and bad_name.json()["details"]["field"] == "name"
    assert "prod-eu" in bad_name.json()["message"]  # a suggestion
    bad_account = http.post(CLUSTERS, json={"name": "ok", "cloudAccountId": "1234"})
    assert bad_account.status_code == 422 and bad_account.json()["details"]["field"] == "cloudAccountId"
    assert http.post(CLUSTERS, json={"name": "x", "unknown": 1}).status_code == 422
    assert http.get(f"{CLUSTERS}/nope").status_code == 404
    assert http.post("/api/v1/projects/nope/clusters", json={"name": "a"}).status_code == 404


def test_editors_manage_clusters_viewers_only_read(http: httpx.Client, server: StowageServer) -> None:
    viewer, editor = token_for(http, "viewer"), token_for(http, "editor")
    with server.client(editor) as as_editor, server.client(viewer) as as_viewer:
        created = register(as_editor, "edited")
        assert as_viewer.post(CLUSTERS, json={"name": "nope"}).status_code == 403
        assert as_viewer.get(CLUSTERS).json()["total"] == 1
        assert as_viewer.get(f"{CLUSTERS}/edited").status_code == 200
        assert as_viewer.post(f"{CLUSTERS}/edited/rotate-token").status_code == 403
        assert as_viewer.post(f"{CLUSTERS}/edited/revoke-token").status_code == 403
        assert as_viewer.delete(f"{CLUSTERS}/edited").status_code == 403
        assert as_viewer.get("/api/v1/projects/default/credential-issuances").status_code == 200
        assert as_editor.post(f"{CLUSTERS}/{created['id']}/rotate-token").status_code == 200
        assert as_editor.delete(f"{CLUSTERS}/{created['id']}").status_code == 204


def test_heartbeat_reports_status_and_accepts_bearer_or_raw_token(http: httpx.Client, server: StowageServer) -> None:
    created = register(http, "beating")
    with agent_client(server, created["agentToken"]) as agent:
        answer = agent.post("/api/v1/agent/heartbeat", json={"version": "1.2.3"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {
        "clusterId": created["id"],
        "clusterName": "beating",
        "project": "default",
        "intervalSeconds": body["intervalSeconds"],
        "work": [],
    }
    assert body["intervalSeconds"] >= 1
    shown = http.get(f"{CLUSTERS}/beating").json()
    assert shown["status"] == "connected" and shown["agentVersion"] == "1.2.3" and shown["lastHeartbeatAt"]
    with agent_client(server, created["agentToken"], raw=True) as raw:
        assert raw.post("/api/v1/agent/heartbeat", json={}).status_code == 200


def test_revoke_rotate_and_delete_take_effect_at_once(http: httpx.Client, server: StowageServer) -> None:
    created = register(http, "rotating")
    old = created["agentToken"]
    with agent_client(server, old) as agent:
        assert agent.post("/api/v1/agent/heartbeat", json={}).status_code == 200  # now cached by the server
        revoked = http.post(f"{CLUSTERS}/rotating/revoke-token").json()
        assert revoked["tokenRevokedAt"]
        refused = agent.post("/api/v1/agent/heartbeat", json={})
        assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    rotated = http.post(f"{CLUSTERS}/rotating/rotate-token").json()
    new = rotated["agentToken"]
    assert new != old and rotated["tokenRevokedAt"] is None and rotated["tokenHint"] == new[-4:]
    with agent_client(server, old) as agent:
        assert agent.post("/api/v1/agent/heartbeat", json={}).status_code == 401
    with agent_client(server, new) as agent:
        assert agent.post("/api/v1/agent/heartbeat", json={}).status_code == 200
        assert http.delete(f"{CLUSTERS}/rotating").status_code == 204
        assert agent.post("/api/v1/agent/heartbeat", json={}).status_code == 401


def test_agent_endpoints_refuse_missing_unknown_and_user_tokens(server: StowageServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.post("/api/v1/agent/heartbeat", json={}).status_code == 401
    with agent_client(server, server.admin_token) as admin:
        answer = admin.post("/api/v1/agent/heartbeat", json={})
        assert answer.status_code == 401 and "not an agent token" in answer.json()["message"]
    with agent_client(server, "stwa_" + "x" * 43) as unknown:
        assert unknown.get("/api/v1/agent/locations/x/credentials").status_code == 401


def test_vending_refusals_without_aws(http: httpx.Client, server: StowageServer) -> None:
    cluster = register(http, "refused")
    static = create_location(
        http,
        unique("static"),
        credentials={
            "type": "static",
            "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        },
    )
    direct = create_location(http, unique("direct"), agentAccess="direct")
    with agent_client(server, cluster["agentToken"]) as agent:
        answer = agent.get(f"/api/v1/agent/locations/{static['id']}/credentials")
        assert answer.status_code == 409 and answer.json()["details"]["reason"] == "static_credentials"
        assert "STS location" in answer.json()["message"]
        answer = agent.get(f"/api/v1/agent/locations/{direct['id']}/credentials")
        assert answer.status_code == 409 and answer.json()["details"]["reason"] == "direct_access"
        assert "assumes the role itself" in answer.json()["message"]
        assert agent.get(f"/api/v1/agent/locations/{uuid.uuid4()}/credentials").status_code == 404
        view = agent.get(f"/api/v1/agent/locations/{direct['id']}").json()
        assert view["agentAccess"] == "direct" and view["roleArn"].endswith("role/stowage-backup")
        assert view["externalId"] == direct["externalId"] and view["credentialsPath"] is None
        assert view["clusterPrefix"] == f"clusters/{cluster['id']}"
        # No secret of a static location ever reaches an agent.
        static_view = agent.get(f"/api/v1/agent/locations/{static['id']}").json()
        assert "EXAMPLEKEY" not in str(static_view) and static_view["externalId"] is None


def test_brokered_location_without_aws_identity_is_a_clear_502(http: httpx.Client, server: StowageServer) -> None:
    cluster = register(http, "no-aws")
    location = create_location(http, unique("brokered"), prefix="team-a")
    with agent_client(server, cluster["agentToken"]) as agent:
        view = agent.get(f"/api/v1/agent/locations/{location['id']}").json()
        assert view["externalId"] is None  # brokered: the agent never needs it
        assert view["clusterPrefix"] == f"team-a/clusters/{cluster['id']}"
        assert view["credentialsPath"] == f"/api/v1/agent/locations/{location['id']}/credentials"
        objects = view["sessionPolicy"]["Statement"][0]["Resource"]
        assert objects == [f"arn:aws:s3:::{location['bucket']}/team-a/clusters/{cluster['id']}/*"]
        answer = agent.get(f"/api/v1/agent/locations/{location['id']}/credentials")
    assert answer.status_code == 502 and answer.json()["code"].startswith("cloud_")


def test_other_project_cluster_is_403(http: httpx.Client, server: StowageServer) -> None:
    other = unique("proj")
    assert http.post("/api/v1/projects", json={"name": other}).status_code == 201
    outsider = register(http, "outsider", project=other)
    location = create_location(http, unique("mine"))
    with agent_client(server, outsider["agentToken"]) as agent:
        base = f"/api/v1/agent/locations/{location['id']}"
        for path in (base, f"{base}/credentials"):
            answer = agent.get(path)
            assert answer.status_code == 403, answer.text
            assert "own project" in answer.json()["message"]
    http.delete(f"/api/v1/projects/{other}/clusters/outsider")


def test_issuances_listing_validates_its_query(http: httpx.Client) -> None:
    answer = http.get("/api/v1/projects/default/credential-issuances", params={"limit": 5})
    assert answer.status_code == 200 and answer.json() == {"items": []}
    assert http.get("/api/v1/projects/default/credential-issuances", params={"limit": 0}).status_code == 422
    assert http.get("/api/v1/projects/default/credential-issuances", params={"offset": -1}).status_code == 422
    assert http.get("/api/v1/projects/nope/credential-issuances").status_code == 404


def test_openapi_documents_the_agent_endpoints(server: StowageServer) -> None:
    spec: dict[str, Any] = httpx.get(f"{server.url}/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/projects/{project}/clusters",
        "/api/v1/projects/{project}/clusters/{cluster}/rotate-token",
        "/api/v1/projects/{project}/credential-issuances",
        "/api/v1/agent/heartbeat",
        "/api/v1/agent/locations/{location_id}/credentials",
    ):
        assert path in paths
