"""Fixtures of the web UI tests: a real server with a known admin, and signed-in clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stowage.store.database import Database
from tests.support.ministack import ministack  # noqa: F401 - fixture (session-scoped emulator)
from tests.support.servers import StowageServer, start_server
from tests.web.browser import browser, page  # noqa: F401 - fixtures (Chromium)
from tests.web.support import DEAD_ENDPOINT, WebClient, signed_in_as, web_env


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StowageServer]:
    """One server per module (SQLite, no AWS identity, AWS endpoints pointing at a closed port)."""
    srv = start_server(tmp_path_factory.mktemp("web"), extra_env=web_env(AWS_ENDPOINT_URL=DEAD_ENDPOINT))
    yield srv
    srv.stop()


@pytest.fixture
def web(web_server: StowageServer) -> Iterator[WebClient]:
    """A fresh, not yet signed-in browser-like client."""
    client = WebClient(web_server)
    yield client
    client.close()


@pytest.fixture
def admin(web_server: StowageServer) -> Iterator[WebClient]:
    """A client signed in as the first admin."""
    client = WebClient(web_server)
    response = client.login()
    assert response.status_code == 303, response.text
    yield client
    client.close()


@pytest.fixture(scope="module")
def server_db(web_server: StowageServer) -> Iterator[Database]:
    """The server's own SQLite database, for what has no API (other tenants, old heartbeats, audit rows)."""
    database = Database(f"sqlite:///{web_server.data_dir / 'stowage.db'}")
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def viewer(web_server: StowageServer) -> Iterator[WebClient]:
    """A client signed in as a viewer."""
    client = signed_in_as(web_server, "viewer")
    yield client
    client.close()


@pytest.fixture(scope="module")
def editor(web_server: StowageServer) -> Iterator[WebClient]:
    """A client signed in as an editor."""
    client = signed_in_as(web_server, "editor")
    yield client
    client.close()
