"""``stowage backups`` against a real server; the cluster's agent is played over its real HTTP protocol.

No Kubernetes here: a thread of the test is the agent (heartbeat → work, claim, progress with log lines,
complete) with the cluster's agent token, exactly as ``stowage agent`` speaks to the server. The server of
this module has no AWS identity, so deleting a backup's objects fails with the reason; the round trip with a
real bucket (contents read from it, a deletion that succeeds) runs against ministack at the end.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from typer.testing import Result

from stowage.cli.backups import PRESET_CRONS, SchedulePreset, bar, duration, human_size
from stowage.cli.progress import ProgressLine
from stowage.domain.schedules import PRESETS
from tests.agents.helpers import agent_client, create_location, register
from tests.cli.conftest import Run, invoke
from tests.support.aws_accounts import AwsAccounts
from tests.support.servers import StowageServer

FAST = ("--interval", "0.1")


def _name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _cluster(server: StowageServer, stem: str = "c") -> dict[str, Any]:
    """A registered cluster (with its agent token) in a project that has a default location."""
    with server.client() as http:
        if not http.get("/api/v1/projects/default/backup-locations").json()["items"]:
            create_location(http, "primary", isDefault=True)
        return register(http, _name(stem))


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


class Agent:
    """The cluster's agent played from a thread over the real protocol: one backup, step by step."""

    def __init__(
        self,
        server: StowageServer,
        cluster: dict[str, Any],
        backup: str,
        *,
        steps: Sequence[tuple[int, int]] = ((10, 0), (10, 5), (10, 10)),
        logs: Sequence[str] = ("listing resources", "uploading"),
        outcome: dict[str, Any] | None = None,
        pause: float = 0.6,
        release: threading.Event | None = None,
    ) -> None:
        self._server, self._cluster, self._backup = server, cluster, backup
        self._steps, self._logs, self._pause, self._release = steps, logs, pause, release
        self._outcome = outcome or {"phase": "Completed", "sizeBytes": 1536 * 1024}
        self._errors: list[BaseException] = []
        self.claimed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Agent:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None and self._release is not None:
            self._release.set()  # the test failed: let the agent finish instead of holding the thread 30 s
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
        job: dict[str, Any] | None = None
        while job is None:
            assert time.monotonic() < deadline, f"no job for backup {self._backup}"
            work = agent.post("/api/v1/agent/heartbeat", json={"version": "test"}).json()["work"]
            job = next((w for w in work if w["params"]["backupName"] == self._backup), None)
            if job is None:
                time.sleep(0.1)
        jobs = f"/api/v1/agent/jobs/{job['id']}"
        claim = agent.post(f"{jobs}/claim")
        assert claim.status_code == 200, claim.text
        self.claimed.set()
        for i, (total, done) in enumerate(self._steps):
            lines = [{"at": _now(), "level": "info", "message": self._logs[i]}] if i < len(self._logs) else []
            answer = agent.post(f"{jobs}/progress", json={"totalItems": total, "itemsBackedUp": done, "logs": lines})
            assert answer.status_code == 200, answer.text
            time.sleep(self._pause)
        if self._release is not None:
            assert self._release.wait(30), "the test never released the agent"
        total, done = self._steps[-1] if self._steps else (0, 0)
        body = {
            "totalItems": total,
            "itemsBackedUp": done,
            "logs": [{"at": _now(), "level": "info", "message": f"backup ended {self._outcome['phase']}"}],
            **self._outcome,
        }
        answer = agent.post(f"{jobs}/complete", json=body)
        assert answer.status_code == 200, answer.text


@pytest.fixture
def cluster(server: StowageServer) -> dict[str, Any]:
    """A fresh cluster of the module's server."""
    return _cluster(server)


# -- pure helpers ----------------------------------------------------------------------------------------
def test_presets_are_the_domains() -> None:
    assert {p.value for p in SchedulePreset} == set(PRESET_CRONS)
    assert {p.key: p.cron for p in PRESETS if p.cron} == PRESET_CRONS


def test_sizes_durations_and_the_bar_read_well() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**3)] == ["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]
    start = "2025-03-04T05:00:00+00:00"
    assert duration(start, "2025-03-04T05:00:42+00:00") == "42s"
    assert duration(start, "2025-03-04T06:02:03+00:00") == "1h 02m 03s"
    assert duration(start, None) == "-"
    line = bar({"backupName": "b", "phase": "InProgress", "progress": {"totalItems": 10, "itemsBackedUp": 5}})
    assert line == "b  InProgress  [" + "#" * 15 + "-" * 15 + "]  5/10 items"


def test_the_bar_redraws_in_place_on_a_terminal_and_adds_lines_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    states = [
        {"backupName": "b", "phase": "InProgress", "progress": {"totalItems": 4, "itemsBackedUp": n}} for n in (1, 1, 4)
    ]
    tty, log = Terminal(), io.StringIO()
    for stream in (tty, log):
        line = ProgressLine(bar, stream)
        for state in states:
            line.show(state)
        line.close()
    assert tty.getvalue() == f"\r\x1b[2K{bar(states[0])}\r\x1b[2K{bar(states[2])}\n"
    assert log.getvalue() == f"{bar(states[0])}\n{bar(states[2])}\n"  # unchanged progress is not repeated


# -- create ----------------------------------------------------------------------------------------------
def test_create_sends_every_option(stowage: Run, server: StowageServer, cluster: dict[str, Any]) -> None:
    with server.client() as http:
        other = create_location(http, _name("other"))
    name = _name("full")
    created = _json(
        stowage(
            "backups", "create", cluster["name"], name, "--location", other["name"], "--ttl-hours", "48",
            "--include-all-disks", "--cluster-resources", "Never", "-n", "shop", "--namespace", "web",
            "--exclude-namespace", "kube-system", "--include-resource", "deployments.apps",
            "--include-resource", "configmaps", "--exclude-resource", "secrets", "-l", "app in (a,b)", "-o", "json",
        )
    )  # fmt: skip
    assert created["phase"] == "New"
    assert created["backupLocationId"] == other["id"]
    assert created["durationInHours"] == 48
    assert created["includeAllDisks"] is True
    assert created["includeClusterResourceMode"] == "Never"
    assert created["namespaces"] == ["shop", "web"]
    assert created["excludedNamespaces"] == ["kube-system"]
    assert created["includedResources"] == ["deployments.apps", "configmaps"]
    assert created["excludedResources"] == ["secrets"]
    assert created["labelSelector"] == "app in (a,b)"
    # What the agent receives is what was typed.
    with agent_client(server, cluster["agentToken"]) as agent:
        job = agent.post("/api/v1/agent/heartbeat", json={}).json()["work"][0]
    assert job["params"]["backupName"] == name and job["locationId"] == other["id"]
    request = job["params"]["request"]
    assert request["namespaces"] == ["shop", "web"] and request["excludedResources"] == ["secrets"]

    # Defaults: the project's default location, 720 hours, Auto, everything; by cluster id as well.
    plain = _json(stowage("backups", "create", cluster["id"], "plain", "-o", "json"))
    assert plain["backupLocationName"] == "primary"
    assert (plain["durationInHours"], plain["includeClusterResourceMode"]) == (720, "Auto")
    assert (plain["includeAllDisks"], plain["namespaces"], plain["labelSelector"]) == (False, [], None)

    people = stowage("backups", "create", cluster["name"], "people")
    assert people.exit_code == 0, people.output
    assert f"Requested backup people of cluster {cluster['name']} (location primary): New." in people.stdout
    assert f"stowage backups logs {cluster['name']} people -f" in people.stdout


def test_bad_values_are_usage_errors_and_server_refusals_one_line(stowage: Run, cluster: dict[str, Any]) -> None:
    for bad in (("--cluster-resources", "Sometimes"), ("--ttl-hours", "0")):
        result = stowage("backups", "create", cluster["name"], "b1", *bad)
        assert result.exit_code == 2, result.output
    refused = stowage("backups", "create", cluster["name"], "Nightly_1")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: ") and len(refused.stderr.strip().splitlines()) == 1
    assert "nightly-1" in refused.stderr
    selector = stowage("backups", "create", cluster["name"], "b2", "-l", "app=web,,")
    assert selector.exit_code == 1 and "kubectl get -l" in selector.stderr
    unknown = stowage("backups", "create", cluster["name"], "b3", "--location", "nowhere", "-o", "json")
    assert unknown.exit_code == 1
    assert json.loads(unknown.stdout)["details"]["field"] == "backupLocationId"
    ghost = stowage("backups", "list", "ghost-cluster")
    assert ghost.exit_code == 1 and "No cluster 'ghost-cluster'" in ghost.stderr
    twice = stowage("backups", "create", cluster["name"], "once")
    assert twice.exit_code == 0
    again = stowage("backups", "create", cluster["name"], "once")
    assert again.exit_code == 1 and "already has a backup named 'once'" in again.stderr


def test_wait_shows_progress_then_the_summary(stowage: Run, server: StowageServer, cluster: dict[str, Any]) -> None:
    name = _name("waited")
    with Agent(server, cluster, name):
        result = stowage("backups", "create", cluster["name"], name, "--wait", *FAST)
    assert result.exit_code == 0, result.output
    bars = result.stderr.splitlines()
    assert f"{name}  InProgress  [{'#' * 15}{'-' * 15}]  5/10 items" in bars
    assert bars[-1] == f"{name}  Completed  [{'#' * 30}]  10/10 items"
    summary = result.stdout.strip()
    assert re.fullmatch(
        rf"Backup {name} Completed: 10/10 items, 1\.5 MiB, took \d+s, 0 warnings, 0 errors, 0 volume snapshots\.",
        summary,
    ), summary


def test_wait_exit_codes_failed_1_partially_failed_4(
    stowage: Run, server: StowageServer, cluster: dict[str, Any]
) -> None:
    reason = "Listing deployments.apps failed: forbidden. Give the agent's ServiceAccount list on deployments."
    failed = _name("failed")
    with Agent(
        server, cluster, failed, steps=((4, 1),), pause=0.1, outcome={"phase": "Failed", "failureReason": reason}
    ):
        result = stowage("backups", "create", cluster["name"], failed, "--wait", *FAST)
    assert result.exit_code == 1, result.output
    assert f"Backup {failed} Failed: 1/4 items" in result.stdout
    assert result.stderr.splitlines()[-1] == f"Error: backup {failed} Failed: {reason}"

    partial = _name("partial")
    outcome = {
        "phase": "PartiallyFailed",
        "failureReason": "1 volume snapshot failed.",
        "errors": [{"message": "snapshot of PV pv-1 failed: add ec2:CreateSnapshot"}],
        "warnings": [{"message": "skipped", "namespace": "shop", "resource": "pods", "name": "p"}],
    }
    with Agent(server, cluster, partial, pause=0.1, outcome=outcome):
        result = stowage("backups", "create", cluster["name"], partial, "--wait", "-o", "json", *FAST)
    assert result.exit_code == 4, result.output
    final = json.loads(result.stdout)
    assert final["phase"] == "PartiallyFailed" and (final["warnings"], final["errors"]) == (1, 1)
    # JSON is for scripts: no progress bar, the warning line only.
    assert result.stderr.strip() == (
        f"Warning: backup {partial} PartiallyFailed: 1 volume snapshot failed. See `stowage backups contents "
        f"{cluster['name']} {partial}` for the items with errors."
    )


# -- list, show, logs, contents ------------------------------------------------------------------------------
def test_list_and_show(stowage: Run, server: StowageServer, cluster: dict[str, Any]) -> None:
    reason = "The location's bucket is gone: recreate it, then run the backup again."
    with Agent(
        server, cluster, "broken", steps=((3, 0),), pause=0, outcome={"phase": "Failed", "failureReason": reason}
    ):
        assert stowage("backups", "create", cluster["name"], "broken").exit_code == 0
    assert (
        stowage(
            "backups", "create", cluster["name"], "scoped", "-n", "shop", "-n", "web", "--include-all-disks"
        ).exit_code
        == 0
    )
    listed = stowage("backups", "list", cluster["name"])
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.strip().splitlines()
    assert re.split(r"\s{2,}", header) == [
        "NAME", "PHASE", "CREATED", "EXPIRES", "NAMESPACES", "DISKS", "CLUSTER RESOURCES", "ITEMS", "SIZE",
    ]  # fmt: skip
    cells = {row.split()[0]: re.split(r"\s{2,}", row) for row in rows}
    assert cells["scoped"][1] == "New" and cells["scoped"][4:] == ["shop,web", "yes", "Auto", "0", "0 B"]
    assert cells["broken"][1] == "Failed" and cells["broken"][4:] == ["all", "no", "Auto", "0/3", "0 B"]

    page = _json(stowage("backups", "list", cluster["name"], "--limit", "1", "--offset", "1", "-o", "json"))
    assert page["total"] == 2 and [b["backupName"] for b in page["items"]] == ["broken"]  # newest first
    assert "Showing 1-1 of 2." in stowage("backups", "list", cluster["name"], "--limit", "1").stdout

    shown = stowage("backups", "show", cluster["name"], "broken")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0] == f"Failed: {reason}"
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in shown.stdout.splitlines() if "  " in line)
    assert lines["Phase"] == "Failed" and lines["Failure reason"] == reason
    assert lines["Items"] == "0/3" and lines["Namespaces"] == "all" and lines["Keep for"] == "720 h"
    assert (lines["Warnings"], lines["Errors"], lines["Volume snapshots"]) == ("0", "0", "0")
    by_id = _json(stowage("backups", "show", cluster["id"], page["items"][0]["id"], "-o", "json"))
    assert by_id["backupName"] == "broken" and by_id["failureReason"] == reason
    missing = stowage("backups", "show", cluster["name"], "nope")
    assert missing.exit_code == 1 and "No backup 'nope'" in missing.stderr

    empty = _cluster(server, "empty")
    none = stowage("backups", "list", empty["name"])
    assert none.exit_code == 0 and "No backups of cluster" in none.stdout


def test_logs_and_follow_until_finished(stowage: Run, server: StowageServer, cluster: dict[str, Any]) -> None:
    name = _name("logged")
    assert stowage("backups", "create", cluster["name"], name).exit_code == 0
    release = threading.Event()
    logs = ("listing resources", "page 2 of 2", "uploading")
    with Agent(server, cluster, name, logs=logs, pause=0.05, release=release) as agent:
        assert agent.claimed.wait(30)
        deadline = time.monotonic() + 10
        while len(stowage("backups", "logs", cluster["name"], name).stdout.splitlines()) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        so_far = stowage("backups", "logs", cluster["name"], name)
        assert so_far.exit_code == 0, so_far.output
        assert [line.split(maxsplit=3)[3] for line in so_far.stdout.splitlines()] == list(logs)
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  info     listing resources$", so_far.stdout.splitlines()[0])
        # While the agent still runs, --follow keeps polling; it ends by itself once the backup has finished.
        threading.Timer(0.5, release.set).start()
        followed = stowage("backups", "logs", cluster["name"], name, "--follow", *FAST)
    assert followed.exit_code == 0, followed.output
    assert [line.split(maxsplit=3)[3] for line in followed.stdout.splitlines()] == [*logs, "backup ended Completed"]
    as_json = stowage("backups", "logs", cluster["name"], name, "-o", "json")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["message"] for r in records] == [*logs, "backup ended Completed"]
    assert {"id", "at", "level", "message"} <= set(records[0])


def test_contents_of_a_running_backup_is_refused_with_the_reason(
    stowage: Run, server: StowageServer, cluster: dict[str, Any]
) -> None:
    name = _name("running")
    release = threading.Event()
    with Agent(server, cluster, name, steps=((5, 1),), pause=0, release=release) as agent:
        assert stowage("backups", "create", cluster["name"], name).exit_code == 0
        assert agent.claimed.wait(30)
        result = stowage("backups", "contents", cluster["name"], name)
        release.set()
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == f"Error: Backup '{name}' is InProgress: its contents are listed once it has completed."
    )


# -- delete ------------------------------------------------------------------------------------------------
def test_delete_asks_unless_yes_and_wait_shows_why_it_failed(
    stowage: Run, server: StowageServer, cluster: dict[str, Any]
) -> None:
    assert stowage("backups", "create", cluster["name"], "doomed").exit_code == 0
    kept = stowage("backups", "delete", cluster["name"], "doomed", input="n\n")
    assert kept.exit_code == 1
    assert "Its objects in location primary and its 0 EBS snapshots are removed for good." in kept.stderr
    assert _json(stowage("backups", "show", cluster["name"], "doomed", "-o", "json"))["phase"] == "New"

    asked = stowage("backups", "delete", cluster["name"], "doomed", input="y\n")
    assert asked.exit_code == 0, asked.output
    assert "Deleting backup doomed: its objects in location primary and its EBS snapshots are being removed." in (
        asked.stdout
    )
    # This server has no AWS identity, so the control plane cannot reach the bucket: Failed with the reason.
    assert stowage("backups", "create", cluster["name"], "unreachable").exit_code == 0
    waited = stowage("backups", "delete", cluster["name"], "unreachable", "--yes", "--wait", *FAST)
    assert waited.exit_code == 1, waited.output
    assert waited.stderr.startswith("Error: deleting backup unreachable failed: Deleting backup 'unreachable' failed")
    assert "then delete the backup again" in waited.stderr
    assert _json(stowage("backups", "show", cluster["name"], "unreachable", "-o", "json"))["phase"] == "Failed"


# -- schedules -----------------------------------------------------------------------------------------------
def test_schedule_set_show_pause_resume_delete(stowage: Run, cluster: dict[str, Any]) -> None:
    name = cluster["name"]
    assert stowage("backups", "schedule", "show", name).exit_code == 1
    saved = _json(
        stowage(
            "backups", "schedule", "set", name, "--prefix", "weekly", "--preset", "weekly", "-n", "shop",
            "--exclude-resource", "secrets", "--cluster-resources", "Always", "--ttl-hours", "168",
            "--include-all-disks", "-l", "tier=db", "--location", "primary", "-o", "json",
        )
    )  # fmt: skip
    assert (saved["schedule"], saved["preset"], saved["paused"]) == ("0 0 * * 0", "weekly", False)
    assert saved["namespaces"] == ["shop"] and saved["excludedResources"] == ["secrets"]
    assert (saved["includeClusterResourceMode"], saved["durationInHours"]) == ("Always", 168)
    assert saved["includeAllDisks"] is True and saved["labelSelector"] == "tier=db"
    primary = _json(stowage("locations", "show", "primary", "-o", "json"))["location"]
    assert saved["backupLocationId"] == primary["id"]  # the name was resolved to the id
    assert datetime.fromisoformat(saved["nextRunAt"]).weekday() == 6

    shown = stowage("backups", "schedule", "show", name)
    assert shown.exit_code == 0, shown.output
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in shown.stdout.splitlines())
    assert lines["Schedule"] == "0 0 * * 0 (UTC, weekly)"
    assert lines["Backup names"] == f"weekly-{name}-<UTC timestamp>"
    assert lines["Paused"] == "no" and lines["Namespaces"] == "shop"

    paused = stowage("backups", "schedule", "pause", name)
    assert paused.exit_code == 0 and f"Paused the backup schedule of cluster {name}." in paused.stdout
    assert _json(stowage("backups", "schedule", "show", name, "-o", "json"))["paused"] is True
    resumed = stowage("backups", "schedule", "resume", name)
    assert resumed.exit_code == 0 and "missed runs are skipped" in resumed.stdout
    assert _json(stowage("backups", "schedule", "show", name, "-o", "json"))["paused"] is False

    for preset in SchedulePreset:
        again = _json(stowage("backups", "schedule", "set", name, "--prefix", "p", "--preset", preset, "-o", "json"))
        assert (again["preset"], again["schedule"]) == (preset.value, PRESET_CRONS[preset.value])
    custom = stowage("backups", "schedule", "set", name, "--prefix", "nightly", "--cron", "30 2 * * *", "--paused")
    assert custom.exit_code == 0, custom.output
    assert "30 2 * * * (UTC, custom)" in custom.stdout
    replaced = _json(stowage("backups", "schedule", "show", name, "-o", "json"))
    # A set replaces the whole schedule: the earlier filters are gone.
    assert replaced["paused"] is True and replaced["namespaces"] == [] and replaced["backupPrefix"] == "nightly"

    kept = stowage("backups", "schedule", "delete", name, input="n\n")
    assert kept.exit_code == 1
    assert stowage("backups", "schedule", "show", name).exit_code == 0
    removed = stowage("backups", "schedule", "delete", name, "--yes")
    assert removed.exit_code == 0 and "its backups stay until they expire" in removed.stdout
    gone = stowage("backups", "schedule", "show", name)
    assert gone.exit_code == 1 and "has no backup schedule" in gone.stderr


def test_schedule_refusals(stowage: Run, cluster: dict[str, Any]) -> None:
    name = cluster["name"]
    bad_cron = stowage("backups", "schedule", "set", name, "--prefix", "daily", "--cron", "every day")
    assert bad_cron.exit_code == 1
    assert bad_cron.stderr.strip() == (
        "Error: schedule 'every day' has 2 fields; a cron expression has five (minute hour day month weekday), "
        'e.g. "0 2 * * *" for every day at 02:00 UTC.'
    )
    invalid = stowage("backups", "schedule", "set", name, "--prefix", "daily", "--cron", "61 * * * *", "-o", "json")
    assert invalid.exit_code == 1 and json.loads(invalid.stdout)["details"]["field"] == "schedule"
    long_prefix = stowage("backups", "schedule", "set", name, "--prefix", "p" * 50, "--preset", "monthly")
    assert long_prefix.exit_code == 1
    assert f"backupPrefix is too long for cluster '{name}'" in long_prefix.stderr
    assert len(long_prefix.stderr.strip().splitlines()) == 1
    for usage in ((), ("--preset", "weekly", "--cron", "0 0 * * 0"), ("--preset", "daily")):
        result = stowage("backups", "schedule", "set", name, "--prefix", "p", *usage)
        assert result.exit_code == 2, (usage, result.output)


# -- with a real bucket (ministack, AUTH=true) -------------------------------------------------------------
@pytest.fixture
def live(aws: AwsAccounts, server_factory: Callable[..., StowageServer]) -> Iterator[tuple[StowageServer, str, Run]]:
    """A server whose AWS identity is ministack's platform account, with a real bucket behind its location."""
    server = server_factory(extra_env=aws.control_plane_env())
    with server.client() as http:
        external_id = http.get("/api/v1/projects/default").json()["externalId"]
        bucket = aws.create_bucket(f"cli-{uuid.uuid4().hex[:8]}", "eu-west-1")
        role = aws.create_role(f"r-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id)
        create_location(
            http, "primary", bucket=bucket, region="eu-west-1", credentials={"type": "sts", "roleArn": role}
        )

    def run(*args: str, input: str | None = None) -> Result:
        return invoke(*args, input=input, env={"STOWAGE_SERVER": server.url, "STOWAGE_TOKEN": server.admin_token})

    yield server, bucket, run


def test_contents_from_the_bucket_and_a_deletion_that_removes_the_objects(
    live: tuple[StowageServer, str, Run], aws: AwsAccounts
) -> None:
    server, bucket, stowage = live
    cluster = _cluster(server, "live")
    created = _json(stowage("backups", "create", cluster["name"], "nightly", "-o", "json"))
    prefix = created["storagePrefix"]
    resources = {
        "v1/ConfigMap": ["shop/settings", "web/settings"],
        "apps/v1/Deployment": ["shop/api"],
        "v1/Namespace": ["shop", "web"],
    }
    # The agent's upload is not under test here: the bucket owner writes the resource list the agent would.
    aws.client("s3", region="eu-west-1").put_object(
        Bucket=bucket, Key=f"{prefix}/nightly-resource-list.json.gz", Body=gzip.compress(json.dumps(resources).encode())
    )
    outcome = {
        "phase": "PartiallyFailed",
        "warnings": [{"message": "skipped: terminating", "namespace": "shop", "resource": "pods", "name": "p-1"}],
        "errors": [{"message": "snapshot of PV pv-1 failed: add ec2:CreateSnapshot"}],
    }
    with Agent(server, cluster, "nightly", steps=((5, 5),), pause=0, outcome=outcome):
        pass

    listed = stowage("backups", "contents", cluster["name"], "nightly")
    assert listed.exit_code == 0, listed.output
    text = listed.stdout
    table = text.split("\n\n")[0].splitlines()
    assert [re.split(r"\s{2,}", row) for row in table] == [
        ["RESOURCE", "COUNT"], ["apps/v1/Deployment", "1"], ["v1/ConfigMap", "2"], ["v1/Namespace", "2"],
    ]  # fmt: skip
    assert "5 items in 3 kinds." in text
    assert "Warnings (1):\n  shop/pods/p-1: skipped: terminating" in text
    assert "Errors (1):\n  snapshot of PV pv-1 failed: add ec2:CreateSnapshot" in text
    detailed = stowage("backups", "contents", cluster["name"], "nightly", "--items")
    assert "v1/ConfigMap:\n  shop/settings\n  web/settings" in detailed.stdout
    as_json = _json(stowage("backups", "contents", cluster["name"], "nightly", "-o", "json"))
    assert as_json["resources"] == resources and as_json["totalItems"] == 5

    assert aws.object_keys(bucket, prefix)
    deleted = stowage("backups", "delete", cluster["name"], "nightly", "--yes", "--wait", *FAST)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == "Deleted backup nightly: its objects and EBS snapshots are removed."
    assert aws.object_keys(bucket, prefix) == []
    assert stowage("backups", "show", cluster["name"], "nightly").exit_code == 1
