"""End-to-end in Chromium: a cluster's Backups tab, the Create Backup and Schedule Backups dialogs, a backup's page
following its agent live (played over the real agent protocol from a test thread), its contents read from a real
bucket (ministack, AUTH=true), delete with confirmation, and a viewer who sees no buttons."""

from __future__ import annotations

import gzip
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.aws_accounts import CUSTOMER, SECRET
from tests.support.ministack import Ministack
from tests.support.servers import StowageServer
from tests.web.browser import screenshot, sign_in
from tests.web.support import WebClient, register
from tests.web.test_backups import Agent

pytestmark = pytest.mark.e2e
PROJECT = "default"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


class AgentThread:
    """The cluster's agent in a thread: each step runs when the test lets it, so the page is seen between them."""

    def __init__(self, agent: Agent, steps: list[Callable[[], None]]) -> None:
        self._steps = steps
        self._agent = agent
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for step in self._steps:
                self._go.acquire()
                step()
                self._done.release()
        except Exception as exc:  # noqa: BLE001 - any failure of the agent is reported by the test thread
            self.error = exc
            self._done.release()

    def step(self) -> None:
        """Let the agent take its next step and wait until it has."""
        self._go.release()
        assert self._done.acquire(timeout=30), "the agent thread hung"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for the thread and close the agent's connections."""
        self._thread.join(timeout=5)
        self._agent.close()


@dataclass
class Setup:
    """A signed-in admin client, a registered cluster and the bucket of the project's default location."""

    admin: WebClient
    cluster: str
    cluster_url: str
    token: str
    s3: Any
    bucket: str


@pytest.fixture
def setup(web_server: StowageServer, ministack: Ministack) -> Iterator[Setup]:
    """A location in a real bucket (ministack, static keys of the bucket's account) and a registered cluster."""
    accounts = ministack.accounts()
    bucket = f"backups-{uuid.uuid4().hex[:8]}"
    accounts.create_bucket(bucket)
    with web_server.client() as api:
        made = api.post(
            f"/api/v1/projects/{PROJECT}/backup-locations",
            json={
                "name": f"shop-{uuid.uuid4().hex[:4]}",
                "provider": "s3-compatible",
                "bucket": bucket,
                "region": "us-east-1",
                "s3Url": ministack.url,
                "forcePathStyle": True,
                "volumeSnapshots": False,
                "isDefault": True,
                "credentials": {"type": "static", "accessKeyId": CUSTOMER, "secretAccessKey": SECRET},
                "skipValidation": True,
            },
        )
        assert made.status_code == 201, made.text
    admin = WebClient(web_server)
    assert admin.login().status_code == 303
    cluster = register(admin, name=f"prod-eu-{uuid.uuid4().hex[:4]}", cloud_account_id="333333333333")
    yield Setup(admin, cluster.name, cluster.url, cluster.token, accounts.client("s3"), bucket)
    admin.close()


def _write_resource_list(web_server: StowageServer, setup: Setup, name: str) -> None:
    """What the agent uploads at the end: the backup's resource list, where the control plane reads it."""
    with web_server.client() as api:
        prefix = api.get(f"/api/v1/projects/{PROJECT}/clusters/{setup.cluster}/backups/{name}").json()["storagePrefix"]
    resources = {
        "v1/ConfigMap": ["shop/app-config", "shop/feature-flags", "payments/rates"],
        "v1/Secret": ["shop/db-credentials", "payments/stripe"],
        "v1/PersistentVolumeClaim": ["shop/data-postgres-0"],
        "apps/v1/Deployment": ["shop/web", "shop/worker", "payments/api"],
        "apps/v1/StatefulSet": ["shop/postgres"],
        "v1/Service": ["shop/web", "payments/api"],
        "networking.k8s.io/v1/Ingress": ["shop/web"],
    }
    body = gzip.compress(json.dumps(resources).encode())
    setup.s3.put_object(Bucket=setup.bucket, Key=f"{prefix}/{name}-resource-list.json.gz", Body=body)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def test_create_follow_live_schedule_and_delete(page: Any, web_server: StowageServer, setup: Setup) -> None:
    expect = _expect()
    cluster_url, token, cluster_name = setup.cluster_url, setup.token, setup.cluster
    sign_in(page, web_server.url)
    page.goto(web_server.url + cluster_url)
    page.get_by_test_id("backups-tab").click()
    page.wait_for_url("**/backups")
    expect(page.get_by_test_id("backups-empty")).to_contain_text(f"No backups of {cluster_name} yet")

    # A bad name: the server's message under the field, everything else as typed.
    page.get_by_role("link", name="Create Backup").click()
    dialog = page.get_by_role("dialog", name="Create Backup")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Backup name").fill("Shop Nightly")
    dialog.get_by_label("7 days").check()
    dialog.get_by_label("Include all disks").check()
    dialog.get_by_label(re.compile(r"^Namespaces")).fill("shop\npayments")
    dialog.get_by_role("button", name="Create backup").click()
    dialog = page.get_by_role("dialog", name="Create Backup")
    expect(dialog.locator('[data-problem-for="name"]')).to_contain_text('Did you mean "shop-nightly"?')
    expect(dialog.get_by_label(re.compile(r"^Namespaces"))).to_have_value("shop\npayments")
    expect(dialog.get_by_label("7 days")).to_be_checked()
    expect(dialog.get_by_label("Include all disks")).to_be_checked()
    expect(dialog.get_by_label("Backup name")).to_be_focused()
    dialog.get_by_label("Backup name").fill("shop-nightly")
    page.set_viewport_size({"width": 1280, "height": 1180})
    dialog.get_by_label("Backup name").focus()
    screenshot(page, "backup-create.png")
    page.set_viewport_size({"width": 1280, "height": 860})
    dialog.locator("summary", has_text="More filters").click()
    dialog.get_by_label("Excluded resources").fill("events")
    dialog.get_by_role("button", name="Create backup").click()
    page.wait_for_url(re.compile(r".*/backups/shop-nightly(\?notice=backup-created)?$"))
    expect(page.get_by_test_id("backup-phase")).to_have_text("New")
    expect(page.get_by_test_id("backup-request")).to_contain_text("shop, payments")

    # The agent: claim, two progress reports with log lines, then the end; the page follows without a reload.
    agent = Agent(web_server, token)
    job: dict[str, str] = {}

    def claim() -> None:
        job["id"] = agent.job_for("shop-nightly")
        agent.claim(job["id"])
        agent.progress(job["id"], 120, 30, "discovered 41 resource types", "backing up namespace shop")

    def more() -> None:
        agent.progress(job["id"], 120, 90, "backing up namespace payments", "uploading shop-nightly.tar.gz")

    def finish() -> None:
        _write_resource_list(web_server, setup, "shop-nightly")
        agent.complete(
            job["id"],
            "Completed",
            totalItems=13,
            itemsBackedUp=13,
            sizeBytes=3_457_210,
            warnings=[{"message": "skipped: owned by a Job", "namespace": "shop", "resource": "pods", "name": "m-1"}],
            logs=[{"at": _now(), "message": "backup completed: 13 items"}],
        )

    runner = AgentThread(agent, [claim, more, finish])
    try:
        runner.step()
        expect(page.get_by_test_id("backup-phase")).to_have_text("In progress")
        expect(page.get_by_test_id("backup-progress")).to_have_text("30 of 120 items (25%)")
        expect(page.get_by_test_id("backup-logs")).to_contain_text("backing up namespace shop")
        runner.step()
        expect(page.get_by_test_id("backup-progress")).to_have_text("90 of 120 items (75%)")
        expect(page.get_by_test_id("backup-logs")).to_contain_text("uploading shop-nightly.tar.gz")
        screenshot(page, "backup-progress.png", full_page=True)
        runner.step()
    finally:
        runner.close()
    expect(page.get_by_test_id("backup-phase")).to_have_text("Completed")
    expect(page.get_by_test_id("backup-progress")).to_have_text("13 of 13 items (100%)")
    contents = page.get_by_test_id("backup-contents")
    expect(contents).to_contain_text("Deployment")
    expect(contents.locator("li", has_text="Deployment")).to_contain_text("3")
    expect(page.get_by_test_id("backup-warnings")).to_contain_text("skipped: owned by a Job")
    expect(page.get_by_test_id("backup-logs")).to_contain_text("backup completed: 13 items")
    page.get_by_text("ConfigMap").click()
    expect(contents).to_contain_text("shop/feature-flags")
    screenshot(page, "backup.png", full_page=True)

    # A second backup that fails: its reason, with the remedy, is what the page leads with.
    page.get_by_role("link", name="Backups", exact=True).last.click()
    page.get_by_role("link", name="Create Backup").click()
    dialog = page.get_by_role("dialog", name="Create Backup")
    dialog.get_by_label("Backup name").fill("payments-adhoc")
    dialog.get_by_label("Custom", exact=True).check()
    dialog.get_by_label("Hours to keep the backup").fill("36")
    dialog.locator('input[name="cluster_resources"][value="Never"]').check()
    dialog.get_by_role("button", name="Create backup").click()
    page.wait_for_url(re.compile(r".*/backups/payments-adhoc(\?notice=backup-created)?$"))
    failing = Agent(web_server, token)
    try:
        failed_job = failing.job_for("payments-adhoc")
        failing.claim(failed_job)
        failing.progress(failed_job, 50, 5, "backing up namespace payments")
        failing.complete(
            failed_job,
            "Failed",
            failureReason="Uploading to the bucket was denied (s3:PutObject on backups/…). Add s3:PutObject on the "
            "bucket's objects to the location's role, then run the backup again.",
            totalItems=50,
            itemsBackedUp=5,
        )
    finally:
        failing.close()
    expect(page.get_by_test_id("backup-phase")).to_have_text("Failed")
    expect(page.get_by_test_id("failure-reason")).to_contain_text("Add s3:PutObject")
    expect(page.get_by_test_id("contents-note")).to_contain_text("no contents to list")

    # Schedules: a bad custom cron is explained; a preset, then a good custom cron are saved.
    page.get_by_role("link", name="Backups", exact=True).last.click()
    page.get_by_role("link", name="Schedule Backups").click()
    dialog = page.get_by_role("dialog", name="Schedule Backups")
    dialog.get_by_label("Custom cron expression").check()
    dialog.get_by_label("Cron expression", exact=True).fill("0 25 * * *")
    dialog.get_by_label("Backup prefix").fill("nightly")
    dialog.get_by_role("button", name="Save schedule").click()
    dialog = page.get_by_role("dialog", name="Schedule Backups")
    expect(dialog.locator('[data-problem-for="cron"]')).to_contain_text("not a valid cron expression")
    expect(dialog.get_by_label("Backup prefix")).to_have_value("nightly")
    dialog.get_by_label("Every week on Sunday at midnight").check()
    expect(dialog.get_by_label("Cron expression", exact=True)).to_be_hidden()
    dialog.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_role("status")).to_have_text("Backup schedule saved.")
    expect(page.get_by_test_id("schedule-summary")).to_contain_text("Every week on Sunday at midnight")
    page.get_by_role("link", name="Schedule Backups").click()
    dialog = page.get_by_role("dialog", name="Schedule Backups")
    expect(dialog.get_by_test_id("current-schedule")).to_contain_text("Next run")
    dialog.get_by_label("Custom cron expression").check()
    dialog.get_by_label("Cron expression", exact=True).fill("30 2 * * *")
    dialog.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_test_id("schedule-summary")).to_contain_text("Custom cron expression 30 2 * * *")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("schedule-paused")).to_have_text("Paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("schedule-summary")).to_contain_text("next run")
    expect(page.locator('tr[data-backup="shop-nightly"]')).to_contain_text("Completed")
    expect(page.locator('tr[data-backup="payments-adhoc"]')).to_contain_text("Failed")
    screenshot(page, "backups.png", full_page=True)

    # Delete, after a confirmation that says what goes.
    page.locator('tr[data-backup="payments-adhoc"]').get_by_role("link", name="payments-adhoc").click()
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_test_id("delete-consequences")).to_contain_text("EBS snapshots")
    page.get_by_role("button", name="Delete backup").click()
    expect(page.get_by_role("status")).to_contain_text("Deleting the backup")
    row = page.locator('tr[data-backup="payments-adhoc"]')
    expect(row).to_have_count(0, timeout=30_000)  # the tab refreshes itself while the deletion runs

    # "Never" removes the schedule.
    page.get_by_role("link", name="Schedule Backups").click()
    dialog = page.get_by_role("dialog", name="Schedule Backups")
    dialog.get_by_label("Never", exact=True).check()
    expect(dialog.get_by_label("Backup prefix")).to_be_hidden()
    dialog.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_test_id("schedule-summary")).to_contain_text("No backup schedule.")


def test_a_viewer_sees_backups_but_no_create_schedule_or_delete(
    page: Any, web_server: StowageServer, setup: Setup
) -> None:
    expect = _expect()
    admin, cluster_url = setup.admin, setup.cluster_url
    admin.get(cluster_url + "/backups")
    made = admin.post(cluster_url + "/backups", {"name": "for-viewers", "expiry": "24", "cluster_resources": "Auto"})
    assert made.status_code == 303, made.text
    email, password = f"viewer-{uuid.uuid4().hex[:6]}@example.com", "viewer-password-123"
    admin.get("/settings/users")
    assert admin.post("/settings/users", {"email": email, "password": password, "role": "viewer"}).status_code == 303

    sign_in(page, web_server.url, email=email, password=password)
    page.goto(web_server.url + cluster_url + "/backups")
    expect(page.locator('tr[data-backup="for-viewers"]')).to_contain_text("New")
    expect(page.get_by_role("link", name="Create Backup")).to_have_count(0)
    expect(page.get_by_role("link", name="Schedule Backups")).to_have_count(0)
    page.get_by_role("link", name="for-viewers").click()
    expect(page.get_by_test_id("backup-phase")).to_have_text("New")
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
