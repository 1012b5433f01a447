"""The agent installs alone: the agent image's steps in a fresh venv, with dependencies from the package index.

The test copies exactly what deploy/Dockerfile.agent copies (its COPY lines, replayed) into an empty folder and
runs the image's install, ``pip install ./deploy/agent``, in a new virtual environment. Dependencies come from the
index pip is configured with (PyPI, or this machine's local mirror) as a user would get them: no ``--no-deps``.
Then none of the control plane's server packages may be installed, and the agent must start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.manifests import DEPLOY, REPO, copies

SERVER_ONLY = ("fastapi", "sqlalchemy", "uvicorn", "alembic", "procrastinate", "jinja2", "starlette", "psycopg")


def _context(target: Path) -> Path:
    """The agent image's build context as its COPY lines see it (Docker's rules: a folder's contents go to the
    destination; files go into a destination ending in ``/``)."""
    for sources, destination in copies(DEPLOY / "Dockerfile.agent"):
        for source in sources:
            origin = REPO / source
            into = target / destination
            if origin.is_dir():
                shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            elif destination.endswith("/"):
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into / origin.name)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)
    return target


def test_the_agent_distribution_installs_without_the_server_dependencies(tmp_path: Path) -> None:
    context = _context(tmp_path / "context")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "./deploy/agent"],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "stowage-agent" in installed and "stowage" not in installed
    assert {"boto3", "botocore", "httpx", "typer", "kubernetes"} <= installed
    assert not [name for name in SERVER_ONLY if name in installed], installed

    helped = subprocess.run([str(python), "-m", "stowage.agent", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--token-file" in helped.stdout and "--health-port" in helped.stdout, (
        helped.stderr
    )
    script = subprocess.run([str(venv / "bin" / "stowage-agent"), "--help"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0, script.stderr
    # Every module of the agent imports (the backup engine, jobs, Kubernetes access), not only the command.
    imports = (
        "import importlib, pkgutil, stowage.agent as a;"
        "[importlib.import_module('stowage.agent.' + m.name) for m in pkgutil.iter_modules(a.__path__)]"
    )
    imported = subprocess.run([str(python), "-c", imports], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr


def test_agent_dependencies_are_the_same_as_the_control_planes() -> None:
    agent = tomllib.loads((DEPLOY / "agent" / "pyproject.toml").read_text())["project"]["dependencies"]
    main = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {Requirement(r).name: str(Requirement(r).specifier) for r in main}
    for line in agent:
        requirement = Requirement(line)
        assert ranges.get(requirement.name) == str(requirement.specifier), f"{line} differs from the main pyproject"
