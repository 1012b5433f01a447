"""Helpers for web UI tests: a cookie-keeping HTTP client that signs in and posts forms like a browser."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.servers import StowageServer

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct-horse-battery-staple"
# A closed local port: live probes fail at once instead of waiting for the real AWS.
DEAD_ENDPOINT = "http://127.0.0.1:9"


def web_env(**extra: str) -> dict[str, str]:
    """Environment of a server whose first admin has a known password."""
    env = {
        "STOWAGE_ADMIN_EMAIL": ADMIN_EMAIL,
        "STOWAGE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "STOWAGE_SCHEDULER_ENABLED": "false",
        "STOWAGE_VALIDATION_TIMEOUT_SECONDS": "10",
    }
    env.update(extra)
    return env


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# What an agent token looks like (the cluster page's hint, "stwa_…abcd", does not match).
AGENT_TOKEN = re.compile(r"stwa_[A-Za-z0-9_-]{20,}")


def csrf_of(page: str) -> str:
    """The CSRF token in a page's forms."""
    match = _CSRF.search(page)
    assert match, "the page has no CSRF token"
    return html.unescape(match.group(1))


def forms_of(page: str) -> list[tuple[str, str]]:
    """(method, opening tag) of every form in a page."""
    found = []
    for match in re.finditer(r"<form\b[^>]*>(.*?)</form>", page, flags=re.S):
        tag = match.group(0)
        method = re.search(r'method="([a-z]+)"', tag[: tag.index(">") + 1])
        found.append(((method.group(1) if method else "get"), tag))
    return found


class WebClient:
    """A browser-like HTTP client: keeps cookies, reads CSRF tokens from pages, posts forms."""

    def __init__(self, server: StowageServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
        self.csrf = ""

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET a page and remember its CSRF token."""
        response = self.http.get(path, **kwargs)
        match = _CSRF.search(response.text) if "text/html" in response.headers.get("content-type", "") else None
        if match:
            self.csrf = html.unescape(match.group(1))
        return response

    def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """POST a form (with the last CSRF token seen unless ``csrf`` is False)."""
        body = dict(data or {})
        if csrf:
            body.setdefault("csrf_token", self.csrf)
        return self.http.post(path, data=body, **kwargs)

    def post_json(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> httpx.Response:
        """POST a form the way the wizard's script does (token in a header)."""
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.post(path, data=dict(data or {}), headers=headers)

    def login(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> httpx.Response:
        """Sign in through the login form."""
        self.get("/login")
        return self.post("/login", {"email": email, "password": password, "next": "/"})


def location_form(name: str = "prod-backups", **overrides: str) -> dict[str, str]:
    """Wizard fields for a static-key location that passes the offline checks."""
    form = {
        "name": name,
        "provider": "aws",
        "bucket": "acme-backups",
        "region": "eu-west-1",
        "s3_url": "",
        "ca_cert": "",
        "prefix": "",
        "kms_key_arn": "",
        "volume_snapshots": "on",
        "auth": "static",
        "access_key_id": "AKIAABCDEFGHIJKLMNOP",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "role_arn": "",
    }
    form.update(overrides)
    return form


def create_unverified(client: WebClient, project: str = "default", **overrides: str) -> str:
    """Create a location through the wizard's endpoint, skipping the live checks (admins); returns its URL."""
    client.get(f"/projects/{project}/settings/backup-locations/new")
    response = client.post_json(
        f"/ui/projects/{project}/backup-locations", {**location_form(**overrides), "skip_validation": "on"}
    )
    assert response.status_code == 201, response.text
    url = str(response.json()["redirect"]).split("?")[0]
    return url


@dataclass
class Registered:
    """A cluster registered through the page: its token (from the one page that shows it) and its URL."""

    name: str
    token: str
    url: str
    page: httpx.Response


def register(client: WebClient, name: str | None = None, project: str = "default", **fields: str) -> Registered:
    """Register a cluster through the form and read its token off the result page."""
    name = name or f"c-{uuid.uuid4().hex[:6]}"
    client.get(f"/projects/{project}/settings/clusters")
    page = client.post(f"/projects/{project}/settings/clusters", {"name": name, **fields})
    assert page.status_code == 201, page.text
    tokens = set(AGENT_TOKEN.findall(page.text))
    assert len(tokens) == 1
    match = re.search(rf'href="(/projects/{project}/settings/clusters/[0-9a-f-]{{36}})"', page.text)
    assert match
    return Registered(name=name, token=tokens.pop(), url=match.group(1), page=page)


def heartbeat(server: StowageServer, token: str, version: str = "1.4.2") -> httpx.Response:
    """What an agent sends, with its agent token."""
    return httpx.post(
        f"{server.url}/api/v1/agent/heartbeat",
        json={"version": version},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def signed_in_as(server: StowageServer, role: str) -> WebClient:
    """A client signed in as a new user with the given role (added by the first admin through the Users page)."""
    email = f"{role}-{uuid.uuid4().hex[:6]}@example.com"
    password = f"{role}-password-{uuid.uuid4().hex[:4]}"
    admin = WebClient(server)
    try:
        assert admin.login().status_code == 303
        admin.get("/settings/users")
        created = admin.post("/settings/users", {"email": email, "password": password, "role": role})
        assert created.status_code == 303, created.text
    finally:
        admin.close()
    client = WebClient(server)
    assert client.login(email=email, password=password).status_code == 303
    return client
