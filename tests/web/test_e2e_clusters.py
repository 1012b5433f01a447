"""End-to-end: register a cluster in Chromium, see its agent token once, then watch its agent connect."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.servers import StowageServer
from tests.web.browser import screenshot, sign_in
from tests.web.support import heartbeat

pytestmark = pytest.mark.e2e


def test_register_a_cluster_and_see_its_agent_connect(page: Any, web_server: StowageServer) -> None:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    sign_in(page, web_server.url)
    page.get_by_role("link", name="Clusters", exact=True).click()
    page.wait_for_url("**/settings/clusters")

    page.get_by_label("Cluster name").fill(name)
    page.get_by_label("Cloud account ID").fill("333333333333")
    page.get_by_label("Region").fill("eu-west-1")
    page.get_by_role("button", name="Register cluster").click()

    # The token, once, with a copy button and the exact command that starts the agent.
    token = page.get_by_test_id("agent-token").inner_text()
    assert token.startswith("stwa_")
    assert "shown only once" in page.get_by_test_id("token-once").inner_text()
    command = page.get_by_test_id("agent-command").inner_text()
    assert command == f"stowage agent --server {web_server.url} --token {token}"
    page.get_by_role("button", name="Copy").first.click()
    assert page.evaluate("() => navigator.clipboard.readText()") == token

    page.get_by_role("link", name="Done: back to Clusters").click()
    row = page.locator(f'tr[data-cluster="{name}"]')
    assert row.get_by_test_id("cluster-status").inner_text() == "Never connected"
    assert "333333333333" in row.inner_text()
    assert token not in page.content()

    # The agent's first heartbeat, with that token; a reload shows the cluster connected.
    assert heartbeat(web_server, token, version="0.9.1").status_code == 200
    page.reload()
    assert row.get_by_test_id("cluster-status").inner_text() == "Connected"
    assert "0.9.1" in row.inner_text()
    assert "just now" in row.inner_text()
    assert token not in page.content()
    screenshot(page, "clusters.png")
