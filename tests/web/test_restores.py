"""Restores in the web UI over HTTP against a real server: the Restore form (Preview, Confirm Restore), field errors,
the Restores tab, a restore's page and its live JSON, and roles. The destination's agent is played over its real
protocol with the cluster's agent token; the backup to restore is completed through the same protocol.
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
from tests.web.test_backups import Agent, create

PROJECT = "default"
PLAN = [
    {"apiVersion": "v1", "kind": "Namespace", "name": "shop-copy", "action": "create"},
    {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop-copy", "name": "settings", "action": "create"},
    {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop-copy", "name": "api", "action": "skip",
     "reason": "exists, same"},
    {"apiVersion": "v1", "kind": "Service", "namespace": "shop-copy", "name": "web", "action": "conflict",
     "reason": "NodePort 30080 is taken by default/other"},
]  # fmt: skip
PROBLEMS = [
    {
        "code": "node-port-clash",
        "message": "NodePort 30080 of shop/web is taken by default/other in the destination.",
        "remedy": "Restore without Preserve NodePorts, or free the port.",
    }
]


class RestoreAgent(Agent):
    """The destination's agent: restore jobs from its heartbeat's work, and restore reports."""

    def restore_job(self, backup: str) -> dict[str, Any]:
        """The restore job of that backup (waits for the heartbeat to hand it out)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for item in self.work():
                if item["kind"] == "restore" and item["params"]["backupName"] == backup:
                    return item
            time.sleep(0.1)
        raise AssertionError(f"no restore job of backup {backup}")

    def report(self, job_id: str, total: int, done: int, items: list[dict[str, Any]], *messages: str) -> None:
        """Progress of a restore: counts, item batches and log lines."""
        now = datetime.now(UTC).isoformat()
        body = {
            "totalItems": total,
            "itemsRestored": done,
            "items": items,
            "logs": [{"at": now, "message": m} for m in messages],
        }
        answer = self.http.post(f"/api/v1/agent/jobs/{job_id}/progress", json=body)
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
def backed_up(admin: WebClient, web_server: StowageServer, location: str) -> Iterator[tuple[str, str, str, str]]:
    """A cluster with a Completed backup: (cluster name, cluster URL, agent token, backup name)."""
    registered = register(admin)
    name = f"bk-{uuid.uuid4().hex[:6]}"
    assert create(admin, registered.url, name).status_code == 303
    agent = Agent(web_server, registered.token)
    try:
        job = agent.job_for(name)
        agent.claim(job)
        agent.complete(job, "Completed", totalItems=4, itemsBackedUp=4, sizeBytes=2048)
    finally:
        agent.close()
    yield registered.name, registered.url, registered.token, name


def restore_form(destination: str, **overrides: Any) -> dict[str, Any]:
    """The Restore form as the browser sends it (the hidden 'off' before each checkbox included)."""
    form: dict[str, Any] = {
        "destination": destination,
        "namespaces": "",
        "excluded_namespaces": "",
        "map_old": ["", "", ""],
        "map_new": ["", "", ""],
        "cluster_resources": "Auto",
        "existing": "none",
        "restore_pvs": ["off", "on"],
        "preserve_node_ports": "off",
        "label_selector": "",
        "action": "preview",
    }
    form.update(overrides)
    return form


def problem_of(page: str, field: str) -> str:
    """The message shown under a field of the Restore form."""
    match = re.search(rf'id="r-e-{field}" data-problem-for="{field}"[^>]*>([^<]*)</p>', page)
    assert match, f"no problem line for {field}"
    return html.unescape(match.group(1))


def cluster_id(url: str) -> str:
    """A cluster's id from its page's URL."""
    return url.rsplit("/", 1)[1]


def send(client: WebClient, form_url: str, form: dict[str, Any]) -> httpx.Response:
    """Send the Restore form (after reading its page for the CSRF token)."""
    client.get(form_url)
    body = {"csrf_token": client.csrf, **form}
    for _ in range(10):
        answer = client.http.post(form_url, data=body)
        if "try again in a second" not in html.unescape(answer.text):
            return answer
        time.sleep(0.3)  # restore names carry the second they were made in
    return answer


# -- the form ---------------------------------------------------------------------------------------------
def test_the_backup_page_leads_to_the_restore_form_with_the_projects_clusters(
    admin: WebClient, backed_up: tuple[str, str, str, str]
) -> None:
    name, url, _, backup = backed_up
    other = register(admin)
    page = admin.get(f"{url}/backups/{backup}")
    assert f'href="{url}/backups/{backup}/restore" data-testid="restore-backup">Restore</a>' in page.text
    form = admin.get(f"{url}/backups/{backup}/restore")
    assert form.status_code == 200
    text = form.text
    # Every cluster of the project is a destination; the source is chosen.
    assert re.search(rf'<option value="{cluster_id(url)}" selected>{name} \(the source\)</option>', text)
    assert f'<option value="{cluster_id(other.url)}">{other.name}</option>' in text
    assert len(re.findall(r'name="map_old"', text)) == 3
    assert re.search(r'name="cluster_resources" value="Auto" checked', text)
    assert re.search(r'name="existing" value="none" checked', text)
    assert re.search(r'id="r-f-restore_pvs" name="restore_pvs" value="on" checked', text)
    assert not re.search(r'id="r-f-preserve_node_ports" name="preserve_node_ports" value="on" checked', text)
    assert 'value="preview" data-testid="preview-restore">Preview</button>' in text
    # A backup that has not completed has no Restore button, and its form says why.
    assert create(admin, url, "not-yet").status_code == 303
    assert "restore-backup" not in admin.get(f"{url}/backups/not-yet").text
    assert 'data-testid="not-restorable"' in admin.get(f"{url}/backups/not-yet/restore").text


def test_field_errors_are_shown_next_to_their_fields_and_nothing_typed_is_lost(
    admin: WebClient, backed_up: tuple[str, str, str, str]
) -> None:
    _, url, _, backup = backed_up
    form_url = f"{url}/backups/{backup}/restore"
    sent = restore_form(
        cluster_id(url),
        namespaces="shop\nPayments",
        excluded_namespaces="shop",
        map_old=["shop", "web", ""],
        map_new=["Shop_Copy", "", ""],
        cluster_resources="Never",
        existing="update",
        preserve_node_ports=["off", "on"],
        restore_pvs="off",
        label_selector="app in (web",
    )
    page = send(admin, form_url, sent)
    assert page.status_code == 422
    text = page.text
    assert "'Payments' is not a namespace name" in problem_of(text, "namespaces")
    assert "Fill in both sides" in problem_of(text, "namespace_mapping")
    assert "labelSelector part" in problem_of(text, "label_selector")
    assert ">shop\nPayments</textarea>" in text and 'value="app in (web"' in text
    assert 'name="map_old" value="shop"' in text and 'name="map_new" value="Shop_Copy"' in text
    assert 'name="map_old" value="web"' in text
    assert re.search(r'name="cluster_resources" value="Never" checked', text)
    assert re.search(r'name="existing" value="update" checked', text)
    assert re.search(r'name="preserve_node_ports" value="on" checked', text)
    assert not re.search(r'name="restore_pvs" value="on" checked', text)

    # The service's own rules: a mapping target that is not a namespace name, both included and excluded.
    page = send(admin, form_url, restore_form(cluster_id(url), map_old=["shop"], map_new=["Shop_Copy"]))
    assert page.status_code == 422 and "not a namespace name" in problem_of(page.text, "namespace_mapping")
    page = send(admin, form_url, restore_form(cluster_id(url), namespaces="shop", excluded_namespaces="shop"))
    assert page.status_code == 422 and "both included and excluded" in problem_of(page.text, "excluded_namespaces")
    page = send(admin, form_url, restore_form("no-such-cluster"))
    assert page.status_code == 422 and "No cluster 'no-such-cluster'" in problem_of(page.text, "destination")
    page = send(admin, form_url, restore_form(cluster_id(url), cluster_resources="Sometimes", existing="replace"))
    assert page.status_code == 422
    assert "Always, Auto or Never" in problem_of(page.text, "cluster_resources")
    assert "skip existing objects or to update" in problem_of(page.text, "existing")
    # A backup that has not completed: the service's refusal, as a form-level message.
    assert create(admin, url, "unfinished").status_code == 303
    page = send(admin, f"{url}/backups/unfinished/restore", restore_form(cluster_id(url)))
    assert page.status_code == 422 and "only Completed or PartiallyFailed backups" in html.unescape(page.text)
    with admin.server.client() as api:
        assert api.get(f"/api/v1/projects/{PROJECT}/clusters/{cluster_id(url)}/restores").json()["total"] == 0


def test_preview_shows_the_plan_and_problems_then_confirm_restores_with_the_same_fields(
    admin: WebClient, web_server: StowageServer, backed_up: tuple[str, str, str, str]
) -> None:
    source_name, url, _, backup = backed_up
    destination = register(admin)
    fields = restore_form(
        cluster_id(destination.url),
        namespaces="shop",
        map_old=["shop", ""],
        map_new=["shop-copy", ""],
        existing="update",
        preserve_node_ports=["off", "on"],
        label_selector="app=web",
    )
    made = send(admin, f"{url}/backups/{backup}/restore", fields)
    assert made.status_code == 303, made.text
    preview_url = made.headers["location"].split("?")[0]
    assert preview_url.startswith(destination.url + "/restores/" + backup + "-")
    assert made.headers["location"].endswith("notice=preview-created")
    page = admin.get(made.headers["location"])
    assert "Preview requested" in page.text and 'data-testid="dry-run"' in page.text
    assert "The plan appear" in page.text or "The plan appears" in page.text or "items-empty" in page.text
    assert 'data-testid="confirm-restore"' not in page.text  # not before the plan is there

    agent = RestoreAgent(web_server, destination.token)
    try:
        job = agent.restore_job(backup)
        request = job["params"]["request"]
        assert request["dryRun"] is True and request["namespaceMapping"] == {"shop": "shop-copy"}
        assert (request["existingResourcePolicy"], request["preserveNodePorts"]) == ("update", True)
        agent.claim(job["id"])
        agent.report(job["id"], 4, 2, PLAN[:2], "planning shop")
        live = admin.get(f"/ui{preview_url}/live").json()
        assert (live["phase"], live["dryRun"], live["progressText"]) == (
            "InProgress",
            True,
            "2 of 4 items planned (50%)",
        )
        assert [line["message"] for line in live["lines"]] == ["planning shop"]
        agent.complete(
            job["id"],
            "Completed",
            totalItems=4,
            summary={"create": 2, "skip": 1, "conflict": 1},
            problems=PROBLEMS,
            items=PLAN[2:],
        )
    finally:
        agent.close()
    page = admin.get(preview_url)
    text = html.unescape(page.text)
    assert "Problems found ahead (1)" in text and PROBLEMS[0]["remedy"] in text
    counts = re.search(r'data-testid="action-counts">(.*?)</nav>', text, flags=re.S)
    assert counts and re.sub(r"<[^>]+>|\s+", " ", counts.group(1)).split() == [
        "All", "Create", "2", "Skip", "1", "Conflict", "1",
    ]  # fmt: skip
    assert 'data-group="create"' in text and 'data-group="conflict"' in text
    assert "NodePort 30080 is taken by default/other" in text
    assert "4 items in the plan" in text
    conflicts = admin.get(preview_url + "?action=conflict")
    assert conflicts.status_code == 200 and 'data-item="Service/shop-copy/web"' in conflicts.text
    assert 'data-item="ConfigMap/shop-copy/settings"' not in conflicts.text
    assert admin.get(preview_url + "?action=bogus").status_code == 404

    # Confirm Restore carries the preview's fields in hidden inputs; the real restore has the same request.
    confirm = re.search(
        r'<form method="post" action="([^"]+)" data-testid="confirm-form">(.*?)</form>', page.text, re.S
    )
    assert confirm and confirm.group(1) == f"{url}/backups/{backup}/restore"
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.group(2))
    body: dict[str, Any] = {}
    for key, value in hidden:
        body.setdefault(key, []).append(html.unescape(value))
    assert body["action"] == ["confirm"] and body["map_old"] == ["shop"] and body["map_new"] == ["shop-copy"]
    real = admin.http.post(confirm.group(1), data=body)
    for _ in range(10):
        if real.status_code != 422:
            break
        time.sleep(0.3)  # the preview was made in this same second
        real = admin.http.post(confirm.group(1), data=body)
    assert real.status_code == 303, real.text
    assert real.headers["location"].endswith("notice=restore-created")
    with admin.server.client() as api:
        listed = api.get(f"/api/v1/projects/{PROJECT}/clusters/{destination.name}/restores").json()["items"]
    real_one, preview_one = listed
    assert (real_one["dryRun"], preview_one["dryRun"]) == (False, True)
    same = ("includeNamespaces", "namespaceMapping", "existingResourcePolicy", "preserveNodePorts", "restorePVs",
            "labelSelector", "includeClusterResourceMode", "excludedNamespaces", "destinationClusterId")  # fmt: skip
    assert {k: real_one[k] for k in same} == {k: preview_one[k] for k in same}

    # Change options starts the form from the preview's fields.
    again = admin.get(f"{url}/backups/{backup}/restore?preview={preview_one['restoreName']}&to={destination.name}")
    assert 'name="map_old" value="shop"' in again.text and ">shop</textarea>" in again.text
    assert re.search(r'name="existing" value="update" checked', again.text)
    assert re.search(rf'<option value="{cluster_id(destination.url)}" selected>', again.text)

    # The destination's Restores tab lists both; the source's has none.
    tab = admin.get(destination.url + "/restores")
    assert tab.status_code == 200
    row = re.search(rf'<tr data-restore="{preview_one["restoreName"]}">(.*?)</tr>', tab.text, flags=re.S)
    assert row and ">Preview</span>" in row.group(1) and "Completed" in row.group(1) and source_name in row.group(1)
    assert "4 planned" in row.group(1) and "2 create, 1 skip, 1 conflict" in row.group(1)
    row = re.search(rf'<tr data-restore="{real_one["restoreName"]}">(.*?)</tr>', tab.text, flags=re.S)
    assert row and "New" in row.group(1) and "0/0" in row.group(1) and ">Restore</td>" in row.group(1)
    assert 'data-testid="restores-empty"' in admin.get(url + "/restores").text
    fragment = admin.get(destination.url + "/restores?fragment=1")
    assert (
        fragment.status_code == 200
        and "<html" not in fragment.text
        and "data-restores-table data-active" in fragment.text
    )


def test_a_failed_restore_shows_its_reason_results_and_logs(
    admin: WebClient, web_server: StowageServer, backed_up: tuple[str, str, str, str]
) -> None:
    _, url, token, backup = backed_up
    made = send(admin, f"{url}/backups/{backup}/restore", restore_form(cluster_id(url), action="confirm"))
    assert made.status_code == 303
    restore_url = made.headers["location"].split("?")[0]
    agent = RestoreAgent(web_server, token)
    results = [
        {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "settings", "action": "created"},
        {"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "db", "action": "failed",
         "reason": "forbidden: add create on secrets to the agent's ClusterRole"},
    ]  # fmt: skip
    try:
        job = agent.restore_job(backup)
        assert job["params"]["request"]["dryRun"] is False
        agent.claim(job["id"])
        agent.report(job["id"], 2, 1, results[:1], "restoring shop")
        page = admin.get(restore_url)
        assert "1 of 2 items restored (50%)" in page.text and 'data-item="ConfigMap/shop/settings"' in page.text
        agent.complete(
            job["id"],
            "PartiallyFailed",
            failureReason="1 item failed: give the agent's ClusterRole create on secrets, then restore again.",
            totalItems=2,
            itemsRestored=1,
            summary={"created": 1, "failed": 1},
            items=results[1:],
            logs=[{"at": datetime.now(UTC).isoformat(), "level": "error", "message": "secrets forbidden"}],
        )
    finally:
        agent.close()
    text = html.unescape(admin.get(restore_url).text)
    assert "give the agent's ClusterRole create on secrets" in text and 'data-testid="failure-reason"' in text
    assert "Partially failed" in text and 'data-testid="confirm-restore"' not in text and "dry-run" not in text
    assert 'data-group="created"' in text and 'data-group="failed"' in text
    assert "restoring shop" in text and "secrets forbidden" in text
    assert "1 created, 1 failed" in text
    live = admin.get(f"/ui{restore_url}/live?after=0").json()
    assert live["finished"] and live["logsFinished"] and live["phase"] == "PartiallyFailed"


# -- roles and odd addresses ----------------------------------------------------------------------------------
def test_viewers_see_restores_but_no_restore_button_and_are_refused(
    admin: WebClient, viewer: WebClient, editor: WebClient, backed_up: tuple[str, str, str, str]
) -> None:
    _, url, _, backup = backed_up
    page = viewer.get(f"{url}/backups/{backup}")
    assert page.status_code == 200 and "restore-backup" not in page.text
    assert viewer.get(f"{url}/backups/{backup}/restore").status_code == 403
    refused = viewer.post(f"{url}/backups/{backup}/restore", restore_form(cluster_id(url)))
    assert refused.status_code == 403 and "only editors and admins may" in html.unescape(refused.text)
    made = send(editor, f"{url}/backups/{backup}/restore", restore_form(cluster_id(url)))
    assert made.status_code == 303
    preview = viewer.get(made.headers["location"])
    assert preview.status_code == 200 and "change-options" not in preview.text
    assert viewer.get(url + "/restores").status_code == 200
    no_token = admin.post(f"{url}/backups/{backup}/restore", restore_form(cluster_id(url)), csrf=False)
    assert no_token.status_code == 403


@pytest.mark.parametrize(
    "suffix",
    [
        "/restores/no-such-restore",
        "/restores?offset=-5",
        "/restores?offset=abc",
        "/restores?fragment=1",
        "/restores/%E2%98%83",
        "/backups/no-such-backup/restore",
        "/backups/no-such-backup/restore?preview=x&to=y",
    ],
)
def test_odd_addresses_get_friendly_pages(admin: WebClient, backed_up: tuple[str, str, str, str], suffix: str) -> None:
    _, url, _, _ = backed_up
    page = admin.get(url + suffix)
    assert page.status_code in (200, 404), page.text
    assert "Traceback" not in page.text
    live = admin.get(f"/ui{url}/restores/no-such-restore/live?after=zz")
    assert live.status_code == 404 and live.json()["code"] == "not_found"
