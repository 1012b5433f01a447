"""End-to-end in Chromium: create a workspace of three clusters (one agent disconnected), back it up (two backups,
one reported skip), the agents complete over their real protocol, the page follows the roll-up, a schedule is
saved, protection badges show on the Clusters and Workspaces pages, and a viewer sees no buttons."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.agents.helpers import create_location, register
from tests.support.servers import StowageServer
from tests.web.browser import screenshot, sign_in
from tests.web.support import WebClient, heartbeat
from tests.web.test_workspaces import finish

pytestmark = pytest.mark.e2e
PROJECT = "default"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_workspaces_walkthrough(web_server: StowageServer, page: Any, browser: Any) -> None:
    expect = _expect()
    tag = uuid.uuid4().hex[:4]
    with web_server.client() as api:
        create_location(api, f"primary-{tag}", isDefault=True)
        eu, us, lab = (register(api, f"{stem}-{tag}") for stem in ("prod-eu", "prod-us", "lab"))
    for cluster in (eu, us):
        assert heartbeat(web_server, cluster["agentToken"]).status_code == 200
    base = web_server.url

    sign_in(page, base)
    page.get_by_role("link", name="Workspaces").click()
    expect(page.get_by_role("heading", name="Workspaces", exact=True)).to_be_visible()
    page.get_by_label("Workspace name").fill(f"payments-{tag}")
    for cluster in (eu, us, lab):
        page.get_by_label(cluster["name"], exact=True).check()
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("heading", name=f"payments-{tag}")).to_be_visible()
    lab_row = page.locator(f'tr[data-cluster="{lab["name"]}"]')
    expect(lab_row.get_by_test_id("connection")).to_have_text("Disconnected")
    expect(lab_row.get_by_test_id("risk")).to_contain_text("Never backed up")

    # Back up now: the dialog warns that lab will be skipped; the result says so with the reason.
    page.get_by_role("link", name="Back up now").click()
    dialog = page.locator("#backup-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("disconnected: will be skipped")
    dialog.get_by_label("Backup name").fill("nightly")
    dialog.locator("#b-f-namespaces").fill("shop, payments")
    screenshot(page, "workspace-backup-dialog.png")
    dialog.get_by_role("button", name="Back up").click()
    expect(page.get_by_test_id("skipped")).to_contain_text(f"The agent of cluster '{lab['name']}' is disconnected")
    expect(page.get_by_test_id("parts").locator("tbody tr")).to_have_count(2)
    expect(page.get_by_test_id("tally")).to_have_text("0 of 3 clusters completed")

    # The agents take their parts; the page reloads itself until the roll-up is final.
    finish(web_server, eu, f"nightly-{eu['name']}")
    finish(web_server, us, f"nightly-{us['name']}")
    expect(page.get_by_test_id("rollup").get_by_test_id("phase")).to_have_text("Partially failed", timeout=20_000)
    expect(page.get_by_test_id("tally")).to_have_text("2 of 3 clusters completed")
    screenshot(page, "workspace-backup.png", full_page=True)

    # Schedule with one of Palette's presets.
    page.get_by_role("link", name=f"payments-{tag}").click()
    page.get_by_role("link", name="Schedule", exact=True).click()
    schedule = page.locator("#schedule-dialog")
    schedule.get_by_label(re.compile("Every week on Sunday at midnight")).check()
    schedule.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_test_id("schedule-summary")).to_contain_text("0 0 * * 0")
    expect(page.locator(f'tr[data-cluster="{eu["name"]}"]').get_by_test_id("risk")).to_have_text("On time")
    screenshot(page, "workspace.png", full_page=True)

    # Protection on the Clusters page: lab, never backed up, stands out.
    page.get_by_role("link", name="Clusters", exact=True).click()
    lab_row = page.locator(f'tr[data-cluster="{lab["name"]}"]')
    # Tinted red (by the row's :has(.badge-risk-never) rule), unlike a protected row.
    tint = "el => getComputedStyle(el.querySelector('td')).backgroundColor"
    assert lab_row.evaluate(tint) != page.locator(f'tr[data-cluster="{eu["name"]}"]').evaluate(tint)
    expect(lab_row.get_by_test_id("risk")).to_contain_text("Never backed up")
    eu_row = page.locator(f'tr[data-cluster="{eu["name"]}"]')
    expect(eu_row.get_by_test_id("risk")).to_have_text("On time")
    screenshot(page, "clusters-protection.png", full_page=True)

    # The Workspaces page: the roll-up is the worst cluster's risk; the next run is the schedule's.
    page.get_by_role("link", name="Workspaces").click()
    row = page.locator(f'tr[data-workspace="payments-{tag}"]')
    expect(row.get_by_test_id("risk")).to_contain_text("Never backed up")
    expect(row).not_to_contain_text("Not scheduled")
    screenshot(page, "workspaces.png")

    # A viewer sees the same pages and no buttons.
    email, password = f"viewer-{tag}@example.com", f"viewer-password-{tag}"
    admin = WebClient(web_server)
    try:
        assert admin.login().status_code == 303
        admin.get("/settings/users")
        assert (
            admin.post("/settings/users", {"email": email, "password": password, "role": "viewer"}).status_code == 303
        )
    finally:
        admin.close()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        viewer = context.new_page()
        sign_in(viewer, base, email, password)
        viewer.goto(f"{base}/projects/{PROJECT}/settings/workspaces/payments-{tag}")
        expect(viewer.get_by_role("heading", name=f"payments-{tag}")).to_be_visible()
        for name in ("Back up now", "Schedule", "Delete workspace"):
            expect(viewer.get_by_role("link", name=name, exact=True)).to_have_count(0)
        expect(viewer.get_by_role("button", name="Remove")).to_have_count(0)
        viewer.get_by_role("link", name="nightly").click()
        expect(viewer.get_by_test_id("rollup")).to_contain_text("Partially failed")
        expect(viewer.get_by_role("link", name="Restore")).to_have_count(0)
        expect(viewer.get_by_role("link", name="Delete backup")).to_have_count(0)
    finally:
        context.close()
