"""Restore requests through the real HTTP API of a real server: rules, names, and the destination's job.

The agent is played over its real protocol; the restore engine itself is tested in ``tests/restores``.
"""

from __future__ import annotations

from typing import Any

from tests.agents.helpers import agent_client, create_location, register
from tests.support.servers import StowageServer


def _completed_backup(server: StowageServer, http: Any, cluster: dict[str, Any], name: str) -> None:
    assert (
        http.post(f"/api/v1/projects/default/clusters/{cluster['name']}/backups", json={"backupName": name}).status_code
        == 202
    )
    with agent_client(server, cluster["agentToken"]) as agent:
        job = next(
            w
            for w in agent.post("/api/v1/agent/heartbeat", json={}).json()["work"]
            if w["params"]["backupName"] == name
        )
        assert agent.post(f"/api/v1/agent/jobs/{job['id']}/claim").status_code == 200
        done = agent.post(f"/api/v1/agent/jobs/{job['id']}/complete", json={"phase": "Completed", "totalItems": 1})
        assert done.status_code == 200, done.text


def test_restore_requests_are_checked_and_named_uniquely(server: StowageServer) -> None:
    http = server.client()
    create_location(http, "restore-primary")
    source, destination = register(http, "r-src"), register(http, "r-dst")
    url = "/api/v1/projects/default/clusters/r-src/backups/{name}/restores"

    http.post("/api/v1/projects/default/clusters/r-src/backups", json={"backupName": "pending"})
    pending = http.post(url.format(name="pending"), json={})
    assert pending.status_code == 409 and "only Completed or PartiallyFailed" in pending.json()["message"]

    _completed_backup(server, http, source, "done")
    for body, field in (
        ({"destinationClusterId": "ghost"}, "destinationClusterId"),
        ({"namespaceMapping": {"a": "x", "b": "x"}}, "namespaceMapping"),
        ({"includeNamespaces": ["Bad"]}, "includeNamespaces"),
        ({"labelSelector": "a=b,,"}, "labelSelector"),
    ):
        answer = http.post(url.format(name="done"), json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["details"]["field"] == field
    assert http.post(url.format(name="done"), json={"existingResourcePolicy": "replace"}).status_code == 422

    # A preview confirmed within the same second gets its own name rather than a 409.
    preview = http.post(url.format(name="done"), json={"destinationClusterId": "r-dst", "dryRun": True})
    real = http.post(url.format(name="done"), json={"destinationClusterId": "r-dst"})
    assert preview.status_code == real.status_code == 202, (preview.text, real.text)
    assert preview.json()["restoreName"] != real.json()["restoreName"]
    assert preview.json()["dryRun"] is True and real.json()["dryRun"] is False
    assert real.json()["storagePrefix"].endswith(f"clusters/{destination['id']}/restores/{real.json()['restoreName']}")

    # The destination's agent gets both; the source's agent gets no restore (only its own pending backup).
    with agent_client(server, destination["agentToken"]) as agent:
        kinds = [w["kind"] for w in agent.post("/api/v1/agent/heartbeat", json={}).json()["work"]]
    assert kinds == ["restore", "restore"]
    with agent_client(server, source["agentToken"]) as agent:
        assert [w["kind"] for w in agent.post("/api/v1/agent/heartbeat", json={}).json()["work"]] == ["backup"]
    listed = http.get("/api/v1/projects/default/clusters/r-dst/restores").json()
    assert listed["total"] == 2
    http.close()
