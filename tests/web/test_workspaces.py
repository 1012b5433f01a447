"""The Workspaces pages over HTTP against a real server: forms and their validation, the Back up now result with
skipped clusters, schedules, restores, deletes with confirmation, roles, and protection on the Clusters page.
The clusters' agents are played over their real HTTP protocol with each cluster's agent token."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stowage.domain.backups import BACKUP_WORK_KIND
from tests.agents.helpers import create_location, register
from tests.support.servers import StowageServer
from tests.web.support import WebClient, heartbeat
from tests.web.test_backups import Agent

PROJECT = "default"
BASE = f"/projects/{PROJECT}/settings/workspaces"


def _id() -> str:
    return uuid.uuid4().hex[:5]


@dataclass
class Clusters:
    """Three registered clusters (name → API answer with agentToken); ``down`` never heartbeats."""

    up1: dict[str, Any]
    up2: dict[str, Any]
    down: dict[str, Any]


@pytest.fixture(scope="module")
def location(web_server: StowageServer) -> None:
    """A default location, so backups can be requested."""
    with web_server.client() as api:
        create_location(api, f"loc-{_id()}", isDefault=True)


@pytest.fixture
def clusters(web_server: StowageServer, location: None) -> Clusters:
    with web_server.client() as api:
        made = [register(api, f"{stem}-{_id()}") for stem in ("up", "up", "down")]
    for cluster in made[:2]:
        assert heartbeat(web_server, cluster["agentToken"]).status_code == 200
    return Clusters(*made)


def create_workspace(client: WebClient, name: str, *cluster_ids: str) -> str:
    """Create a workspace through the form; its page's URL."""
    client.get(BASE)
    answer = client.post(BASE, {"name": name, "clusters": list(cluster_ids)})  # type: ignore[dict-item]
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{BASE}/{name}")
    return location.split("?")[0]


def finish(server: StowageServer, cluster: dict[str, Any], backup: str, phase: str = "Completed") -> None:
    """The cluster's agent takes its part of the workspace backup and reports how it ended."""
    agent = Agent(server, cluster["agentToken"])
    try:
        job = next(w for w in agent.work() if w["kind"] == BACKUP_WORK_KIND and w["params"]["backupName"] == backup)
        agent.claim(job["id"])
        agent.progress(job["id"], 3, 3, "done")
        agent.complete(job["id"], phase, totalItems=3, itemsBackedUp=3)
    finally:
        agent.close()


def backup_form(name: str, *cluster_ids: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "clusters": list(cluster_ids), "expiry": "720", "cluster_resources": "Auto", **extra}


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


# -- list and create ---------------------------------------------------------------------------------------
def test_create_validation_and_the_list(admin: WebClient, clusters: Clusters) -> None:
    page = admin.get(BASE)
    assert page.status_code == 200 and "Create a workspace" in page.text
    bad = admin.post(BASE, {"name": "Not OK!"})
    assert bad.status_code == 422 and "is not valid" in html.unescape(bad.text)
    assert 'value="Not OK!"' in bad.text  # what was typed stays
    unknown = admin.post(BASE, {"name": f"w-{_id()}", "clusters": "no-such-cluster"})
    assert unknown.status_code == 422, unknown.text
    name = f"shop-{_id()}"
    url = create_workspace(admin, name, clusters.up1["id"], clusters.down["id"])
    again = admin.post(BASE, {"name": name})
    assert again.status_code == 409 and "already exists" in html.unescape(again.text)
    listed = admin.get(BASE).text
    row = re.search(rf'<tr data-workspace="{name}".*?</tr>', listed, flags=re.S)
    assert row and "Never backed up" in row.group(0) and "row-unprotected" in row.group(0)
    assert clusters.up1["name"] in row.group(0) and clusters.down["name"] in row.group(0)
    shown = admin.get(url).text
    down = re.search(rf'<tr data-cluster="{clusters.down["name"]}".*?</tr>', shown, flags=re.S)
    up = re.search(rf'<tr data-cluster="{clusters.up1["name"]}".*?</tr>', shown, flags=re.S)
    assert down and "Disconnected" in down.group(0) and "Never backed up" in down.group(0)
    assert up and "Connected" in up.group(0)


def test_add_and_remove_clusters(admin: WebClient, clusters: Clusters) -> None:
    url = create_workspace(admin, f"edit-{_id()}", clusters.up1["id"])
    admin.get(url)
    assert admin.post(f"{url}/clusters", {"cluster": ""}).status_code == 422
    assert admin.post(f"{url}/clusters", {"cluster": "no-such"}).status_code == 422
    assert admin.post(f"{url}/clusters", {"cluster": clusters.up2["id"]}).status_code == 303
    assert f'data-cluster="{clusters.up2["name"]}"' in admin.get(url).text
    assert admin.post(f"{url}/clusters/{clusters.up1['id']}/remove").status_code == 303
    page = admin.get(url).text
    assert f'data-cluster="{clusters.up1["name"]}"' not in page
    assert admin.post(f"{url}/clusters", {"cluster": clusters.up1["id"]}, csrf=False).status_code == 403


# -- back up now, schedule, restore ----------------------------------------------------------------------------
def test_back_up_now_skips_the_disconnected_cluster_and_rolls_up(
    admin: WebClient, web_server: StowageServer, clusters: Clusters
) -> None:
    ids = (clusters.up1["id"], clusters.up2["id"], clusters.down["id"])
    url = create_workspace(admin, f"all-{_id()}", *ids)
    page = admin.get(url + "?dialog=backup")
    assert "data-autoshow" in page.text and "will be skipped" in page.text
    none = admin.post(f"{url}/backups", backup_form("b1"))
    assert none.status_code == 422 and "Choose at least one cluster" in none.text
    long = admin.post(f"{url}/backups", backup_form("x" * 41, *ids))
    assert long.status_code == 422 and "at most 40" in long.text
    bad = admin.post(f"{url}/backups", backup_form("b1", *ids, namespaces="Not A Namespace", expiry="custom"))
    assert bad.status_code == 422
    assert 'data-problem-for="custom_hours"' in bad.text and "Not A Namespace" in bad.text
    made = admin.post(f"{url}/backups", backup_form("b1", *ids, namespaces="shop"))
    assert made.status_code == 303, made.text
    result = admin.get(made.headers["location"])
    text = _text(result.text)
    assert "Backup requested" in text
    assert "Skipped 1 cluster" in text and f"The agent of cluster '{clusters.down['name']}' is disconnected" in text
    assert "0 of 3 clusters completed" in text and "data-reload-while-active" in result.text
    dup = admin.post(f"{url}/backups", backup_form("b1", *ids))
    assert dup.status_code == 409 and "already has a backup named" in html.unescape(dup.text)

    finish(web_server, clusters.up1, f"b1-{clusters.up1['name']}")
    finish(web_server, clusters.up2, f"b1-{clusters.up2['name']}")
    done = admin.get(made.headers["location"].split("?")[0]).text
    assert 'data-testid="rollup"' in done and 'data-phase="PartiallyFailed"' in done.split('data-testid="rollup"')[1]
    assert "2 of 3 clusters completed" in _text(done) and "data-reload-while-active" not in done
    listed = admin.get(url).text
    row = re.search(r'<tr data-backup="b1".*?</tr>', listed, flags=re.S)
    assert row and "Partially failed" in row.group(0) and clusters.down["name"] in row.group(0)
    # The clusters' protection follows: both backed-up clusters on time, the third still stands out.
    clusters_page = admin.get(f"/projects/{PROJECT}/settings/clusters").text
    up = re.search(rf'<tr data-cluster="{clusters.up1["name"]}".*?</tr>', clusters_page, flags=re.S)
    down = re.search(rf'<tr data-cluster="{clusters.down["name"]}".*?</tr>', clusters_page, flags=re.S)
    assert up and 'data-risk="on_time"' in up.group(0) and "badge-risk-never" not in up.group(0)
    assert down and 'data-risk="never"' in down.group(0) and "badge-risk-never" in down.group(0)


def test_schedule_dialog(admin: WebClient, clusters: Clusters) -> None:
    url = create_workspace(admin, f"sched-{_id()}", clusters.up1["id"])
    admin.get(url)
    form = {"preset": "custom", "cron": "every day", "prefix": "nightly", "expiry": "720", "cluster_resources": "Auto"}
    bad = admin.post(f"{url}/backup-schedule", form)
    assert bad.status_code == 422 and 'data-problem-for="cron"' in bad.text and "data-autoshow" in bad.text
    long = admin.post(f"{url}/backup-schedule", {**form, "cron": "0 2 * * *", "prefix": "p" * 30})
    assert long.status_code == 422 and "backupPrefix may have at most" in long.text
    saved = admin.post(f"{url}/backup-schedule", {**form, "preset": "weekly"})
    assert saved.status_code == 303
    page = _text(admin.get(saved.headers["location"]).text)
    assert "Backup schedule saved" in page and "0 0 * * 0" in page and "next run" in page
    listed = re.search(r'<tr data-workspace="sched-.*?</tr>', admin.get(BASE).text, flags=re.S)
    assert listed and "Not scheduled" not in listed.group(0)
    assert admin.post(f"{url}/backup-schedule", {"preset": "never"}).status_code == 303
    assert "No backup schedule" in admin.get(url).text
    none = admin.post(f"{url}/backup-schedule", {"preset": "never"})
    assert "schedule-none" in none.headers["location"]


def test_restore_dialog(admin: WebClient, web_server: StowageServer, clusters: Clusters) -> None:
    url = create_workspace(admin, f"rs-{_id()}", clusters.up1["id"])
    admin.get(url)
    assert admin.post(f"{url}/backups", backup_form("r1", clusters.up1["id"])).status_code == 303
    page = admin.get(f"{url}/backups/r1").text
    assert "Restore</a>" not in page  # nothing completed yet: nothing to restore
    finish(web_server, clusters.up1, f"r1-{clusters.up1['name']}")
    page = admin.get(f"{url}/backups/r1?dialog=restore").text
    assert 'id="restore-dialog"' in page and "data-autoshow" in page
    bad = admin.post(f"{url}/backups/r1/restores", {"namespace_mapping": "shop", "existing": "none"})
    assert bad.status_code == 422 and "old=new" in html.unescape(bad.text)
    wrong = admin.post(f"{url}/backups/r1/restores", {"namespaces": "Bad_NS", "existing": "none"})
    assert wrong.status_code == 422 and 'data-problem-for="namespaces"' in wrong.text
    made = admin.post(
        f"{url}/backups/r1/restores",
        {"namespaces": "shop", "namespace_mapping": "shop=shop-copy", "existing": "update", "restore_pvs": "on"},
    )
    assert made.status_code == 303, made.text
    shown = _text(admin.get(made.headers["location"]).text)
    assert "Restore requested" in shown and "Restores of this backup" in shown
    with web_server.client() as api:
        restores = api.get(f"/api/v1/projects/{PROJECT}/clusters/{clusters.up1['id']}/restores").json()["items"]
    assert restores[0]["namespaceMapping"] == {"shop": "shop-copy"}
    assert restores[0]["existingResourcePolicy"] == "update"


# -- roles and deletes ---------------------------------------------------------------------------------------
@pytest.fixture
def shared(admin: WebClient, web_server: StowageServer, clusters: Clusters) -> Iterator[str]:
    """A workspace with one completed backup."""
    url = create_workspace(admin, f"roles-{_id()}", clusters.up1["id"])
    admin.get(url)
    assert admin.post(f"{url}/backups", backup_form("k1", clusters.up1["id"])).status_code == 303
    finish(web_server, clusters.up1, f"k1-{clusters.up1['name']}")
    yield url


def test_viewer_sees_and_cannot_act(viewer: WebClient, shared: str, clusters: Clusters) -> None:
    for path in (BASE, shared, f"{shared}/backups/k1"):
        page = viewer.get(path)
        assert page.status_code == 200, path
        for button in ("Back up now", "Create a workspace", "Delete workspace", "Delete backup", ">Restore<", "Remove"):
            assert button not in page.text, (path, button)
    assert "Ask an editor" in viewer.get(BASE).text or "workspaces" in viewer.get(BASE).text
    refused = viewer.post(f"{shared}/backups", backup_form("v1", clusters.up1["id"]))
    assert refused.status_code == 403 and "only editors and admins" in html.unescape(refused.text)
    assert viewer.post(BASE, {"name": f"v-{_id()}"}).status_code == 403
    assert viewer.post(f"{shared}/backup-schedule", {"preset": "weekly"}).status_code == 403
    assert viewer.post(f"{shared}/backups/k1/restores", {}).status_code == 403
    assert viewer.get(f"{shared}/delete").status_code == 403


def test_editor_backs_up_but_only_admin_deletes(
    editor: WebClient, admin: WebClient, shared: str, clusters: Clusters
) -> None:
    page = editor.get(shared).text
    assert "Back up now" in page and "Delete workspace" not in page
    assert ">Restore<" in editor.get(f"{shared}/backups/k1").text
    assert "Delete backup" not in editor.get(f"{shared}/backups/k1").text
    assert editor.post(f"{shared}/backups", backup_form("e1", clusters.up1["id"])).status_code == 303
    assert editor.get(f"{shared}/backups/k1/delete").status_code == 403
    refused = editor.post(f"{shared}/delete")
    assert refused.status_code == 403 and "only admins" in html.unescape(refused.text)

    confirm = admin.get(f"{shared}/backups/k1/delete")
    assert confirm.status_code == 200 and f"k1-{clusters.up1['name']}" in confirm.text
    assert admin.post(f"{shared}/backups/k1/delete").status_code == 303
    confirm = admin.get(f"{shared}/delete")
    assert confirm.status_code == 200 and "Delete workspace" in confirm.text
    gone = admin.post(f"{shared}/delete")
    assert gone.status_code == 303 and "workspace-deleted" in gone.headers["location"]
    assert admin.get(shared).status_code == 404
    assert admin.get(f"{BASE}/no-such-workspace/backups/x").status_code == 404
