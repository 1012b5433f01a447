"""End-to-end: Chromium drives the real server (no AWS identity): login, keyboard-only wizard, static keys."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.support.servers import StowageServer
from tests.web.browser import sign_in
from tests.web.support import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e


def _focused(page: Any) -> dict[str, str]:
    return dict(
        page.evaluate(
            """() => { const e = document.activeElement;
                return {tag: e.tagName.toLowerCase(), name: e.getAttribute('name') || '', id: e.id || '',
                        text: (e.textContent || '').trim(), type: e.getAttribute('type') || ''}; }"""
        )
    )


def _tab_to(page: Any, matches: Any, *, limit: int = 40) -> dict[str, str]:
    """Press Tab until the focused element matches; fail if it never does."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = _focused(page)
        if matches(now):
            return now
    raise AssertionError(f"Tab never reached the element; last focus: {_focused(page)}")


def test_wrong_password_is_refused_with_a_clear_message(page: Any, web_server: StowageServer) -> None:
    page.goto(web_server.url + "/")
    assert "/login" in page.url
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill("this-is-not-it")
    page.get_by_role("button", name="Sign in").click()
    error = page.get_by_test_id("login-error")
    error.wait_for()
    assert error.inner_text() == "Wrong email or password."
    assert page.get_by_label("Email").input_value() == ADMIN_EMAIL  # kept, so only the password is retyped
    assert page.get_by_label("Password").input_value() == ""
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/settings/backup-locations")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login?notice=signed-out")
    assert "You are signed out." in page.content()


def test_keyboard_only_walk_through_the_wizard(page: Any, web_server: StowageServer) -> None:
    keyboard = page.keyboard
    page.goto(web_server.url + "/login")
    assert _focused(page)["name"] == "email"  # autofocus
    keyboard.type(ADMIN_EMAIL)
    keyboard.press("Tab")
    keyboard.type(ADMIN_PASSWORD)
    keyboard.press("Enter")
    page.wait_for_url("**/settings/backup-locations")

    _tab_to(
        page,
        lambda f: f["tag"] == "a" and f["text"].lower().startswith("add") and "backup location" in f["text"].lower(),
    )
    keyboard.press("Enter")
    page.wait_for_url("**/backup-locations/new")
    name = f"kbd-{uuid.uuid4().hex[:6]}"
    assert _focused(page)["name"] == "name"
    keyboard.type(name)
    assert _tab_to(page, lambda f: f["name"] == "bucket")["name"] == "bucket"
    keyboard.type("Keyboard_Bucket")  # wrong on purpose: Next must stop here
    _tab_to(page, lambda f: f["name"] == "region")
    keyboard.type("eu-west-1")
    _tab_to(page, lambda f: f["name"] == "s3_url")
    keyboard.press("Enter")  # implicit submit = Next
    problem = page.locator('[data-problem-for="bucket"]')
    problem.wait_for(state="visible")
    assert "Bucket name" in problem.inner_text()
    assert _focused(page)["name"] == "bucket"  # focus goes to the field to fix
    for _ in range(len("Keyboard_Bucket")):
        keyboard.press("Backspace")  # editing keys inside a text field; navigation stays Tab/Enter
    keyboard.type("keyboard-bucket")
    keyboard.press("Enter")

    page.locator('[data-step="2"]').wait_for(state="visible")
    focused = _focused(page)
    assert focused["name"] == "auth"  # the preselected method: static keys, STS is unavailable here
    assert page.locator('input[name="auth"][value="sts"]').is_disabled()
    _tab_to(page, lambda f: f["name"] == "access_key_id")
    keyboard.type("AKIAABCDEFGHIJKLMNOP")
    keyboard.press("Tab")
    assert _focused(page)["name"] == "secret_access_key"
    keyboard.type("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    keyboard.press("Enter")

    page.locator('[data-step="3"]').wait_for(state="visible")
    summary = page.locator("[data-summary]").inner_text()
    assert name in summary and "keyboard-bucket" in summary and "secret hidden" in summary
    assert "wJalrXUtnFEMI" not in page.content()
    focused = _focused(page)
    assert focused["text"] == "Validate"
    keyboard.press("Enter")
    page.locator("[data-progress]").wait_for(state="visible")
    assert re.fullmatch(r"\d+ s", page.locator("[data-elapsed]").inner_text())
    result = page.locator("[data-result]")
    result.wait_for(state="visible", timeout=60_000)
    assert "Validation failed" in result.inner_text()
    assert page.locator(".check-failed").count() >= 1
    assert page.locator("[data-create]").is_disabled()
    # Back to step 1 with Tab/Enter: the Back button.
    _tab_to(page, lambda f: f["text"] == "Back")
    keyboard.press("Enter")
    keyboard.press("Enter")  # focus is back on the step's first field; Enter means Next again
    page.locator('[data-step="2"]').wait_for(state="visible")


def test_static_keys_location_created_found_made_default_and_deleted(page: Any, web_server: StowageServer) -> None:
    sign_in(page, web_server.url)
    name = f"static-{uuid.uuid4().hex[:6]}"
    page.get_by_role("link", name=re.compile("Add (New|your first) Backup Location", re.I)).first.click()
    page.get_by_label("Location Name").fill(name)
    page.get_by_label("S3 Bucket", exact=True).fill("static-bucket")
    page.get_by_label("Region", exact=True).fill("eu-west-1")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Access key ID", exact=True).fill("AKIAABCDEFGHIJKLMNOP")
    page.get_by_label("Secret access key", exact=True).fill("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    page.get_by_role("button", name="Next").click()
    create = page.get_by_role("button", name="Create")
    assert create.is_disabled()
    page.get_by_label(re.compile("Skip the live checks")).check()
    assert create.is_enabled()
    create.click()
    page.wait_for_url(re.compile(r".*/backup-locations/[0-9a-f-]{36}\?notice=created"))
    assert page.get_by_test_id("status").inner_text() == "Unverified"
    assert "wJalrXUtnFEMI" not in page.content()

    page.get_by_role("link", name="Backup Locations").first.click()
    page.get_by_label("Search backup locations").fill(name[-6:])
    page.wait_for_url(re.compile(r".*\?search=" + name[-6:] + "$"))  # filtered as typed, no submit
    row = page.locator(f'tr[data-location="{name}"]')
    row.wait_for()
    assert page.locator("tbody tr").count() == 1
    row.get_by_role("link", name=name).click()

    if page.get_by_role("button", name="Set as default").count():
        page.get_by_role("button", name="Set as default").click()
        page.wait_for_url("**?notice=default")
    assert page.locator("h1 .pill-default").count() == 1

    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete location").click()
    page.wait_for_url("**?notice=deleted")
    assert "Backup location deleted." in page.get_by_role("status").first.inner_text()
    assert page.locator(f'tr[data-location="{name}"]').count() == 0


def test_narrow_screen_has_no_sideways_scrolling(page: Any, web_server: StowageServer) -> None:
    with web_server.client() as api:
        created = api.post(
            "/api/v1/projects/default/backup-locations",
            json={
                "name": f"narrow-{uuid.uuid4().hex[:6]}",
                "bucket": "a-rather-long-bucket-name-for-a-small-screen",
                "region": "ap-southeast-2",
                "prefix": "clusters/production/eu-central/with/a/deep/prefix",
                "credentials": {"type": "static", "accessKeyId": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": "x" * 40},
                "skipValidation": True,
            },
        )
        assert created.status_code == 201, created.text
    detail = "/projects/default/settings/backup-locations/" + created.json()["id"]
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, web_server.url)
    for path in (
        "/projects/default/settings/backup-locations",
        "/projects/default/settings/backup-locations/new",
        detail,
        detail + "/edit",
        "/settings/users",
        "/settings/projects",
        "/settings/tokens",
        "/projects/default/settings/general",
    ):
        page.goto(web_server.url + path)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px screen"
