"""``stowage workspaces`` and ``stowage protection`` against a real server; each cluster's agent is played over
its real HTTP protocol (heartbeat to be connected, then claim, progress and complete its part of the backup)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from typer.testing import Result

from stowage.cli.workspaces import EXIT_AT_RISK, FailOn, at_risk
from stowage.domain.backups import BACKUP_WORK_KIND
from tests.agents.helpers import agent_client, create_location, register
from tests.cli.conftest import Run
from tests.support.servers import StowageServer

FAST = ("--interval", "0.1")


def _name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:5]}"


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@dataclass
class World:
    """A fresh project with a default location and three clusters; ``c`` never connects."""

    project: str
    clusters: dict[str, dict[str, Any]]

    def name(self, key: str) -> str:
        return str(self.clusters[key]["name"])


def heartbeat(server: StowageServer, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """One heartbeat of the cluster's agent; its work."""
    with agent_client(server, cluster["agentToken"]) as agent:
        answer = agent.post("/api/v1/agent/heartbeat", json={"version": "test"})
        assert answer.status_code == 200, answer.text
        work: list[dict[str, Any]] = answer.json()["work"]
        return work


class PlayedAgent:
    """A cluster's agent in a thread: waits for its backup job, claims it, reports progress and the outcome."""

    def __init__(self, server: StowageServer, cluster: dict[str, Any], backup: str, phase: str = "Completed") -> None:
        self._server, self._cluster, self._backup, self._phase = server, cluster, backup, phase
        self.params: dict[str, Any] = {}
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PlayedAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the agent thread did not end"
        if self._errors:
            raise self._errors[0]

    def _run(self) -> None:
        try:
            with agent_client(self._server, self._cluster["agentToken"]) as agent:
                self._work(agent)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread by __exit__
            self._errors.append(exc)

    def _work(self, agent: httpx.Client) -> None:
        deadline = time.monotonic() + 30
        job: dict[str, Any] | None = None
        while job is None:
            assert time.monotonic() < deadline, f"no job for backup {self._backup}"
            work = agent.post("/api/v1/agent/heartbeat", json={"version": "test"}).json()["work"]
            job = next(
                (w for w in work if w["kind"] == BACKUP_WORK_KIND and w["params"]["backupName"] == self._backup), None
            )
            if job is None:
                time.sleep(0.1)
        self.params = job["params"]
        jobs = f"/api/v1/agent/jobs/{job['id']}"
        assert agent.post(f"{jobs}/claim").status_code == 200
        assert agent.post(f"{jobs}/progress", json={"totalItems": 4, "itemsBackedUp": 2, "logs": []}).status_code == 200
        time.sleep(0.3)
        body = {"phase": self._phase, "totalItems": 4, "itemsBackedUp": 4, "logs": []}
        if self._phase != "Completed":
            body["failureReason"] = "the apiserver went away"
        answer = agent.post(f"{jobs}/complete", json=body)
        assert answer.status_code == 200, answer.text


@pytest.fixture
def world(server: StowageServer, stowage: Run) -> Iterator[World]:
    """A project of its own (protection is per project), so tests do not see each other's clusters."""
    project = _name("ws")
    assert stowage("projects", "create", project).exit_code == 0
    with server.client() as http:
        create_location(http, _name("loc"), project=project, isDefault=True)
        clusters = {key: register(http, _name(key), project=project) for key in ("a", "b", "c")}
    for key in ("a", "b"):
        heartbeat(server, clusters[key])
    yield World(project, clusters)


# -- pure helpers ----------------------------------------------------------------------------------------
def test_at_risk_is_a_threshold() -> None:
    report = {
        "clusters": [
            {"clusterName": "ok", "protection": {"risk": "on_time"}},
            {"clusterName": "late", "protection": {"risk": "late"}},
            {"clusterName": "bad", "protection": {"risk": "failing"}},
        ],
        "workspaces": [{"name": "w", "protection": {"risk": "never"}}],
    }
    assert at_risk(report, FailOn.LATE) == ["cluster late: late", "cluster bad: failing", "workspace w: never"]
    assert at_risk(report, FailOn.FAILING) == ["cluster bad: failing", "workspace w: never"]
    assert at_risk(report, FailOn.NEVER) == ["workspace w: never"]


# -- workspaces --------------------------------------------------------------------------------------------
def test_create_list_show_add_remove(stowage: Run, world: World) -> None:
    p = ("-p", world.project)
    both = ("--cluster", world.name("a"), "-c", world.name("b"))
    created = _json(stowage("workspaces", "create", "shop", *both, *p, "-o", "json"))
    assert sorted(c["clusterName"] for c in created["clusters"]) == sorted([world.name("a"), world.name("b")])
    assert created["protection"]["risk"] == "never"
    again = stowage("workspaces", "create", "shop", *p)
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = stowage("workspaces", "create", "Shop!", *p)
    assert bad.exit_code == 1 and "not valid" in bad.stderr

    listed = stowage("workspaces", "list", *p)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split() == ["NAME", "CLUSTERS", "PROTECTION", "LAST", "SUCCESS", "NEXT", "RUN"]
    assert "shop" in listed.stdout and "NEVER BACKED UP" in listed.stdout

    added = stowage("workspaces", "add-cluster", "shop", world.name("c"), *p)
    assert added.exit_code == 0 and world.name("c") in added.stdout
    shown = stowage("workspaces", "show", "shop", *p)
    assert shown.exit_code == 0
    assert "Protection" in shown.stdout and "CONNECTED" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if line.startswith(world.name("c")))
    assert row.split()[1] == "no"  # c's agent never connected
    removed = _json(stowage("workspaces", "remove-cluster", "shop", world.name("c"), *p, "-o", "json"))
    assert len(removed["clusters"]) == 2
    missing = stowage("workspaces", "show", "nope", *p, "-o", "json")
    assert missing.exit_code == 1 and json.loads(missing.stdout)["code"] == "not_found"


def test_backup_wait_reports_the_skip_and_exits_4(stowage: Run, server: StowageServer, world: World) -> None:
    p = ("-p", world.project)
    names = [world.name(k) for k in ("a", "b", "c")]
    assert stowage("workspaces", "create", "all3", *[x for n in names for x in ("-c", n)], *p).exit_code == 0
    with (
        PlayedAgent(server, world.clusters["a"], "nightly-" + names[0]) as one,
        PlayedAgent(server, world.clusters["b"], "nightly-" + names[1]),
    ):
        result = stowage(
            "workspaces", "backup", "all3", "nightly", "-n", "shop", "--exclude-resource", "secrets",
            "--ttl-hours", "48", "--wait", *FAST, *p,
        )  # fmt: skip
    assert result.exit_code == 4, result.output
    assert one.params["request"]["namespaces"] == ["shop"]
    assert one.params["request"]["excludedResources"] == ["secrets"]
    assert "Workspace backup nightly of all3: PartiallyFailed" in result.stdout
    assert "Skipped 1 cluster:" in result.stdout
    skipped = next(line for line in result.stdout.splitlines() if line.startswith(f"  {names[2]}:"))
    assert "disconnected" in skipped and "last heartbeat: never" in skipped
    assert "PartiallyFailed" in result.stderr

    table = stowage("workspaces", "backups", "all3", *p)
    assert table.exit_code == 0
    line = next(row for row in table.stdout.splitlines() if row.startswith("nightly"))
    assert line.split()[:4] == ["nightly", "PartiallyFailed", "2/3", names[2]]
    shown = _json(stowage("workspaces", "show-backup", "all3", "nightly", *p, "-o", "json"))
    assert sorted(c["phase"] for c in shown["clusters"]) == ["Completed", "Completed"]
    assert shown["skipped"][0]["clusterName"] == names[2]


def test_backup_of_some_clusters_completes_and_json_wait(stowage: Run, server: StowageServer, world: World) -> None:
    p = ("-p", world.project)
    names = [world.name(k) for k in ("a", "b", "c")]
    assert stowage("workspaces", "create", "pick", *[x for n in names for x in ("-c", n)], *p).exit_code == 0
    with (
        PlayedAgent(server, world.clusters["a"], "two-" + names[0]),
        PlayedAgent(server, world.clusters["b"], "two-" + names[1]),
    ):
        result = stowage(
            "workspaces", "backup", "pick", "two", "--cluster", names[0], "--cluster", names[1], "--wait", *FAST,
            *p, "-o", "json",
        )  # fmt: skip
    final = _json(result)
    assert final["phase"] == "Completed" and final["skipped"] == []
    assert {c["clusterName"] for c in final["clusters"]} == set(names[:2])
    # A cluster outside the workspace is refused with the reason.
    assert stowage("workspaces", "remove-cluster", "pick", names[1], *p).exit_code == 0
    outside = stowage("workspaces", "backup", "pick", "three", "-c", names[1], *p)
    assert outside.exit_code == 1 and "not in the workspace" in outside.stderr
    # A failed part makes the whole request Failed: exit 1 with the agent's reason.
    with PlayedAgent(server, world.clusters["a"], "bad-" + names[0], phase="Failed"):
        failed = stowage("workspaces", "backup", "pick", "bad", "-c", names[0], "--wait", *FAST, *p)
    assert failed.exit_code == 1 and "the apiserver went away" in failed.stderr


def test_protection_fail_on_for_monitoring(stowage: Run, server: StowageServer, world: World) -> None:
    p = ("-p", world.project)
    a, b, c = (world.name(k) for k in ("a", "b", "c"))
    assert stowage("workspaces", "create", "pair", "-c", a, "-c", b, *p).exit_code == 0
    never = stowage("protection", "--fail-on", "never", *p)
    assert never.exit_code == EXIT_AT_RISK
    assert f"cluster {c}: never" in never.stderr and "workspace pair: never" in never.stderr
    with PlayedAgent(server, world.clusters["a"], "p1-" + a), PlayedAgent(server, world.clusters["b"], "p1-" + b):
        assert stowage("workspaces", "backup", "pair", "p1", "--wait", *FAST, *p).exit_code == 0
    report = stowage("protection", *p)
    assert report.exit_code == 0
    rows = {tuple(line.split()[:2]): line for line in report.stdout.splitlines()[1:]}
    assert "on time" in rows[("cluster", a)] and "NEVER BACKED UP" in rows[("cluster", c)]
    assert "on time" in rows[("workspace", "pair")]
    # c is never backed up: every threshold catches it; without c, nothing is at risk.
    assert stowage("protection", "--fail-on", "late", *p).exit_code == EXIT_AT_RISK
    with server.client() as http:
        assert http.delete(f"/api/v1/projects/{world.project}/clusters/{c}").status_code == 204
    data = _json(stowage("protection", "--fail-on", "late", *p, "-o", "json"))
    assert {x["protection"]["risk"] for x in data["clusters"]} == {"on_time"}
    # A failed backup: failing (and not never).
    with PlayedAgent(server, world.clusters["b"], "p2-" + b, phase="Failed"):
        assert stowage("workspaces", "backup", "pair", "p2", "-c", b, "--wait", *FAST, *p).exit_code == 1
    failing = stowage("protection", "--fail-on", "failing", *p)
    assert failing.exit_code == EXIT_AT_RISK and f"cluster {b}: failing" in failing.stderr
    assert stowage("protection", "--fail-on", "never", *p).exit_code == 0
    assert stowage("protection", "--fail-on", "sometimes", *p).exit_code == 2


def test_schedule_set_show_delete(stowage: Run, world: World) -> None:
    p = ("-p", world.project)
    assert stowage("workspaces", "create", "sched", "-c", world.name("a"), *p).exit_code == 0
    weekly = ("--prefix", "nightly", "--preset", "weekly", "-n", "shop")
    saved = _json(stowage("workspaces", "schedule", "set", "sched", *weekly, *p, "-o", "json"))
    assert saved["schedule"] == "0 0 * * 0" and saved["preset"] == "weekly" and saved["namespaces"] == ["shop"]
    assert saved["nextRunAt"]
    shown = stowage("workspaces", "schedule", "show", "sched", *p)
    assert shown.exit_code == 0 and "0 0 * * 0 (UTC, weekly)" in shown.stdout
    twice = ("--prefix", "x", "--preset", "weekly", "--cron", "* * * * *")
    both = stowage("workspaces", "schedule", "set", "sched", *twice, *p)
    assert both.exit_code == 2 and "--preset or --cron" in both.stderr
    bad = stowage("workspaces", "schedule", "set", "sched", "--prefix", "x", "--cron", "every day", *p)
    assert bad.exit_code == 1
    # The workspace's next run shows in the list (and in protection).
    listed = _json(stowage("workspaces", "list", *p, "-o", "json"))
    assert listed["items"][0]["protection"]["nextScheduledAt"] == saved["nextRunAt"]
    refused = stowage("workspaces", "schedule", "delete", "sched", *p, input="n\n")
    assert refused.exit_code == 1
    assert stowage("workspaces", "schedule", "delete", "sched", "--yes", *p).exit_code == 0
    gone = stowage("workspaces", "schedule", "show", "sched", *p)
    assert gone.exit_code == 1 and "no backup schedule" in gone.stderr


def test_restore_sends_the_options(stowage: Run, server: StowageServer, world: World) -> None:
    p = ("-p", world.project)
    a, b = world.name("a"), world.name("b")
    assert stowage("workspaces", "create", "rs", "-c", a, "-c", b, *p).exit_code == 0
    with PlayedAgent(server, world.clusters["a"], "r1-" + a), PlayedAgent(server, world.clusters["b"], "r1-" + b):
        assert stowage("workspaces", "backup", "rs", "r1", "--wait", *FAST, *p).exit_code == 0
    wrong = stowage("workspaces", "restore", "rs", "r1", "--map-namespace", "shop", *p)
    assert wrong.exit_code == 2 and "OLD=NEW" in wrong.stderr
    created = _json(
        stowage(
            "workspaces", "restore", "rs", "r1", "-n", "shop", "--map-namespace", "shop=shop-restored",
            "--existing", "update", "--no-restore-pvs", "-l", "app=web", *p, "-o", "json",
        )
    )  # fmt: skip
    assert created["backupName"] == "r1"
    # Every cluster restored into itself, or skipped with a reason: nothing silently left out.
    assert len(created["clusters"]) + len(created["skipped"]) == 2
    with server.client() as http:
        for part in created["clusters"]:
            restore = http.get(f"/api/v1/projects/{world.project}/clusters/{part['clusterId']}/restores/{part['name']}")
            body = restore.json()
            assert body["includeNamespaces"] == ["shop"]
            assert body["namespaceMapping"] == {"shop": "shop-restored"}
            assert body["existingResourcePolicy"] == "update" and body["restorePVs"] is False
            assert body["labelSelector"] == "app=web"
    text = stowage("workspaces", "restore", "rs", "r1", "--dry-run", *p)
    assert text.exit_code == 0 and text.stdout.startswith("Workspace restore ")


def test_roles_and_deletes(stowage: Run, server: StowageServer, world: World) -> None:
    p = ("-p", world.project)
    a = world.name("a")
    assert stowage("workspaces", "create", "roles", "-c", a, *p).exit_code == 0
    with server.client() as http:
        tokens = {
            role: http.post("/api/v1/tokens", json={"name": _name(role), "role": role}).json()["token"]
            for role in ("viewer", "editor")
        }
    assert stowage("workspaces", "list", *p, token=tokens["viewer"]).exit_code == 0
    viewer = stowage("workspaces", "backup", "roles", "v1", *p, token=tokens["viewer"])
    assert viewer.exit_code == 1
    with PlayedAgent(server, world.clusters["a"], "e1-" + a):
        assert (
            stowage("workspaces", "backup", "roles", "e1", "--wait", *FAST, *p, token=tokens["editor"]).exit_code == 0
        )
    editor = stowage("workspaces", "delete-backup", "roles", "e1", "--yes", *p, token=tokens["editor"])
    assert editor.exit_code == 1
    assert stowage("workspaces", "delete", "roles", "--yes", *p, token=tokens["editor"]).exit_code == 1
    # The admin may: the backup goes to Deleting (no AWS identity here, so its objects cannot go yet).
    deleting = _json(stowage("workspaces", "delete-backup", "roles", "e1", "--yes", *p, "-o", "json"))
    assert {c["phase"] for c in deleting["clusters"]} <= {"Deleting", "Completed"}
    refused = stowage("workspaces", "delete", "roles", *p, input="n\n")
    assert refused.exit_code == 1
    assert stowage("workspaces", "delete", "roles", "--yes", *p).exit_code == 0
    assert stowage("workspaces", "show", "roles", *p).exit_code == 1
