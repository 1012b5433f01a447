"""The agent's HTTP client of the control plane (agent token in ``Authorization: Bearer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from stowage import __version__

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0


class ServerUnavailable(Exception):
    """The control plane could not be reached or answered 5xx: worth retrying later."""


class AgentRejected(Exception):
    """The control plane refused the request (4xx); ``code`` is the API's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def check_server_url(server: str) -> str:
    """The server URL without a trailing slash; ``ValueError`` unless it is http(s)."""
    url = server.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--server must be an http:// or https:// URL, not {server!r}")
    return url


class ControlPlane:
    """Heartbeats, locations and credentials over HTTP; the token is read from ``token`` on every call."""

    def __init__(
        self,
        server: str,
        token: Callable[[], str],
        *,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.server = check_server_url(server)
        self._token = token
        self._http = httpx.Client(
            base_url=self.server,
            timeout=httpx.Timeout(READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            headers={"Accept": "application/json", "User-Agent": f"stowage-agent/{__version__}"},
            transport=transport,
            verify=verify,
        )

    @property
    def token(self) -> str:
        """The current agent token."""
        return self._token()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def heartbeat(self, version: str) -> dict[str, Any]:
        """``POST /agent/heartbeat``: who we are, when to call again, and our work."""
        answer: dict[str, Any] = self._call("POST", "/api/v1/agent/heartbeat", json={"version": version})
        return answer

    def location(self, location_id: str) -> dict[str, Any]:
        """``GET /agent/locations/{id}``: where a location is and how to reach it."""
        answer: dict[str, Any] = self._call("GET", f"/api/v1/agent/locations/{quote(location_id, safe='')}")
        return answer

    def credentials(self, location_id: str) -> dict[str, Any]:
        """``GET /agent/locations/{id}/credentials`` in the AWS container-credentials shape."""
        answer: dict[str, Any] = self._call("GET", self.credentials_path(location_id))
        return answer

    def claim_job(self, job_id: str) -> dict[str, Any]:
        """``POST /agent/jobs/{id}/claim``: take a job handed out in a heartbeat (409 when it is not ours)."""
        answer: dict[str, Any] = self._call("POST", f"/api/v1/agent/jobs/{quote(job_id, safe='')}/claim")
        return answer

    def job_progress(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /agent/jobs/{id}/progress``: progress and log lines; renews the lease; may say cancel."""
        answer: dict[str, Any] = self._call("POST", f"/api/v1/agent/jobs/{quote(job_id, safe='')}/progress", json=body)
        return answer

    def complete_job(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /agent/jobs/{id}/complete``: how the job ended."""
        answer: dict[str, Any] = self._call("POST", f"/api/v1/agent/jobs/{quote(job_id, safe='')}/complete", json=body)
        return answer

    def credentials_path(self, location_id: str) -> str:
        """The path of a location's vending endpoint."""
        return f"/api/v1/agent/locations/{quote(location_id, safe='')}/credentials"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(
                method, path, headers={"Authorization": f"Bearer {self._token().strip()}"}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{self.server}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise ServerUnavailable(f"{self.server} answered {response.status_code}: {_message(response)}")
        if response.status_code >= 400:
            code = "error"
            try:
                body = response.json()
                code = str(body.get("code") or code)
            except ValueError:
                pass
            raise AgentRejected(response.status_code, code, _message(response))
        return response.json()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return f"HTTP {response.status_code}"
