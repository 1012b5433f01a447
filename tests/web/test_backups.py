"""A cluster's Backups tab, its Create Backup and Schedule Backups forms, a backup's page and its deletion, over
HTTP against a real server; the agent is played over its real protocol with the cluster's agent token.

The server has no AWS and its endpoints point at a closed port, so reading a completed backup's contents and
deleting a backup fail at the bucket: the pages must say so, never answer 500.
"""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.servers import StowageServer
from tests.web.support import WebClient, create_unverified, register

PROJECT = "default"


class Agent:
    """A cluster's agent over its real HTTP protocol (heartbeat, claim, progress, complete)."""

    def __init__(self, server: StowageServer, token: str) -> None:
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def work(self) -> list[dict[str, Any]]:
        """The jobs handed out with a heartbeat."""
        answer = self.http.post("/api/v1/agent/heartbeat", json={"version": "test-agent"})
        assert answer.status_code == 200, answer.text
        work: list[dict[str, Any]] = answer.json()["work"]
        return work

    def job_for(self, name: str) -> str:
        """The id of the backup job of that name (from the heartbeat's work)."""
        for item in self.work():
            if item["params"]["backupName"] == name:
                return str(item["id"])
        raise AssertionError(f"no job for backup {name}")

    def claim(self, job_id: str) -> dict[str, Any]:
        """Take the job."""
        answer = self.http.post(f"/api/v1/agent/jobs/{job_id}/claim")
        assert answer.status_code == 200, answer.text
        claimed: dict[str, Any] = answer.json()
        return claimed

    def progress(self, job_id: str, total: int, done: int, *messages: str) -> None:
        """Report progress and log lines."""
        now = datetime.now(UTC).isoformat()
        body = {"totalItems": total, "itemsBackedUp": done, "logs": [{"at": now, "message": m} for m in messages]}
        answer = self.http.post(f"/api/v1/agent/jobs/{job_id}/progress", json=body)
        assert answer.status_code == 200, answer.text

    def complete(self, job_id: str, phase: str, **fields: Any) -> None:
        """Report how the job ended."""
        answer = self.http.post(f"/api/v1/agent/jobs/{job_id}/complete", json={"phase": phase, **fields})
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def location(web_server: StowageServer) -> str:
    """The project's default location (static keys, live checks skipped: no AWS here)."""
    client = WebClient(web_server)
    try:
        assert client.login().status_code == 303
        return create_unverified(client, name=f"loc-{uuid.uuid4().hex[:6]}")
    finally:
        client.close()


@pytest.fixture
def cluster(admin: WebClient, location: str) -> Iterator[tuple[str, str, str]]:
    """A registered cluster: (name, its page's URL, its agent token)."""
    registered = register(admin)
    yield registered.name, registered.url, registered.token


def create_form(name: str, **overrides: str) -> dict[str, str]:
    """The Create Backup form as the browser sends it."""
    form = {
        "name": name,
        "location": "",
        "expiry": "720",
        "custom_hours": "",
        "cluster_resources": "Auto",
        "namespaces": "",
        "excluded_namespaces": "",
        "included_resources": "",
        "excluded_resources": "",
        "label_selector": "",
    }
    form.update(overrides)
    return form


def problem_of(page: str, field: str) -> str:
    """The message shown under a field of the Create (c-) or Schedule (s-) form."""
    match = re.search(rf'id="[cs]-e-{field}" data-problem-for="{field}"[^>]*>([^<]*)</p>', page)
    assert match, f"no problem line for {field}"
    return html.unescape(match.group(1))


def create(client: WebClient, cluster_url: str, name: str, **overrides: str) -> httpx.Response:
    """Send the Create Backup form."""
    client.get(cluster_url + "/backups")
    return client.post(cluster_url + "/backups", create_form(name, **overrides))


# -- the tab -------------------------------------------------------------------------------------------------
def test_the_cluster_page_has_a_backups_tab_with_an_empty_state(
    admin: WebClient, cluster: tuple[str, str, str]
) -> None:
    name, url, _ = cluster
    overview = admin.get(url)
    assert f'href="{url}/backups"' in overview.text and ">Backups</a>" in overview.text
    tab = admin.get(url + "/backups")
    assert tab.status_code == 200
    assert 'data-testid="backups-empty"' in tab.text
    assert f"No backups of {name} yet" in tab.text
    assert "Create Backup" in tab.text and "Schedule Backups" in tab.text
    assert 'id="create-dialog"' in tab.text and 'id="schedule-dialog"' in tab.text
    assert "No backup schedule." in tab.text
    # The dialog opens from its link without scripts too.
    opened = admin.get(url + "/backups?dialog=create")
    assert re.search(r'<dialog id="create-dialog"[^>]* open data-autoshow', opened.text)
    # The suggested name is valid and the default location preselected.
    suggested = re.search(r'id="c-f-name" name="name" type="text" value="([^"]+)"', opened.text)
    assert suggested and suggested.group(1).startswith(name)
    assert re.search(r'<option value="[0-9a-f-]{36}" selected>loc-\w+ \(default\)', opened.text)


def test_viewers_see_backups_without_any_button_and_are_refused(
    admin: WebClient, viewer: WebClient, cluster: tuple[str, str, str]
) -> None:
    _, url, _ = cluster
    assert create(admin, url, "seen-by-viewer").status_code == 303
    tab = viewer.get(url + "/backups?dialog=create")
    assert tab.status_code == 200
    assert 'data-backup="seen-by-viewer"' in tab.text
    for absent in ("Create Backup", "Schedule Backups", "<dialog", "Pause"):
        assert absent not in tab.text
    page = viewer.get(url + "/backups/seen-by-viewer")
    assert page.status_code == 200 and "Delete" not in re.sub(r"<title>.*?</title>", "", page.text)
    refused = viewer.post(url + "/backups", create_form("viewer-try"))
    assert refused.status_code == 403 and "only editors and admins may" in html.unescape(refused.text)
    assert viewer.get(url + "/backups/seen-by-viewer/delete").status_code == 403
    assert viewer.post(url + "/backups/seen-by-viewer/delete").status_code == 403
    assert viewer.post(url + "/backup-schedule", {"preset": "weekly", "prefix": "x"}).status_code == 403


def test_editors_create_but_only_admins_delete(
    admin: WebClient, editor: WebClient, cluster: tuple[str, str, str]
) -> None:
    _, url, _ = cluster
    made = create(editor, url, "by-editor")
    assert made.status_code == 303
    page = editor.get(made.headers["location"])
    assert "Backup requested" in page.text
    assert f'href="{url}/backups/by-editor/delete"' not in page.text
    refused = editor.get(url + "/backups/by-editor/delete")
    assert refused.status_code == 403 and "only admins may" in html.unescape(refused.text)
    assert f'href="{url}/backups/by-editor/delete"' in admin.get(url + "/backups/by-editor").text


# -- the Create Backup form --------------------------------------------------------------------------------
def test_every_problem_is_shown_next_to_its_field_and_nothing_typed_is_lost(
    admin: WebClient, cluster: tuple[str, str, str]
) -> None:
    _, url, _ = cluster
    sent = create_form(
        "Nightly Backup!",
        namespaces="shop\nPayments",
        excluded_namespaces="shop",
        included_resources="deployments.apps, configmaps",
        label_selector="app in (web",
        expiry="custom",
        custom_hours="two days",
        include_all_disks="on",
        cluster_resources="Never",
    )
    admin.get(url + "/backups")
    page = admin.post(url + "/backups", sent)
    assert page.status_code == 422
    text = page.text
    assert re.search(r'<dialog id="create-dialog"[^>]* open data-autoshow', text)
    assert "is not a valid name" in problem_of(text, "name") and 'Did you mean "nightly-backup"' in problem_of(
        text, "name"
    )
    assert "'Payments' is not a namespace name" in problem_of(text, "namespaces")
    assert "shop is both included and excluded" in problem_of(text, "excluded_namespaces")
    assert "labelSelector part" in problem_of(text, "label_selector")
    assert "whole number" in problem_of(text, "custom_hours")
    # Everything typed is still there.
    assert 'value="Nightly Backup!"' in text
    assert ">shop\nPayments</textarea>" in text
    assert ">deployments.apps, configmaps</textarea>" in text
    assert 'value="app in (web"' in text
    assert 'value="two days"' in text
    assert re.search(r'name="expiry" value="custom" checked', text)
    assert re.search(r'id="c-f-include_all_disks" name="include_all_disks" checked', text)
    assert re.search(r'name="cluster_resources" value="Never" checked', text)
    assert re.search(r'<details class="more" open>', text)
    assert 'data-testid="backups-empty"' in text  # nothing was created


def test_custom_expiry_bounds_unknown_location_and_bad_choices(admin: WebClient, cluster: tuple[str, str, str]) -> None:
    _, url, _ = cluster
    page = create(admin, url, "bounds", expiry="custom", custom_hours="0")
    assert page.status_code == 422 and "between 1 and 87600" in problem_of(page.text, "custom_hours")
    page = create(admin, url, "bounds", expiry="999")
    assert page.status_code == 422 and "Choose 1 day" in problem_of(page.text, "custom_hours")
    page = create(admin, url, "bounds", cluster_resources="Sometimes")
    assert page.status_code == 422 and "Always, Auto or Never" in problem_of(page.text, "cluster_resources")
    page = create(admin, url, "bounds", location="no-such-location")
    assert page.status_code == 422 and "No backup location 'no-such-location'" in problem_of(page.text, "location")
    page = create(admin, url, "x" * 500)
    assert page.status_code == 422 and "at most 63" in problem_of(page.text, "name")
    ok = create(admin, url, "bounds", expiry="custom", custom_hours="36")
    assert ok.status_code == 303
    assert "36 hours" in admin.get(ok.headers["location"]).text


def test_a_taken_name_and_a_project_without_locations_are_explained(
    admin: WebClient, cluster: tuple[str, str, str]
) -> None:
    _, url, _ = cluster
    assert create(admin, url, "twice").status_code == 303
    again = create(admin, url, "twice", namespaces="shop")
    assert again.status_code == 409
    assert "already has a backup named 'twice'" in problem_of(again.text, "name")
    assert ">shop</textarea>" in again.text

    project = f"bare-{uuid.uuid4().hex[:6]}"
    with admin.server.client() as api:
        assert api.post("/api/v1/projects", json={"name": project}).status_code == 201
    bare = register(admin, project=project)
    tab = admin.get(bare.url + "/backups")
    assert "has no backup location yet" in tab.text
    refused = admin.post(bare.url + "/backups", create_form("first"))
    assert refused.status_code == 422
    assert "has no default backup location" in problem_of(refused.text, "location")


def test_forms_without_the_csrf_token_change_nothing(admin: WebClient, cluster: tuple[str, str, str]) -> None:
    _, url, _ = cluster
    admin.get(url + "/backups")
    for path, form in (
        (url + "/backups", create_form("no-token")),
        (url + "/backup-schedule", {"preset": "weekly", "prefix": "nightly"}),
        (url + "/backup-schedule/pause", {"paused": "true"}),
        (url + "/backups/no-token/delete", {}),
    ):
        refused = admin.post(path, form, csrf=False)
        assert refused.status_code == 403, path
    assert admin.get(url + "/backups/no-token").status_code == 404
    assert "No backup schedule." in admin.get(url + "/backups").text


# -- schedules -------------------------------------------------------------------------------------------------
def test_schedule_presets_custom_cron_pause_and_never(admin: WebClient, cluster: tuple[str, str, str]) -> None:
    name, url, _ = cluster
    admin.get(url + "/backups")
    saved = admin.post(
        url + "/backup-schedule", {**create_form(""), "prefix": "weekly", "preset": "weekly", "namespaces": "shop"}
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=schedule-saved")
    tab = admin.get(saved.headers["location"])
    assert "Backup schedule saved." in tab.text
    summary = re.search(r'data-testid="schedule-summary".*?</section>', tab.text, flags=re.S)
    assert summary and "Every week on Sunday at midnight" in summary.group(0) and "0 0 * * 0" in summary.group(0)
    assert "next run" in summary.group(0) and f"weekly-{name}-&lt;timestamp&gt;" in summary.group(0)
    assert re.search(r'name="preset" value="weekly" checked', tab.text)
    assert ">shop</textarea>" in tab.text  # the dialog shows the saved fields

    bad = admin.post(
        url + "/backup-schedule", {**create_form(""), "prefix": "Nightly", "preset": "custom", "cron": "0 25 * *"}
    )
    assert bad.status_code == 422
    assert "has 4 fields" in problem_of(bad.text, "cron")
    assert "is not a valid name" in problem_of(bad.text, "prefix")
    assert re.search(r'<dialog id="schedule-dialog"[^>]* open data-autoshow', bad.text)
    assert 'value="0 25 * *"' in bad.text and 'value="Nightly"' in bad.text
    bad = admin.post(
        url + "/backup-schedule", {**create_form(""), "prefix": "n", "preset": "custom", "cron": "0 25 * * *"}
    )
    assert bad.status_code == 422 and "not a valid cron expression" in problem_of(bad.text, "cron")
    bad = admin.post(url + "/backup-schedule", {**create_form(""), "prefix": "n", "preset": "hourly"})
    assert bad.status_code == 422 and "Choose one of the schedules" in problem_of(bad.text, "preset")

    custom = admin.post(
        url + "/backup-schedule", {**create_form(""), "prefix": "nightly", "preset": "custom", "cron": "30 2 * * *"}
    )
    assert custom.status_code == 303
    tab = admin.get(url + "/backups")
    summary = re.search(r'data-testid="schedule-summary".*?</section>', tab.text, flags=re.S)
    assert summary and "Custom cron expression <code>30 2 * * *</code>" in summary.group(0)
    with admin.server.client() as api:
        stored = api.get(f"/api/v1/projects/{PROJECT}/clusters/{name}/backup-schedule").json()
    assert stored["schedule"] == "30 2 * * *" and stored["backupPrefix"] == "nightly" and stored["namespaces"] == []

    paused = admin.post(url + "/backup-schedule/pause", {"paused": "true"})
    assert paused.status_code == 303
    tab = admin.get(paused.headers["location"])
    assert 'data-testid="schedule-paused"' in tab.text and ">Resume</button>" in tab.text
    resumed = admin.post(url + "/backup-schedule/pause", {"paused": "false"})
    assert "Backup schedule resumed." in admin.get(resumed.headers["location"]).text

    removed = admin.post(url + "/backup-schedule", {"preset": "never"})
    assert removed.headers["location"].endswith("notice=schedule-removed")
    assert "No backup schedule." in admin.get(removed.headers["location"]).text
    again = admin.post(url + "/backup-schedule", {"preset": "never"})
    assert again.headers["location"].endswith("notice=schedule-none")
    nothing = admin.post(url + "/backup-schedule/pause", {"paused": "true"})
    assert nothing.status_code == 404 and "has no backup schedule" in html.unescape(nothing.text)


# -- a backup's page, live ---------------------------------------------------------------------------------------
def test_the_backup_page_follows_the_agent_and_shows_why_it_failed(
    admin: WebClient, web_server: StowageServer, cluster: tuple[str, str, str]
) -> None:
    _, url, token = cluster
    made = create(admin, url, "live-one", namespaces="shop", label_selector="app=web")
    page = admin.get(made.headers["location"])
    assert 'data-testid="backup-phase" data-live-phase>New<' in page.text
    assert "Waiting for the agent" in page.text
    assert "The contents are listed once the backup has completed." in page.text
    live = f"/ui{url}/backups/live-one/live"
    state = admin.get(live).json()
    assert state["phase"] == "New" and state["lines"] == [] and not state["finished"]

    agent = Agent(web_server, token)
    try:
        job = agent.job_for("live-one")
        claimed = agent.claim(job)
        assert claimed["params"]["request"]["namespaces"] == ["shop"]
        agent.progress(job, 40, 10, "listing namespaces", "backing up shop")
        state = admin.get(live).json()
        assert (state["phase"], state["percent"], state["itemsBackedUp"], state["totalItems"]) == (
            "InProgress",
            25,
            10,
            40,
        )
        assert [line["message"] for line in state["lines"]] == ["listing namespaces", "backing up shop"]
        more = admin.get(live, params={"after": state["nextAfter"]}).json()
        assert more["lines"] == []
        agent.complete(
            job,
            "Failed",
            failureReason="Uploading to the bucket was denied (s3:PutObject). Add s3:PutObject to the role.",
            totalItems=40,
            itemsBackedUp=12,
            errors=[{"message": "forbidden", "namespace": "shop", "resource": "secrets", "name": "db"}],
            logs=[{"at": datetime.now(UTC).isoformat(), "level": "error", "message": "upload denied"}],
        )
    finally:
        agent.close()
    state = admin.get(live, params={"after": more["nextAfter"]}).json()
    assert state["finished"] and state["logsFinished"] and state["lines"][0]["message"] == "upload denied"
    page = admin.get(url + "/backups/live-one")
    text = html.unescape(page.text)
    assert "Add s3:PutObject to the role." in text and 'data-testid="failure-reason"' in text
    assert "The backup failed, so it has no contents to list. It recorded 1 error(s)" in text
    assert "upload denied" in text and "backing up shop" in text
    assert "app=web" in text
    tab = admin.get(url + "/backups").text
    row = re.search(r'<tr data-backup="live-one">(.*?)</tr>', tab, flags=re.S)
    assert row and "Failed" in row.group(1) and "12/40" in row.group(1) and "shop" in row.group(1)


def test_a_completed_backup_whose_bucket_is_unreachable_says_so(
    admin: WebClient, web_server: StowageServer, cluster: tuple[str, str, str]
) -> None:
    _, url, token = cluster
    create(admin, url, "done-one")
    agent = Agent(web_server, token)
    try:
        job = agent.job_for("done-one")
        agent.claim(job)
        agent.complete(job, "Completed", totalItems=3, itemsBackedUp=3, sizeBytes=5 * 1024 * 1024)
    finally:
        agent.close()
    page = admin.get(url + "/backups/done-one")
    assert "5.0 MiB" in page.text and 'data-load-fragment="' in page.text
    fragment = admin.get(url + "/backups/done-one/contents?fragment=1")
    assert fragment.status_code == 200
    assert 'data-testid="contents-unavailable"' in fragment.text
    full = admin.get(url + "/backups/done-one/contents")
    assert full.status_code == 200 and "Contents of done-one" in full.text
    row = re.search(r'<tr data-backup="done-one">(.*?)</tr>', admin.get(url + "/backups").text, flags=re.S)
    assert row and "Completed" in row.group(1) and "3/3" in row.group(1) and "5.0 MiB" in row.group(1)


def test_delete_asks_first_then_removes_objects_and_snapshots(admin: WebClient, cluster: tuple[str, str, str]) -> None:
    _, url, _ = cluster
    create(admin, url, "to-delete")
    confirm = admin.get(url + "/backups/to-delete/delete")
    assert confirm.status_code == 200
    text = html.unescape(confirm.text)
    assert "removes the backup's objects" in text and "EBS snapshots" in text and "Delete backup" in text
    gone = admin.post(url + "/backups/to-delete/delete")
    assert gone.status_code == 303 and gone.headers["location"].endswith("notice=backup-deleting")
    assert "Deleting the backup" in admin.get(gone.headers["location"]).text
    # No bucket here: the deletion ends Failed with the reason (or the row is gone), never stuck, never a 500.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = admin.get(url + "/backups/to-delete")
        if page.status_code == 404 or ">Failed<" in page.text:
            break
        time.sleep(0.5)
    assert page.status_code in (200, 404)
    if page.status_code == 200:
        assert "Deleting backup 'to-delete' failed" in html.unescape(page.text)


@pytest.mark.parametrize(
    "suffix",
    [
        "/backups/no-such-backup",
        "/backups/no-such-backup/delete",
        "/backups/no-such-backup/contents",
        "/backups/%E2%98%83",
        "/backups?offset=-5",
        "/backups?offset=abc&dialog=bogus",
        "/backups?fragment=1",
    ],
)
def test_odd_addresses_get_friendly_pages(admin: WebClient, cluster: tuple[str, str, str], suffix: str) -> None:
    _, url, _ = cluster
    page = admin.get(url + suffix)
    assert page.status_code in (200, 404), page.text
    assert "Traceback" not in page.text
    other = admin.get("/projects/default/settings/clusters/no-such-cluster/backups")
    assert other.status_code == 404 and "No cluster" in html.unescape(other.text)
    live = admin.get(f"/ui{url}/backups/no-such-backup/live?after=zz")
    assert live.status_code == 404 and live.json()["code"] == "not_found"
