"""The web UI with a real AWS emulator (ministack, AUTH=true): real issuances in the audit page, the wizard's
trust policy by agent access, the account ID on Project Settings → General and the cluster page's trust policy.

The control plane is account 111111111111, the bucket and the role are in 222222222222, the cluster runs in
333333333333.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.aws_accounts import CLUSTER, PLATFORM, AwsAccounts
from tests.support.ministack import Ministack
from tests.support.servers import StowageServer, start_server
from tests.web.support import WebClient, register, web_env

REGION = "eu-west-1"


@pytest.fixture
def live(ministack: Ministack, tmp_path: Path) -> Iterator[tuple[StowageServer, AwsAccounts, WebClient]]:
    """A wiped emulator, a server whose own AWS identity is the platform account's there, and a signed-in admin."""
    ministack.reset()
    accounts = ministack.accounts()
    server = start_server(tmp_path, extra_env=web_env(**accounts.control_plane_env("us-east-1")))
    admin = WebClient(server)
    assert admin.login().status_code == 303
    yield server, accounts, admin
    admin.close()
    server.stop()


def test_real_issuances_are_listed_without_any_secret(live: tuple[StowageServer, AwsAccounts, WebClient]) -> None:
    server, accounts, admin = live
    bucket = accounts.create_bucket(f"audit-{uuid.uuid4().hex[:8]}", REGION)
    with server.client() as api:
        external_id = api.get("/api/v1/projects/default/sts").json()["externalId"]
        role_arn = accounts.create_role(f"stowage-{uuid.uuid4().hex[:6]}", bucket=bucket, external_id=external_id)
        created = api.post(
            "/api/v1/projects/default/backup-locations",
            json={
                "name": "primary",
                "bucket": bucket,
                "region": REGION,
                "credentials": {"type": "sts", "roleArn": role_arn},
                "skipValidation": True,
            },
        )
        assert created.status_code == 201, created.text
    location_id = created.json()["id"]
    cluster = register(admin, name="prod-eu", cloud_account_id=CLUSTER, region=REGION)
    vended = httpx.get(
        f"{server.url}/api/v1/agent/locations/{location_id}/credentials",
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=60,
    )
    assert vended.status_code == 200, vended.text
    creds = vended.json()

    page = admin.get("/projects/default/settings/credential-issuances", params={"location": location_id})
    assert page.status_code == 200
    row = re.search(r"<tr data-issuance=.*?</tr>", page.text, flags=re.S)
    assert row, page.text
    for text in ("prod-eu", "primary", creds["AccessKeyId"][:8], "Brokered"):
        assert text in row.group(0)
    expiry = creds["Expiration"].replace("T", " ").replace("Z", "")[:16]
    assert expiry in row.group(0)
    pages = [page.text]
    pages += [admin.get(p).text for p in ("/projects/default/settings/clusters", cluster.url)]
    pages.append(admin.get(f"/projects/default/settings/backup-locations/{location_id}").text)
    for text in pages:
        for secret in (creds["SecretAccessKey"], creds["Token"], creds["AccessKeyId"], cluster.token):
            assert secret not in text
    assert 'data-testid="agent-access">Brokered<' in pages[-1]


def test_the_wizard_trust_policy_follows_agent_access(live: tuple[StowageServer, AwsAccounts, WebClient]) -> None:
    server, _, admin = live
    register(admin, name="prod-eu", cloud_account_id=CLUSTER)
    wizard = admin.get("/projects/default/settings/backup-locations/new").text
    assert 'name="agent_access" value="brokered" checked' in wizard
    assert 'name="agent_access" value="direct"' in wizard
    assert f'<option value="{CLUSTER}">prod-eu</option>' in wizard  # registered clusters' accounts suggested
    with server.client() as api:
        external_id = api.get("/api/v1/projects/default/sts").json()["externalId"]
    base = {"bucket": "b-123", "region": REGION, "cluster_trust": "account", "cluster_account_id": CLUSTER}
    url = "/ui/projects/default/policies"

    direct = admin.get(url, params={**base, "agent_access": "direct"})
    assert direct.status_code == 200, direct.text
    statements = json.loads(direct.json()["trustPolicy"])["Statement"]
    assert len(statements) == 2
    assert statements[1]["Principal"] == {"AWS": f"arn:aws:iam::{CLUSTER}:root"}
    assert statements[1]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    one_role = admin.get(
        url,
        params={
            **base,
            "agent_access": "direct",
            "cluster_trust": "role",
            "cluster_role_arn": f"arn:aws:iam::{CLUSTER}:role/nodes",
        },
    )
    role_statement = json.loads(one_role.json()["trustPolicy"])["Statement"][1]
    assert role_statement["Principal"] == {"AWS": f"arn:aws:iam::{CLUSTER}:role/nodes"}
    assert role_statement["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}

    # Brokered agents never assume the role: only Stowage's statement, whatever the hidden fields hold.
    brokered = admin.get(url, params={**base, "agent_access": "brokered", "cluster_account_id": "12"})
    assert brokered.status_code == 200, brokered.text
    assert len(json.loads(brokered.json()["trustPolicy"])["Statement"]) == 1

    missing = admin.get(url, params={"bucket": "b-123", "agent_access": "direct", "cluster_trust": "account"})
    assert missing.status_code == 422
    assert missing.json()["field"] == "clusterAccountId"
    wrong = admin.get(url, params={**base, "agent_access": "sideways"})
    assert wrong.status_code == 422
    assert "brokered or direct" in wrong.json()["message"]


def test_general_page_and_cluster_trust_policy_with_an_aws_identity(
    live: tuple[StowageServer, AwsAccounts, WebClient],
) -> None:
    server, _, admin = live
    with server.client() as api:
        external_id = api.get("/api/v1/projects/default/sts").json()["externalId"]
        role_arn = "arn:aws:iam::222222222222:role/stowage-direct"
        created = api.post(
            "/api/v1/projects/default/backup-locations",
            json={
                "name": "direct-one",
                "bucket": f"direct-{uuid.uuid4().hex[:8]}",
                "region": REGION,
                "credentials": {"type": "sts", "roleArn": role_arn},
                "agentAccess": "direct",
                "skipValidation": True,
            },
        )
        assert created.status_code == 201, created.text
    general = admin.get("/projects/default/settings/general")
    assert general.status_code == 200
    assert f'data-testid="account-id">{PLATFORM}</code>' in general.text
    assert f'data-testid="external-id">{html.escape(external_id)}</code>' in general.text
    assert 'data-testid="sts-unavailable"' not in general.text

    cluster = register(admin, name="prod-eu", cloud_account_id=CLUSTER, region=REGION)
    page = admin.get(cluster.url).text
    shown = re.findall(r'<pre class="json" id="(trust-\d+)"[^>]*data-testid="trust-policy">(.*?)</pre>', page, re.S)
    assert len(shown) == 1, page
    assert f'data-copy="#{shown[0][0]}"' in page
    with server.client() as api:
        expected = api.get(
            f"/api/v1/projects/default/clusters/{cluster.url.rsplit('/', 1)[1]}/trust-policy",
            params={"locationId": created.json()["id"]},
        ).json()["trustPolicy"]
    document = json.loads(html.unescape(shown[0][1]))
    assert document == expected  # the same document the API gives
    assert document["Statement"][1]["Principal"] == {"AWS": f"arn:aws:iam::{CLUSTER}:root"}
    assert document["Statement"][1]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    assert role_arn in page
