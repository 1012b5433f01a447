"""Run the ``stowage`` CLI in-process against a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from stowage.cli.main import app
from tests.support.servers import StowageServer

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No STOWAGE_* from the developer's shell, and an empty data dir, so no admin-token file is found by accident."""
    import os

    for name in list(os.environ):
        if name.startswith("STOWAGE_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "cli-data"
    data_dir.mkdir()
    monkeypatch.setenv("STOWAGE_DATA_DIR", str(data_dir))
    yield data_dir


def invoke(*args: str, input: str | None = None, env: dict[str, Any] | None = None) -> Result:
    """Run ``stowage ARGS`` in-process."""
    return CliRunner().invoke(app, list(args), input=input, env=env)


@pytest.fixture
def stowage(server: StowageServer) -> Run:
    """``stowage`` against the module's server, as its admin unless ``token=`` says otherwise."""

    def run(*args: str, token: str | None = None, input: str | None = None) -> Result:
        env = {"STOWAGE_SERVER": server.url, "STOWAGE_TOKEN": token or server.admin_token}
        return invoke(*args, input=input, env=env)

    return run
