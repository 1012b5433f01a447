"""``stowage restores`` against a real server; the destination cluster's agent is played over its real HTTP protocol.

No Kubernetes here: a thread of the test is the agent (heartbeat → work of kind ``restore``, claim, progress with
``itemsRestored`` and item batches, complete with ``summary``, ``problems`` and ``items``) with the destination
cluster's agent token, exactly as ``stowage agent`` speaks to the server. A restore needs a Completed backup, so
each test first completes one through the same protocol.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from typer.testing import Result

from stowage.cli.client import UsageProblem
from stowage.cli.progress import ProgressLine
from stowage.cli.restores import bar, parse_mapping, problems_text, tally
from tests.agents.helpers import agent_client
from tests.cli.conftest import Run
from tests.cli.test_backups import FAST, Agent, _cluster, _json, _name, _now
from tests.support.servers import StowageServer

PLAN = [
    {"apiVersion": "v1", "kind": "Namespace", "name": "shop-copy", "action": "create"},
    {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop-copy", "name": "settings", "action": "create"},
    {
        "apiVersion": "v1",
        "kind": "Service",
        "namespace": "shop-copy",
        "name": "web",
        "action": "conflict",
        "reason": "NodePort 30080 is taken by default/other",
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "shop-copy",
        "name": "api",
        "action": "skip",
        "reason": "exists, same",
    },
]
PROBLEMS = [
    {
        "code": "node-port-clash",
        "message": "NodePort 30080 of shop/web is taken by default/other in the destination.",
        "remedy": "Restore without --preserve-node-ports, or free the port.",
    },
    {
        "code": "storage-class-missing",
        "message": "StorageClass gp3 is not in the destination.",
        "remedy": "Create StorageClass gp3 first.",
    },
]


class RestoreAgent:
    """The destination's agent played from a thread: one restore of a backup, step by step, over the real protocol."""

    def __init__(
        self,
        server: StowageServer,
        cluster: dict[str, Any],
        backup: str,
        *,
        steps: Sequence[tuple[int, int, Sequence[dict[str, Any]]]] = ((4, 0, ()), (4, 2, PLAN[:2]), (4, 4, ())),
        outcome: dict[str, Any] | None = None,
        pause: float = 0.5,
        release: threading.Event | None = None,
    ) -> None:
        self._server, self._cluster, self._backup = server, cluster, backup
        self._steps, self._pause, self._release = steps, pause, release
        self._outcome = outcome or {"phase": "Completed", "summary": {"created": 4}}
        self._errors: list[BaseException] = []
        self.claimed = threading.Event()
        self.job: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RestoreAgent:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None and self._release is not None:
            self._release.set()
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
            self.claimed.set()

    def _work(self, agent: httpx.Client) -> None:
        deadline = time.monotonic() + 30
        while not self.job:
            assert time.monotonic() < deadline, f"no restore job of backup {self._backup}"
            work = agent.post("/api/v1/agent/heartbeat", json={"version": "test"}).json()["work"]
            found = [w for w in work if w["kind"] == "restore" and w["params"]["backupName"] == self._backup]
            if found:
                self.job = found[0]
            else:
                time.sleep(0.1)
        jobs = f"/api/v1/agent/jobs/{self.job['id']}"
        claim = agent.post(f"{jobs}/claim")
        assert claim.status_code == 200, claim.text
        self.claimed.set()
        for i, (total, done, items) in enumerate(self._steps):
            logs = [{"at": _now(), "level": "info", "message": f"step {i + 1}"}]
            body = {"totalItems": total, "itemsRestored": done, "items": list(items), "logs": logs}
            answer = agent.post(f"{jobs}/progress", json=body)
            assert answer.status_code == 200, answer.text
            time.sleep(self._pause)
        if self._release is not None:
            assert self._release.wait(30), "the test never released the agent"
        total, done, _ = self._steps[-1] if self._steps else (0, 0, ())
        body = {
            "totalItems": total,
            "itemsRestored": done,
            "logs": [{"at": _now(), "level": "info", "message": f"restore ended {self._outcome['phase']}"}],
            **self._outcome,
        }
        answer = agent.post(f"{jobs}/complete", json=body)
        assert answer.status_code == 200, answer.text


def completed_backup(stowage: Run, server: StowageServer, cluster: dict[str, Any]) -> str:
    """A Completed backup of the cluster (its agent played over the protocol)."""
    name = _name("bk")
    with Agent(server, cluster, name, steps=((4, 4),), logs=(), pause=0):
        assert stowage("backups", "create", cluster["name"], name).exit_code == 0
    return name


def restore(stowage: Run, *args: str) -> Result:
    """``stowage restores create ...``, again after a second when a restore of that backup was made this second."""
    for _ in range(10):
        result = stowage("restores", "create", *args)
        if "try again in a second" not in result.output:
            return result
        time.sleep(0.3)  # restore names carry the second they were made in (see the report)
    return result


@pytest.fixture
def source(server: StowageServer) -> dict[str, Any]:
    """A fresh cluster of the module's server (the backed-up one)."""
    return _cluster(server, "src")


# -- pure helpers ----------------------------------------------------------------------------------------
def test_mapping_tally_bar_and_problems_read_well() -> None:
    assert parse_mapping(["shop=shop-copy", " web = web2 "]) == {"shop": "shop-copy", "web": "web2"}
    for bad in (["shop"], ["=x"], ["shop="], ["a=b", "a=c"]):
        with pytest.raises(UsageProblem):
            parse_mapping(bad)
    assert tally({"skipped": 2, "created": 8, "zzz": 1}) == "created 8, skipped 2, zzz 1"
    assert tally({}) == "-" and tally(None) == "-"
    line = bar({"restoreName": "r", "phase": "InProgress", "progress": {"totalItems": 10, "itemsRestored": 5}})
    assert line == "r  InProgress  [" + "#" * 15 + "-" * 15 + "]  5/10 items"
    assert problems_text([]) == ""
    assert problems_text(PROBLEMS[:1]) == (
        "Problems found ahead (1):\n"
        "  - [node-port-clash] NodePort 30080 of shop/web is taken by default/other in the destination.\n"
        "    Remedy: Restore without --preserve-node-ports, or free the port."
    )

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    progress = ProgressLine(bar, tty)
    state = {"restoreName": "r", "phase": "New", "progress": {"totalItems": 0, "itemsRestored": 0}}
    progress.show(state)
    progress.show(state)
    progress.close()
    assert tty.getvalue() == f"\r\x1b[2K{bar(state)}\n"


# -- create ----------------------------------------------------------------------------------------------
def test_create_sends_every_option(stowage: Run, server: StowageServer, source: dict[str, Any]) -> None:
    backup = completed_backup(stowage, server, source)
    destination = _cluster(server, "dst")
    created = _json(
        restore(
            stowage, source["name"], backup, "--to", destination["name"], "-n", "shop", "--namespace", "web",
            "--exclude-namespace", "kube-system", "--map", "shop=shop-copy", "--map", "web=web-copy",
            "--cluster-resources", "Never", "--no-restore-pvs", "--preserve-node-ports", "--existing", "update",
            "-l", "app in (a,b)", "--dry-run", "-o", "json",
        )
    )  # fmt: skip
    assert created["phase"] == "New" and created["dryRun"] is True
    assert (created["destinationClusterId"], created["sourceClusterId"]) == (destination["id"], source["id"])
    assert created["includeNamespaces"] == ["shop", "web"] and created["excludedNamespaces"] == ["kube-system"]
    assert created["namespaceMapping"] == {"shop": "shop-copy", "web": "web-copy"}
    assert created["includeClusterResourceMode"] == "Never"
    assert (created["restorePVs"], created["preserveNodePorts"]) == (False, True)
    assert created["existingResourcePolicy"] == "update" and created["labelSelector"] == "app in (a,b)"
    # What the destination's agent receives is what was typed.
    with agent_client(server, destination["agentToken"]) as agent:
        work = agent.post("/api/v1/agent/heartbeat", json={}).json()["work"]
    job = next(w for w in work if w["kind"] == "restore")
    assert job["params"]["restoreName"] == created["restoreName"] and job["params"]["backupName"] == backup
    request = job["params"]["request"]
    assert request["namespaceMapping"] == {"shop": "shop-copy", "web": "web-copy"}
    assert (request["restorePVs"], request["preserveNodePorts"], request["dryRun"]) == (False, True, True)
    assert request["existingResourcePolicy"] == "update" and request["includeNamespaces"] == ["shop", "web"]

    # Defaults: into the source itself, restore PVs, skip existing objects, Auto, a real restore; by ids as well.
    plain = _json(restore(stowage, source["id"], backup, "-o", "json"))
    assert plain["destinationClusterId"] == source["id"] and plain["dryRun"] is False
    assert (plain["restorePVs"], plain["preserveNodePorts"], plain["existingResourcePolicy"]) == (True, False, "none")
    assert (plain["includeClusterResourceMode"], plain["includeNamespaces"], plain["namespaceMapping"]) == (
        "Auto",
        [],
        {},
    )
    people = restore(stowage, source["name"], backup, "--existing", "skip")
    assert people.exit_code == 0, people.output
    name = re.search(r": (\S+) \(New\)\.", people.stdout)
    assert name and f"Requested a restore of backup {backup} into cluster {source['name']}" in people.stdout
    assert f"stowage restores show {source['name']} {name.group(1)}" in people.stdout
    preview = restore(stowage, source["name"], backup, "--dry-run")
    assert f"Requested a preview of backup {backup}" in preview.stdout


def test_usage_errors_exit_2_and_server_refusals_one_line(
    stowage: Run, server: StowageServer, source: dict[str, Any]
) -> None:
    name = source["name"]
    for bad in (
        ("--map", "shop"),
        ("--map", "shop=a", "--map", "shop=b"),
        ("--existing", "replace"),
        ("--cluster-resources", "Sometimes"),
        ("--interval", "0"),
    ):
        result = stowage("restores", "create", name, "any", *bad)
        assert result.exit_code == 2, (bad, result.output)
    assert (
        "--map takes OLD=NEW (e.g. --map shop=shop-copy), not 'shop'."
        in stowage("restores", "create", name, "any", "--map", "shop").stderr
    )
    assert stowage("restores", "items", name, "any", "--action", "deleted").exit_code == 2

    unfinished = _name("new")
    assert stowage("backups", "create", name, unfinished).exit_code == 0
    refused = stowage("restores", "create", name, unfinished)
    assert refused.exit_code == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"Backup '{unfinished}' is New: only Completed or PartiallyFailed backups can be restored." in refused.stderr

    backup = completed_backup(stowage, server, source)
    ghost = stowage("restores", "create", name, backup, "--to", "ghost-cluster", "-o", "json")
    assert ghost.exit_code == 1 and json.loads(ghost.stdout)["details"]["field"] == "destinationClusterId"
    assert "No cluster 'ghost-cluster'" in ghost.stderr
    bad_ns = stowage("restores", "create", name, backup, "-n", "Shop")
    assert bad_ns.exit_code == 1 and "'Shop' is not a namespace name" in bad_ns.stderr
    twice = stowage("restores", "create", name, backup, "--map", "a=x", "--map", "b=x")
    assert twice.exit_code == 1 and "map each to its own namespace" in twice.stderr
    missing = stowage("restores", "create", name, "no-such-backup")
    assert missing.exit_code == 1 and "No backup 'no-such-backup'" in missing.stderr
    assert stowage("restores", "list", "ghost-cluster").exit_code == 1


# -- --wait -----------------------------------------------------------------------------------------------
def test_wait_on_a_preview_shows_progress_the_plan_counts_and_the_problems(
    stowage: Run, server: StowageServer, source: dict[str, Any]
) -> None:
    backup = completed_backup(stowage, server, source)
    outcome = {
        "phase": "Completed",
        "summary": {"create": 2, "skip": 1, "conflict": 1},
        "problems": PROBLEMS,
        "items": PLAN[2:],
    }
    steps = ((4, 0, ()), (4, 0, PLAN[:2]))
    with RestoreAgent(server, source, backup, steps=steps, outcome=outcome):
        result = restore(stowage, source["name"], backup, "--map", "shop=shop-copy", "--dry-run", "--wait", *FAST)
    assert result.exit_code == 0, result.output
    bars = result.stderr.splitlines()
    assert any(re.fullmatch(rf"{backup}-\d{{14}}  InProgress  \[-{{30}}\]  0/4 items", b) for b in bars), bars
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(
        rf"Preview {backup}-\d{{14}} Completed: plan for 4 items, took \d+s; create 2, skip 1, conflict 1\.", lines[0]
    ), lines[0]
    assert lines[1:] == problems_text(PROBLEMS).splitlines()


def test_wait_exit_codes_completed_0_partially_failed_4_failed_1(
    stowage: Run, server: StowageServer, source: dict[str, Any]
) -> None:
    backup = completed_backup(stowage, server, source)
    with RestoreAgent(server, source, backup, pause=0.2):
        done = restore(stowage, source["name"], backup, "--wait", *FAST)
    assert done.exit_code == 0, done.output
    assert re.fullmatch(
        rf"Restore {backup}-\d{{14}} Completed: 4/4 items restored, took \d+s; created 4\.", done.stdout.strip()
    ), done.stdout
    assert done.stderr.splitlines()[-1].endswith(f"  Completed  [{'#' * 30}]  4/4 items")

    partial = {
        "phase": "PartiallyFailed",
        "failureReason": "1 item failed: see the items.",
        "summary": {"created": 3, "failed": 1},
        "items": [{"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "db", "action": "failed",
                   "reason": "forbidden: add create on secrets to the agent's ClusterRole"}],
    }  # fmt: skip
    with RestoreAgent(server, source, backup, steps=((4, 3, ()),), pause=0, outcome=partial):
        result = restore(stowage, source["name"], backup, "--wait", "-o", "json", *FAST)
    assert result.exit_code == 4, result.output
    final = json.loads(result.stdout)
    assert final["phase"] == "PartiallyFailed" and final["summary"] == {"created": 3, "failed": 1}
    assert result.stderr.strip() == (
        f"Warning: restore {final['restoreName']} PartiallyFailed: 1 item failed: see the items. See `stowage restores "
        f"items {source['name']} {final['restoreName']} --action failed` for the items that failed."
    )

    reason = (
        "The backup's tarball does not match its SHA-256 manifest: run `stowage backups verify`, then restore again."
    )
    failed = {"phase": "Failed", "failureReason": reason}
    with RestoreAgent(server, source, backup, steps=((0, 0, ()),), pause=0, outcome=failed):
        result = restore(stowage, source["name"], backup, "--wait", *FAST)
    assert result.exit_code == 1, result.output
    started = re.match(rf"Restore ({backup}-\d{{14}}(?:-\d+)?) Failed: 0 items restored", result.stdout)
    assert started, result.stdout
    assert result.stderr.splitlines()[-1] == f"Error: restore {started.group(1)} Failed: {reason}"


# -- list, show, items, logs -----------------------------------------------------------------------------
def test_list_show_items_and_logs(stowage: Run, server: StowageServer, source: dict[str, Any]) -> None:
    backup = completed_backup(stowage, server, source)
    destination = _cluster(server, "dst")
    outcome = {"phase": "Completed", "summary": {"create": 2, "skip": 1, "conflict": 1}, "problems": PROBLEMS,
               "items": PLAN[2:]}  # fmt: skip
    release = threading.Event()
    with RestoreAgent(server, destination, backup, steps=((4, 0, PLAN[:2]),), pause=0, outcome=outcome,
                      release=release) as agent:  # fmt: skip
        preview = _json(
            restore(stowage, source["name"], backup, "--to", destination["name"], "--dry-run", "-o", "json")
        )
        assert agent.claimed.wait(30)
        deadline = time.monotonic() + 10
        while "step 1" not in stowage("restores", "logs", destination["name"], preview["restoreName"]).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # While the agent still runs, --follow keeps polling; it ends by itself once the restore has finished.
        threading.Timer(0.5, release.set).start()
        followed = stowage("restores", "logs", destination["name"], preview["restoreName"], "-f", *FAST)
    assert followed.exit_code == 0, followed.output
    assert [line.split(maxsplit=3)[3] for line in followed.stdout.splitlines()] == ["step 1", "restore ended Completed"]
    records = [json.loads(x) for x in stowage("restores", "logs", destination["name"], preview["restoreName"],
                                                "-o", "json").stdout.splitlines()]  # fmt: skip
    assert [r["message"] for r in records] == ["step 1", "restore ended Completed"]

    name = preview["restoreName"]
    listed = stowage("restores", "list", destination["name"])
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.strip().splitlines()
    assert re.split(r"\s{2,}", header) == [
        "NAME",
        "BACKUP",
        "SOURCE",
        "PHASE",
        "DRY RUN",
        "CREATED",
        "ITEMS",
        "SUMMARY",
    ]
    cells = re.split(r"\s{2,}", rows[0])
    assert cells[:5] == [name, backup, source["name"], "Completed", "yes"]
    assert cells[6:] == ["0/4", "create 2, skip 1, conflict 1"]
    page = _json(stowage("restores", "list", destination["id"], "-o", "json"))
    assert page["total"] == 1 and page["items"][0]["restoreName"] == name

    shown = stowage("restores", "show", destination["name"], name)
    assert shown.exit_code == 0, shown.output
    head, problems = shown.stdout.split("\n\n", 1)
    props = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in head.splitlines())
    assert props["Kind"] == "preview (dry run: nothing changed)" and props["Phase"] == "Completed"
    assert props["Backup"] == f"{backup} of {source['name']}" and props["Items"] == "0/4"
    assert (
        props["Summary"] == "create 2, skip 1, conflict 1" and props["Existing objects"] == "skip (leave as they are)"
    )
    assert problems.strip() == problems_text(PROBLEMS)
    as_json = _json(stowage("restores", "show", destination["name"], name, "-o", "json"))
    assert as_json["problems"] == PROBLEMS and as_json["summary"] == {"create": 2, "skip": 1, "conflict": 1}

    items = stowage("restores", "items", destination["name"], name)
    assert items.exit_code == 0, items.output
    header, *rows = items.stdout.strip().splitlines()
    assert re.split(r"\s{2,}", header) == ["ACTION", "KIND", "NAMESPACE", "NAME", "REASON"]
    assert [re.split(r"\s{2,}", row) for row in rows] == [
        ["create", "v1/Namespace", "-", "shop-copy", "-"],
        ["create", "v1/ConfigMap", "shop-copy", "settings", "-"],
        ["conflict", "v1/Service", "shop-copy", "web", "NodePort 30080 is taken by default/other"],
        ["skip", "apps/v1/Deployment", "shop-copy", "api", "exists, same"],
    ]
    conflicts = _json(stowage("restores", "items", destination["name"], name, "--action", "conflict", "-o", "json"))
    assert conflicts["total"] == 1 and conflicts["items"][0]["name"] == "web"
    paged = stowage("restores", "items", destination["name"], name, "--limit", "1", "--offset", "1")
    assert "v1/ConfigMap" in paged.stdout and "Showing 2-2 of 4." in paged.stdout
    none = stowage("restores", "items", destination["name"], name, "--action", "failed")
    assert none.exit_code == 0 and f"No items with action failed in restore {name} yet." in none.stdout

    missing = stowage("restores", "show", destination["name"], "nope")
    assert missing.exit_code == 1 and "No restore 'nope'" in missing.stderr
    empty = stowage("restores", "list", source["name"])
    assert empty.exit_code == 0 and f"No restores into cluster {source['name']}." in empty.stdout
