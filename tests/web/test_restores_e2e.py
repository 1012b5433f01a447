"""End-to-end in Chromium: Restore from a backup's page, Preview showing the plan and the problems found ahead,
Confirm Restore, its live progress until Completed with per-item results, the Restores tab, and a viewer who sees
no Restore button. The destination's agent is played over its real protocol from a test thread."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.support.servers import StowageServer
from tests.web.browser import screenshot, sign_in
from tests.web.support import WebClient, register
from tests.web.test_backups import Agent, create
from tests.web.test_backups_e2e import AgentThread
from tests.web.test_restores import PLAN, PROBLEMS, RestoreAgent, location  # noqa: F401 - the location fixture

# Every test needs the project's default location (the fixture imported above).
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("location")]
# What the restore did: the conflict resolved itself (NodePort reassigned), the rest as planned.
RESULTS = [
    {**item, "action": {"create": "created", "skip": "skipped", "conflict": "created"}[item["action"]]}
    | ({"reason": "NodePort 30080 was taken: given a new one"} if item["action"] == "conflict" else {})
    for item in PLAN
]


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _completed_backup(web_server: StowageServer, admin: WebClient, url: str, token: str, name: str) -> None:
    assert create(admin, url, name, namespaces="shop").status_code == 303
    agent = Agent(web_server, token)
    try:
        job = agent.job_for(name)
        agent.claim(job)
        agent.complete(job, "Completed", totalItems=4, itemsBackedUp=4, sizeBytes=3 * 1024 * 1024)
    finally:
        agent.close()


def test_restore_preview_confirm_and_follow(page: Any, web_server: StowageServer, admin: WebClient) -> None:
    expect = _expect()
    source = register(admin, name=f"prod-eu-{uuid.uuid4().hex[:4]}")
    destination = register(admin, name=f"staging-eu-{uuid.uuid4().hex[:4]}")
    _completed_backup(web_server, admin, source.url, source.token, "nightly-1")
    sign_in(page, web_server.url)
    page.goto(web_server.url + source.url + "/backups/nightly-1")
    page.get_by_test_id("restore-backup").click()
    page.wait_for_url("**/backups/nightly-1/restore")

    # A bad mapping: the message under the field, everything else kept.
    page.get_by_label("Destination cluster").select_option(label=destination.name)
    page.get_by_label(re.compile(r"^Namespaces to restore")).fill("shop")
    page.get_by_label("Namespace in the backup (row 1)").fill("shop")
    page.get_by_label("Restore it as (row 1)").fill("Shop Copy")
    page.get_by_label("Preserve NodePorts").check()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator('[data-problem-for="namespace_mapping"]')).to_contain_text("not a namespace name")
    expect(page.get_by_label(re.compile(r"^Namespaces to restore"))).to_have_value("shop")
    expect(page.get_by_label("Preserve NodePorts")).to_be_checked()
    expect(page.get_by_label("Destination cluster")).to_have_value(destination.url.rsplit("/", 1)[1])
    page.set_viewport_size({"width": 1280, "height": 1300})
    screenshot(page, "restore-form.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})
    page.get_by_label("Restore it as (row 1)").fill("shop-copy")
    page.get_by_role("button", name="Add a mapping").click()
    expect(page.get_by_label("Namespace in the backup (row 4)")).to_be_focused()
    page.locator("label.choice", has_text="Update").click()
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url(re.compile(r".*/restores/nightly-1-\d{14}(\?notice=preview-created)?$"))
    expect(page.get_by_test_id("dry-run")).to_have_text("Preview")
    expect(page.get_by_test_id("restore-phase")).to_have_text("New")
    expect(page.get_by_test_id("confirm-restore")).to_have_count(0)

    # The destination's agent plans it: the page follows, then shows the plan grouped and counted, and the problems.
    agent = RestoreAgent(web_server, destination.token)
    job: dict[str, Any] = {}

    def claim() -> None:
        job.update(agent.restore_job("nightly-1"))
        agent.claim(job["id"])
        agent.report(job["id"], 4, 2, PLAN[:2], "reading backup nightly-1", "planning namespace shop")

    def finish() -> None:
        agent.complete(job["id"], "Completed", totalItems=4, summary={"create": 2, "skip": 1, "conflict": 1},
                       problems=PROBLEMS, items=PLAN[2:])  # fmt: skip

    runner = AgentThread(agent, [claim, finish])
    try:
        runner.step()
        expect(page.get_by_test_id("restore-phase")).to_have_text("In progress")
        expect(page.get_by_test_id("restore-progress")).to_have_text("2 of 4 items planned (50%)")
        expect(page.get_by_test_id("restore-logs")).to_contain_text("planning namespace shop")
        runner.step()
    finally:
        runner.close()
    expect(page.get_by_test_id("restore-phase")).to_have_text("Completed")
    expect(page.get_by_test_id("restore-problems")).to_contain_text(PROBLEMS[0]["remedy"])
    counts = page.get_by_test_id("action-counts")
    expect(counts.locator('[data-action="create"]')).to_contain_text("2")
    expect(counts.locator('[data-action="conflict"]')).to_contain_text("1")
    expect(page.get_by_test_id("restore-items-conflict")).to_contain_text("NodePort 30080 is taken")
    expect(page.get_by_test_id("restore-mapping")).to_contain_text("shop → shop-copy")
    screenshot(page, "restore-preview.png", full_page=True)
    counts.locator('[data-action="skip"]').click()
    expect(page.get_by_test_id("restore-items")).to_contain_text("exists, same")
    expect(page.get_by_test_id("restore-items")).not_to_contain_text("settings")

    # Confirm Restore: the real restore, with the same options; it runs live to Completed with its results.
    page.get_by_test_id("confirm-restore").click()
    if page.get_by_test_id("form-problem").count():  # made within the preview's second: once more
        page.go_back()
        page.get_by_test_id("confirm-restore").click()
    page.wait_for_url(re.compile(r".*/restores/nightly-1-\d{14}(\?notice=restore-created)?$"))
    expect(page.get_by_test_id("dry-run")).to_have_count(0)
    real: dict[str, Any] = {}
    worker = RestoreAgent(web_server, destination.token)

    def start() -> None:
        real.update(worker.restore_job("nightly-1"))
        assert real["params"]["request"]["namespaceMapping"] == {"shop": "shop-copy"}
        assert real["params"]["request"]["existingResourcePolicy"] == "update"
        worker.claim(real["id"])
        worker.report(real["id"], 4, 1, RESULTS[:1], "creating namespace shop-copy")

    def more() -> None:
        worker.report(real["id"], 4, 3, RESULTS[1:3], "restoring ConfigMaps and Deployments")

    def done() -> None:
        worker.complete(real["id"], "Completed", totalItems=4, itemsRestored=4,
                        summary={"created": 3, "skipped": 1}, items=RESULTS[3:])  # fmt: skip

    runner = AgentThread(worker, [start, more, done])
    try:
        runner.step()
        expect(page.get_by_test_id("restore-phase")).to_have_text("In progress")
        expect(page.get_by_test_id("restore-progress")).to_have_text("1 of 4 items restored (25%)")
        runner.step()
        expect(page.get_by_test_id("restore-progress")).to_have_text("3 of 4 items restored (75%)")
        expect(page.get_by_test_id("restore-logs")).to_contain_text("restoring ConfigMaps and Deployments")
        screenshot(page, "restore-progress.png", full_page=True)
        runner.step()
    finally:
        runner.close()
    expect(page.get_by_test_id("restore-phase")).to_have_text("Completed")
    expect(page.get_by_test_id("restore-progress")).to_have_text("4 of 4 items restored (100%)")
    expect(page.get_by_test_id("restore-summary")).to_have_text("3 created, 1 skipped")
    expect(page.get_by_test_id("restore-items-created")).to_contain_text("settings")
    expect(page.get_by_test_id("restore-items-skipped")).to_contain_text("exists, same")
    screenshot(page, "restore.png", full_page=True)

    # The destination's Restores tab lists the preview and the restore.
    page.get_by_role("link", name="Restores", exact=True).last.click()
    page.wait_for_url("**/restores")
    rows = page.get_by_test_id("restores").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Completed")
    expect(rows.first).to_contain_text("4/4")
    expect(rows.last).to_contain_text("Preview")
    expect(rows.last).to_contain_text(source.name)
    screenshot(page, "restores.png", full_page=True)


def test_a_viewer_sees_no_restore_button(page: Any, web_server: StowageServer, admin: WebClient) -> None:
    expect = _expect()
    source = register(admin)
    _completed_backup(web_server, admin, source.url, source.token, "for-viewers")
    email, password = f"viewer-{uuid.uuid4().hex[:6]}@example.com", "viewer-password-123"
    admin.get("/settings/users")
    assert admin.post("/settings/users", {"email": email, "password": password, "role": "viewer"}).status_code == 303
    sign_in(page, web_server.url, email=email, password=password)
    page.goto(web_server.url + source.url + "/backups/for-viewers")
    expect(page.get_by_test_id("backup-phase")).to_have_text("Completed")
    expect(page.get_by_role("link", name="Restore", exact=True)).to_have_count(0)
    page.get_by_role("link", name=source.name).click()
    page.get_by_test_id("restores-tab").click()
    expect(page.get_by_test_id("restores-empty")).to_contain_text(f"No restores into {source.name} yet")
