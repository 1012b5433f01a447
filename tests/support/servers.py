"""A real Stowage server (``stowage serve`` under uvicorn) in a subprocess, for API, CLI and UI tests."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import free_port, spawn, stop, wait_until


@dataclass
class StowageServer:
    """A running server: its URL, admin token and data directory."""

    url: str
    admin_token: str
    data_dir: Path
    log: Path
    env: dict[str, str]
    _proc: Any = field(repr=False, default=None)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client with a bearer token (the admin's by default)."""
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def stop(self) -> None:
        """Stop the server process."""
        if self._proc is not None:
            stop(self._proc)
            self._proc = None


def start_server(
    tmp: Path, *, database_url: str | None = None, extra_env: dict[str, str] | None = None
) -> StowageServer:
    """Start ``stowage serve`` on a free port with a fresh data directory."""
    port = free_port()
    data_dir = tmp / f"data-{port}"
    token = "stw_test_" + secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOWAGE_", "AWS_"))}
    env.update(
        {
            "STOWAGE_DATA_DIR": str(data_dir),
            "STOWAGE_ADMIN_TOKEN": token,
            "STOWAGE_HOST": "127.0.0.1",
            "STOWAGE_PORT": str(port),
            # No AWS identity unless a test gives one: the STS method must then say why it is unavailable.
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            # The emulators listen on 127.0.0.1; tests of endpoint safety pass "false" in extra_env.
            "STOWAGE_ALLOW_PRIVATE_ENDPOINTS": "true",
        }
    )
    if database_url:
        env["STOWAGE_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    log = tmp / f"server-{port}.log"
    proc = spawn([sys.executable, "-m", "stowage.entry", "serve"], env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200,
        timeout=30,
        what="stowage serve",
        proc=proc,
        log=log,
    )
    return StowageServer(url=url, admin_token=token, data_dir=data_dir, log=log, env=env, _proc=proc)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start servers on demand; all are stopped at the end of the test."""
    started: list[StowageServer] = []

    def make(**kwargs: Any) -> StowageServer:
        srv = start_server(tmp_path, **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StowageServer]:
    """One server (SQLite, no AWS identity) shared by a test module."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()
