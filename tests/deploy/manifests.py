"""Load the deploy/ manifests and Dockerfiles for the deployment tests."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def documents(folder: Path) -> list[dict[str, Any]]:
    """Every object of every YAML file directly in ``folder`` (as ``kubectl apply -f folder`` reads them)."""
    found: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of that kind and name."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    stage: int
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile, with the build stage (0, 1, …) each belongs to."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    stage = -1
    result = []
    for line in joined:
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword.upper(), arguments.strip()))
    return result


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not ``--from=`` another stage)."""
    found = []
    for item in instructions(path):
        if item.keyword == "COPY" and "--from=" not in item.arguments:
            words = shlex.split(item.arguments)
            found.append((words[:-1], words[-1]))
    return found
