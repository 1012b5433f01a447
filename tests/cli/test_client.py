"""The HTTP client alone, over httpx's transport seam."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from stowage.cli.client import ApiError, StowageClient, Unreachable, UsageProblem, resolve_token


def _client(handler: httpx.MockTransport, token: str | None = "stw_x") -> StowageClient:
    return StowageClient("https://stowage.example.com/", token, transport=handler)


def test_error_answers_become_api_errors_with_the_body() -> None:
    body = {"code": "conflict", "message": "A location named 'a'\nalready exists.", "details": {"field": "name"}}
    transport = httpx.MockTransport(lambda request: httpx.Response(409, json=body))
    with _client(transport) as client, pytest.raises(ApiError) as caught:
        client.post("/projects/default/backup-locations", {"name": "a"})
    assert caught.value.status == 409
    assert caught.value.code == "conflict"
    assert caught.value.reason == "A location named 'a' already exists."
    assert caught.value.body == body


def test_an_answer_that_is_not_ours_is_described_briefly() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with _client(transport) as client, pytest.raises(ApiError) as caught:
        client.get("/projects")
    assert caught.value.reason == "HTTP 502 Bad Gateway"


def test_a_read_timeout_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with _client(httpx.MockTransport(handler)) as client, pytest.raises(Unreachable) as caught:
        client.get("/projects")
    assert "did not answer" in str(caught.value)


def test_the_bearer_token_and_query_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "total": 0})

    with _client(httpx.MockTransport(handler)) as client:
        client.get("/projects/a%2Fb/backup-locations", {"search": "x y", "limit": 5, "offset": None, "flag": False})
    (request,) = seen
    assert request.headers["authorization"] == "Bearer stw_x"
    assert request.url.raw_path == b"/api/v1/projects/a%2Fb/backup-locations?search=x+y&limit=5&flag=false"


def test_admin_token_file_is_used_only_for_a_local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOWAGE_DATA_DIR", str(tmp_path))
    (tmp_path / "admin-token").write_text("stw_local\n")
    assert resolve_token("http://127.0.0.1:8080", None) == "stw_local"
    assert resolve_token("http://localhost:9000", "") == "stw_local"
    assert resolve_token("https://stowage.example.com", None) is None
    assert resolve_token("http://127.0.0.1:8080", "stw_given") == "stw_given"


def test_a_server_without_scheme_is_a_usage_problem() -> None:
    with pytest.raises(UsageProblem):
        StowageClient("stowage.example.com", None)
