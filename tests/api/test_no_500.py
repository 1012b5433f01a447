"""Every operation of the published API, driven from its own OpenAPI document, answers bad input with a 4xx.

The server is real (uvicorn, SQLite, no AWS identity). Each operation that takes a body gets malformed bytes,
wrong JSON types, huge strings and hypothesis-generated objects built from the field names of its own schema;
each query parameter gets nonsense values. Path parameters are filled with ids that exist (a location, a
cluster) so that requests reach the body and query handling instead of stopping at a 404. Agent endpoints are
called with a real agent token. A new endpoint is covered without touching this file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.servers import StowageServer

MALFORMED: list[tuple[bytes, str]] = [
    (b"{not json", "application/json"),
    (b"[]", "application/json"),
    (b"null", "application/json"),
    (b'"a string"', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"name=x&bucket=y", "application/x-www-form-urlencoded"),
    (json.dumps({"name": "x" * 200_000}).encode(), "application/json"),
]
NONSENSE_QUERY = ["", "-1", "abc", "9" * 40, "\u0000", "x" * 5000, "1e309", "[]", "true"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
    # Valid enum and role values too, so that bodies get past validation into the service more often.
    | st.sampled_from(["aws", "s3-compatible", "brokered", "direct", "sts", "static", "admin", "viewer", "editor"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)


class Api:
    """The live server, its OpenAPI operations and ids to put in their paths."""

    def __init__(self, server: StowageServer) -> None:
        self.server = server
        self.admin = server.client()
        self.document: dict[str, Any] = self.admin.get("/openapi.json").json()
        location = self.admin.post(
            "/api/v1/projects/default/backup-locations",
            json={
                "name": "fuzz-target",
                "provider": "aws",
                "bucket": "fuzz-target-bucket",
                "region": "us-east-1",
                "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/stowage"},
                "skipValidation": True,
            },
        )
        assert location.status_code == 201, location.text
        cluster = self.admin.post("/api/v1/projects/default/clusters", json={"name": "fuzz-cluster"})
        assert cluster.status_code == 201, cluster.text
        self.agent = server.client(cluster.json()["agentToken"])
        self.ids = {
            "project": "default",
            "location_id": location.json()["id"],
            "id": location.json()["id"],
            "cluster": cluster.json()["id"],
        }

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(method, concrete path, operation) for every operation of the document."""
        for template, item in self.document["paths"].items():
            for method, operation in item.items():
                if method not in {"get", "post", "patch", "put", "delete"}:
                    continue
                path = template
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path":
                        path = path.replace("{" + parameter["name"] + "}", self.ids.get(parameter["name"], "nope"))
                yield method.upper(), path, operation

    def client_for(self, path: str) -> httpx.Client:
        """Agent endpoints take the agent's token, everything else the admin's."""
        return self.agent if path.startswith("/api/v1/agent/") else self.admin

    def body_fields(self, operation: dict[str, Any]) -> list[str]:
        """The property names of an operation's JSON body schema (following one $ref)."""
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            schema = self.document["components"]["schemas"][name]
        return sorted(schema.get("properties", {})) or ["name"]

    def close(self) -> None:
        """Close the clients."""
        self.admin.close()
        self.agent.close()


@pytest.fixture(scope="module")
def api(server: StowageServer) -> Iterator[Api]:
    target = Api(server)
    yield target
    target.close()


def assert_clear_4xx(answer: httpx.Response, what: str) -> None:
    assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:500]}"
    if answer.status_code >= 400:
        body = answer.json()
        assert body["code"] and body["message"], f"{what}: {body}"
        assert "Traceback" not in answer.text


def test_the_document_lists_the_contract_operations(api: Api) -> None:
    operations = {(m, p) for m, p, _ in api.operations()}
    assert ("POST", "/api/v1/projects/default/backup-locations") in operations
    assert ("GET", f"/api/v1/agent/locations/{api.ids['location_id']}/credentials") in operations
    assert len(operations) >= 20


def test_malformed_bodies_are_4xx_on_every_operation_that_takes_one(api: Api) -> None:
    checked = 0
    for method, path, operation in api.operations():
        if "requestBody" not in operation:
            continue
        client = api.client_for(path)
        for raw, content_type in MALFORMED:
            answer = client.request(method, path, content=raw, headers={"Content-Type": content_type})
            assert_clear_4xx(answer, f"{method} {path} {raw[:30]!r}")
        checked += 1
    assert checked >= 7  # projects, locations (create, validate, patch), tokens, clusters, heartbeat


def test_nonsense_query_values_are_4xx_on_every_operation(api: Api) -> None:
    checked = 0
    for method, path, operation in api.operations():
        if method == "DELETE":
            continue  # deleting with a nonsense query must not remove the shared fixtures
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        client = api.client_for(path)
        for name in names:
            for value in NONSENSE_QUERY:
                answer = client.request(method, path, params={name: value})
                assert_clear_4xx(answer, f"{method} {path}?{name}={value[:20]!r}")
                checked += 1
    assert checked > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_bodies_never_500(api: Api, data: st.DataObject) -> None:
    targets = [(m, p, o) for m, p, o in api.operations() if "requestBody" in o and m != "DELETE"]
    method, path, operation = data.draw(st.sampled_from(targets), label="operation")
    fields = api.body_fields(operation)
    body = data.draw(st.dictionaries(st.sampled_from(fields), JSON_VALUES, max_size=len(fields)), label="body")
    answer = api.client_for(path).request(method, path, json=body)
    assert_clear_4xx(answer, f"{method} {path} {body}")
    # Whatever got created is removed so that later examples meet the same state.
    if answer.status_code == 201 and path.endswith("/backup-locations"):
        api.admin.delete(f"{path}/{answer.json()['id']}")
