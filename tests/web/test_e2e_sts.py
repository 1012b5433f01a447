"""End-to-end, the spec's walk-through: Chromium, a real server and a real ministack (AWS emulator, AUTH=true).

The control plane is account 111111111111; the bucket and the role live in the customer's account
222222222222. The role is first created without s3:DeleteObject: validation must fail on exactly that check
with a remedy to paste; after the permission policy is fixed, validation passes and the location is created,
found with search, made the default and deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws_accounts import CLUSTER, CUSTOMER, PLATFORM, AwsAccounts
from tests.support.ministack import Ministack
from tests.support.servers import StowageServer, start_server
from tests.web.browser import screenshot, sign_in
from tests.web.support import web_env

pytestmark = pytest.mark.e2e

BUCKET = "acme-cluster-backups"
REGION = "eu-west-1"
ROLE = "stowage-backups"


@pytest.fixture
def aws_server(ministack: Ministack, tmp_path: Any) -> Iterator[tuple[StowageServer, AwsAccounts]]:
    """A wiped emulator and a server whose own AWS identity is the platform account's, there."""
    ministack.reset()
    accounts = ministack.accounts()
    server = start_server(tmp_path, extra_env=web_env(**accounts.control_plane_env("us-east-1")))
    yield server, accounts
    server.stop()


def _create_other_location(server: StowageServer) -> None:
    """A second location, made over the API, so the list has something to compare with (and a default)."""
    with server.client() as api:
        response = api.post(
            "/api/v1/projects/default/backup-locations",
            json={
                "name": "archive-minio",
                "provider": "s3-compatible",
                "bucket": "archive",
                "region": "us-east-1",
                "s3Url": "https://minio.example.internal:9000",
                "forcePathStyle": True,
                "volumeSnapshots": False,
                "credentials": {"type": "static", "accessKeyId": "minioadmin", "secretAccessKey": "minio-secret-1"},
                "skipValidation": True,
            },
        )
        assert response.status_code == 201, response.text


def test_add_location_with_sts_as_in_the_spec(page: Any, aws_server: tuple[StowageServer, AwsAccounts]) -> None:
    server, accounts = aws_server
    accounts.create_bucket(BUCKET, REGION)
    _create_other_location(server)

    # 1–3: log in, Project Settings → Backup Locations, Add New Backup Location.
    sign_in(page, server.url)
    page.get_by_role("link", name="Add New Backup Location").click()

    # 4: the location fields.
    page.get_by_label("Location Name").fill("prod-backups")
    assert page.get_by_label("Location Provider").input_value() == "aws"
    page.get_by_label("S3 Bucket", exact=True).fill(BUCKET)
    page.get_by_label("Region", exact=True).fill(REGION)
    page.get_by_role("button", name="Next").click()

    # 5–6: STS, with Stowage's account ID and the project's External ID shown with copy buttons.
    assert page.locator('input[name="auth"][value="sts"]').is_checked()
    assert page.get_by_test_id("sts-account-id").inner_text() == PLATFORM
    external_id = page.get_by_test_id("sts-external-id").inner_text()
    assert len(external_id) >= 43
    permission = page.get_by_test_id("permission-policy")
    page.wait_for_function("() => document.querySelector('#permission-policy').textContent.includes('Version')")
    permission_doc = json.loads(permission.inner_text())
    assert f"arn:aws:s3:::{BUCKET}/*" in json.dumps(permission_doc)
    trust_doc = json.loads(page.get_by_test_id("trust-policy").inner_text())
    assert trust_doc["Statement"][0]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    assert page.get_by_role("button", name="Copy").count() >= 4

    # Multi-account, direct agent access: the agents in the cluster's account A assume the role themselves, so
    # naming account A adds its statement to the trust policy at once, with the External ID required.
    assert page.locator('input[name="agent_access"][value="brokered"]').is_checked()
    assert page.get_by_label("Cluster AWS account ID").is_hidden()
    page.locator('input[name="agent_access"][value="direct"]').check()
    page.get_by_label("Cluster AWS account ID").fill(CLUSTER)
    page.wait_for_function(
        f"() => document.querySelector('#trust-policy').textContent.includes('arn:aws:iam::{CLUSTER}:root')"
    )
    statements = json.loads(page.get_by_test_id("trust-policy").inner_text())["Statement"]
    assert len(statements) == 2
    assert statements[1]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    screenshot(page, "wizard-sts.png", full_page=True)

    # The customer creates the role from what the page shows, but forgets s3:DeleteObject.
    trust = json.loads(page.get_by_test_id("trust-policy").inner_text())
    iam = accounts.client("iam", CUSTOMER, "us-east-1")
    role_arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    incomplete = accounts.permission_policy(BUCKET, remove=["s3:DeleteObject"])
    iam.put_role_policy(RoleName=ROLE, PolicyName="stowage", PolicyDocument=json.dumps(incomplete))

    # 9: paste the role ARN; 12: validate.
    page.get_by_label("Role ARN", exact=True).fill(role_arn)
    page.get_by_role("button", name="Next").click()
    create = page.get_by_role("button", name="Create")
    assert create.is_disabled()
    page.get_by_role("button", name="Validate").click()
    page.locator("[data-progress]").wait_for(state="visible")
    result = page.locator("[data-result]")
    result.wait_for(state="visible", timeout=90_000)
    assert "Validation failed: 1 check failed" in result.inner_text()
    failed = page.locator('.check-failed[data-check="s3:DeleteObject"]')
    assert failed.count() == 1
    assert "Denied" in failed.inner_text()
    remedy_json = json.loads(failed.locator("pre.json").inner_text())
    assert remedy_json["Action"] == ["s3:DeleteObject"]
    assert failed.get_by_role("button", name="Copy").is_visible()
    assert page.locator('.check-passed[data-check="assume-role"]').count() == 1
    assert page.locator('.check-passed[data-check="s3:PutObject"]').count() == 1
    assert create.is_disabled()
    failed.scroll_into_view_if_needed()
    screenshot(page, "validation-failed.png", full_page=True)

    # The customer adds the missing permission (the full policy from the page); validate again, then create.
    iam.put_role_policy(RoleName=ROLE, PolicyName="stowage", PolicyDocument=json.dumps(permission_doc))
    page.get_by_role("button", name="Validate").click()
    page.wait_for_function("() => document.querySelector('[data-result]').textContent.includes('passed')")
    assert page.locator(".check-failed").count() == 0
    assert create.is_enabled()
    # Changing an input after validating disables Create until validated again.
    page.get_by_role("button", name="Back").click()
    page.get_by_label("Role ARN", exact=True).fill(role_arn + "-other")
    page.get_by_role("button", name="Next").click()
    assert create.is_disabled()
    page.get_by_role("button", name="Back").click()
    page.get_by_label("Role ARN", exact=True).fill(role_arn)
    page.get_by_role("button", name="Next").click()
    assert create.is_enabled()
    create.click()
    page.wait_for_url(re.compile(r".*/backup-locations/[0-9a-f-]{36}\?notice=created"), timeout=90_000)
    assert page.get_by_test_id("status").inner_text() == "Available"
    assert page.get_by_test_id("agent-access").inner_text() == "Direct"
    detail_url = page.url.split("?")[0]

    # Validate: the list shows it, and search finds it.
    page.get_by_role("link", name="Backup Locations").first.click()
    row = page.locator('tr[data-location="prod-backups"]')
    assert "Available" in row.inner_text()
    assert "STS" in row.inner_text()
    page.get_by_label("Search backup locations").fill("prod")
    page.wait_for_url(re.compile(r".*\?search=prod$"))
    assert page.locator("tbody tr").count() == 1
    page.get_by_label("Search backup locations").fill("")
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 2")
    screenshot(page, "list.png")

    # Set it as the default, then delete it.
    page.goto(detail_url)
    assert page.locator("h1 .pill-default").count() == 0  # the first location is the default
    page.get_by_role("button", name="Set as default").click()
    page.wait_for_url("**?notice=default")
    assert page.locator("h1 .pill-default").count() == 1
    page.get_by_role("button", name="Re-validate now").click()
    page.wait_for_url("**?notice=validated-ok", timeout=90_000)
    assert page.locator("[data-testid=history] > li").count() == 2  # create, then manual
    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete location").click()
    page.wait_for_url("**?notice=deleted")
    assert page.locator('tr[data-location="prod-backups"]').count() == 0
    assert page.locator('tr[data-location="archive-minio"]').count() == 1
    # Validation cleans up after itself; only the run without s3:DeleteObject could not remove its probe.
    leftovers = accounts.object_keys(BUCKET)
    assert len(leftovers) <= 1
    assert all(key.startswith(".stowage-validation/") for key in leftovers)


def _focused_name(page: Any) -> str:
    return str(
        page.evaluate("() => document.activeElement.getAttribute('name') || document.activeElement.textContent.trim()")
    )


def _tab_until(page: Any, wanted: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _focused_name(page) == wanted:
            return
    raise AssertionError(f"Tab never reached {wanted!r}")


def test_keyboard_only_from_sign_in_to_a_created_sts_location(
    page: Any, aws_server: tuple[StowageServer, AwsAccounts]
) -> None:
    server, accounts = aws_server
    accounts.create_bucket(BUCKET, REGION)
    with server.client() as api:
        external_id = api.get("/api/v1/projects/default/sts").json()["externalId"]
    role_arn = accounts.create_role(ROLE, bucket=BUCKET, external_id=external_id)
    keyboard = page.keyboard

    page.goto(server.url + "/login")
    keyboard.type("admin@example.com")
    keyboard.press("Tab")
    keyboard.type("correct-horse-battery-staple")
    keyboard.press("Enter")
    page.wait_for_url("**/settings/backup-locations")
    for _ in range(30):
        keyboard.press("Tab")
        if (
            _focused_name(page).lower().startswith("add")
            and page.evaluate("() => document.activeElement.tagName") == "A"
        ):
            break
    keyboard.press("Enter")
    page.wait_for_url("**/backup-locations/new")
    keyboard.type("keyboard-sts")
    _tab_until(page, "bucket")
    keyboard.type(BUCKET)
    _tab_until(page, "region")
    keyboard.type(REGION)
    _tab_until(page, "s3_url")
    keyboard.press("Enter")
    page.locator('[data-step="2"]').wait_for(state="visible")
    assert page.evaluate("() => document.activeElement.value") == "sts"
    _tab_until(page, "role_arn")
    keyboard.type(role_arn)
    keyboard.press("Enter")
    page.locator('[data-step="3"]').wait_for(state="visible")
    assert _focused_name(page) == "Validate"
    keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.hasAttribute('data-create')", timeout=90_000)
    assert "Validation passed" in page.locator("[data-result]").inner_text()
    keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/backup-locations/[0-9a-f-]{36}\?notice=created"), timeout=90_000)
    assert page.get_by_test_id("status").inner_text() == "Available"
