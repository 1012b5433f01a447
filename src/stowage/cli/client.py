"""A small HTTP client of API v1: error answers become ``ApiError``, network failures ``Unreachable``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
# Validating a location probes AWS live and in parallel; the server bounds each probe, so allow it time.
READ_TIMEOUT_SECONDS = 120.0
CONNECT_TIMEOUT_SECONDS = 5.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class UsageProblem(Exception):
    """The command line itself is wrong (exit code 2); the message says how to fix it."""


class Unreachable(Exception):
    """The server could not be reached or did not answer (exit code 3)."""


class ApiError(Exception):
    """The server answered with an error ``{code, message, details}`` (exit code 1)."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.body: dict[str, Any] = {"code": code, "message": message}
        if details:
            self.body["details"] = self.details

    @property
    def reason(self) -> str:
        """The message on one line, fit for stderr."""
        return " ".join(self.message.split())


def segment(value: str) -> str:
    """A value quoted to be one URL path segment (names may hold any character)."""
    return quote(value, safe="")


def check_server_url(server: str) -> str:
    """The server URL without a trailing slash, or ``UsageProblem`` when it is not an http(s) URL."""
    url = server.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageProblem(f"--server must be an http:// or https:// URL, not {server!r}.")
    return url


def is_local(server: str) -> bool:
    """True when the server URL points at this machine."""
    host = urlsplit(server).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


def data_dir() -> Path:
    """The server's data directory as ``stowage serve`` would pick it on this machine."""
    # Mirrors stowage.config without building Settings: a bad unrelated STOWAGE_* variable must not break the CLI.
    explicit = os.environ.get("STOWAGE_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stowage"


def resolve_token(server: str, token: str | None) -> str | None:
    """The token to send: the given one, else the local server's ``admin-token`` file, else None."""
    if token and token.strip():
        return token.strip()
    if not is_local(server):
        # The admin token of this machine is no credential for a remote server: never send it there.
        return None
    try:
        value = (data_dir() / "admin-token").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


class StowageClient:
    """API v1 over HTTP with a bearer token."""

    def __init__(self, server: str, token: str | None, *, transport: httpx.BaseTransport | None = None) -> None:
        self.server = check_server_url(server)
        self.token = resolve_token(self.server, token)
        headers = {"Accept": "application/json", "User-Agent": "stowage-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            transport=transport,
        )

    def __enter__(self) -> StowageClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        """GET a path of API v1 and return the decoded JSON."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: object | None = None) -> Any:
        """POST JSON and return the decoded JSON."""
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: object) -> Any:
        """PATCH JSON and return the decoded JSON."""
        return self.request("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        """DELETE and return the decoded JSON (None for 204)."""
        return self.request("DELETE", path)

    def request(
        self, method: str, path: str, *, params: Mapping[str, object] | None = None, body: object | None = None
    ) -> Any:
        """One call; raises ``ApiError`` for error answers and ``Unreachable`` for network failures."""
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, "/api/v1" + path, params=query, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unreachable(f"cannot reach Stowage at {self.server}: is `stowage serve` running?") from exc
        except httpx.TimeoutException as exc:
            raise Unreachable(
                f"Stowage at {self.server} did not answer within {READ_TIMEOUT_SECONDS:.0f} s; try again."
            ) from exc
        except httpx.HTTPError as exc:
            raise Unreachable(f"the connection to Stowage at {self.server} failed ({type(exc).__name__}).") from exc
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise Unreachable(
                f"{self.server} answered with something other than JSON: is it a Stowage server?"
            ) from exc

    def _error(self, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            details = body.get("details")
            error = ApiError(
                response.status_code,
                str(body.get("code") or "error"),
                body["message"],
                details if isinstance(details, dict) else None,
            )
        else:
            # Not one of ours (a proxy, another program on the port): say what came back, briefly.
            error = ApiError(
                response.status_code, "http_error", f"HTTP {response.status_code} {response.reason_phrase}".strip()
            )
        if response.status_code == 401 and not self.token:
            error.message += " No token was sent: pass --token or set STOWAGE_TOKEN."
        return error


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
