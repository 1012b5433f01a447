"""Small helpers shared by the agent tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.servers import StowageServer


def register(http: httpx.Client, name: str, project: str = "default", **extra: Any) -> dict[str, Any]:
    """Register a cluster and return the answer (with its agentToken)."""
    answer = http.post(f"/api/v1/projects/{project}/clusters", json={"name": name, **extra})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def agent_client(server: StowageServer, token: str, *, raw: bool = False) -> httpx.Client:
    """An HTTP client that authenticates as an agent (``raw``: the bare header value, as botocore sends it)."""
    header = token if raw else f"Bearer {token}"
    return httpx.Client(base_url=server.url, headers={"Authorization": header}, timeout=60)


def create_location(http: httpx.Client, name: str, project: str = "default", **overrides: Any) -> dict[str, Any]:
    """Create a location with skipValidation (admin) and return it."""
    body: dict[str, Any] = {
        "name": name,
        "provider": "aws",
        "bucket": f"{name}-bucket",
        "region": "us-east-1",
        "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/stowage-backup"},
        "skipValidation": True,
    }
    body.update(overrides)
    answer = http.post(f"/api/v1/projects/{project}/backup-locations", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created
