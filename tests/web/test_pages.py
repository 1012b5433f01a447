"""Backup Locations pages over HTTP: list and search, wizard endpoints, detail, edit, default, delete, errors."""

from __future__ import annotations

import uuid

from tests.web.support import WebClient, create_unverified, location_form

LIST = "/projects/default/settings/backup-locations"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_empty_state_invites_to_add_the_first_location(admin: WebClient) -> None:
    admin.get("/settings/users")
    # A project of its own, so other tests' locations don't show up.
    project = _unique("empty")
    token_client = admin.server.client()
    assert token_client.post("/api/v1/projects", json={"name": project}).status_code == 201
    page = admin.get(f"/projects/{project}/settings/backup-locations")
    assert page.status_code == 200
    assert 'data-testid="empty-state"' in page.text
    assert "Add your first backup location" in page.text
    assert f'<option value="{project}" selected>' in page.text
    switched = admin.get(f"/ui/switch-project?project={project}")
    assert switched.headers["location"] == f"/projects/{project}/settings/backup-locations"


def test_list_shows_the_columns_and_search_filters_server_side(admin: WebClient) -> None:
    alpha = _unique("alpha")
    beta = _unique("beta")
    create_unverified(admin, name=alpha, bucket="alpha-bucket", region="eu-west-1")
    create_unverified(admin, name=beta, bucket="beta-bucket", region="ap-south-1")
    page = admin.get(LIST)
    for text in (alpha, beta, "alpha-bucket", "ap-south-1", "Static keys", "Unverified", "AWS"):
        assert text in page.text
    only_beta = admin.get(LIST, params={"search": "ap-south", "fragment": "1"})
    assert beta in only_beta.text
    assert alpha not in only_beta.text
    assert "<html" not in only_beta.text  # the script swaps in just the table
    nothing = admin.get(LIST, params={"search": "zzz-no-such", "fragment": "1"})
    assert "No locations match" in nothing.text


def test_inline_checks_use_the_domain_rules(admin: WebClient) -> None:
    admin.get(LIST + "/new")
    answer = admin.post_json(
        "/ui/projects/default/backup-locations/check",
        location_form("bad name!", bucket="Bad_Bucket", region="frankfurt", prefix="/x", auth="sts", role_arn="nope"),
    )
    assert answer.status_code == 200
    problems = answer.json()["problems"]
    assert "Bucket name" in problems["bucket"]["message"]
    assert "eu-central-1" in problems["region"]["message"]
    assert problems["name"]["level"] == "error"
    assert "prefix" in problems
    assert "role_arn" in problems
    fine = admin.post_json("/ui/projects/default/backup-locations/check", location_form()).json()["problems"]
    assert fine == {}
    dotted = admin.post_json("/ui/projects/default/backup-locations/check", location_form(bucket="a.b.c")).json()
    assert dotted["problems"]["bucket"]["level"] == "warning"
    multi = admin.post_json(
        "/ui/projects/default/backup-locations/check",
        location_form(cluster_trust="account", cluster_account_id="1234"),
    ).json()["problems"]
    assert "12" in multi["cluster_account_id"]["message"]


def test_wizard_without_aws_identity_offers_static_keys_and_says_why(admin: WebClient) -> None:
    page = admin.get(LIST + "/new")
    assert page.status_code == 200
    assert 'data-testid="sts-unavailable"' in page.text
    assert 'value="sts" disabled' in page.text
    assert 'value="static" checked' in page.text
    for label in (
        "Location Name",
        "Location Provider",
        "Certificate",
        "S3 Bucket",
        "Region",
        "S3 URL",
        "Force S3 path style",
    ):
        assert label in page.text
    assert page.text.count("<option value=") > 30  # the regions list
    policies = admin.get("/ui/projects/default/policies", params={"bucket": "acme-backups", "region": "eu-west-1"})
    # The permission policy needs no AWS identity (static keys use it too); only the trust policy is absent.
    assert policies.status_code == 200
    assert "acme-backups" in policies.json()["permissionPolicy"]
    assert "trustPolicy" not in policies.json()
    assert "STS method is unavailable" in policies.json()["trustPolicyUnavailable"]


def test_failed_validation_shows_checks_and_create_needs_a_passing_one(admin: WebClient) -> None:
    admin.get(LIST + "/new")
    form = location_form(_unique("unreachable"))
    answer = admin.post_json("/ui/projects/default/backup-locations/validate", form)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["report"]["ok"] is False
    assert body["token"] is None
    assert any(c["status"] == "failed" for c in body["report"]["checks"])
    assert all(
        {"id", "status", "message", "remedy", "remedyText", "remedyJson"} <= set(c) for c in body["report"]["checks"]
    )
    assert SECRET not in answer.text
    refused = admin.post_json("/ui/projects/default/backup-locations", form)
    assert refused.status_code == 409
    assert refused.json()["code"] == "validate_first"
    forged = admin.post_json("/ui/projects/default/backup-locations", {**form, "validation_token": "0" * 64})
    assert forged.status_code == 409


def test_static_problems_fail_validation_before_any_network(admin: WebClient) -> None:
    admin.get(LIST + "/new")
    answer = admin.post_json("/ui/projects/default/backup-locations/validate", location_form(bucket="UPPER"))
    checks = {c["id"]: c for c in answer.json()["report"]["checks"]}
    assert checks["bucket-name"]["status"] == "failed"
    skipped = admin.post_json(
        "/ui/projects/default/backup-locations", {**location_form(bucket="UPPER"), "skip_validation": "on"}
    )
    assert skipped.status_code == 422
    assert skipped.json()["report"]["ok"] is False
    bad_name = admin.post_json("/ui/projects/default/backup-locations/validate", location_form("!!"))
    assert bad_name.status_code == 422
    assert bad_name.json()["field"] == "name"


def test_detail_default_edit_and_delete(admin: WebClient) -> None:
    name = _unique("detail")
    detail = create_unverified(admin, name=name, bucket="detail-bucket", prefix="clusters/prod")
    page = admin.get(detail)
    assert page.status_code == 200
    for text in (
        name,
        "detail-bucket",
        "clusters/prod",
        "Unverified",
        "Validation history",
        "Re-validate now",
        "Edit",
        "Delete",
    ):
        assert text in page.text
    assert SECRET not in page.text
    assert "KEY" in page.text  # the masked secret's last four characters, and nothing more

    made_default = admin.post(detail + "/default")
    assert made_default.status_code == 303
    page = admin.get(made_default.headers["location"])
    assert "This is now the project&#39;s default backup location." in page.text
    assert "Set as default" not in page.text
    listing = admin.get(LIST, params={"search": name})
    assert "pill-default" in listing.text

    edit_page = admin.get(detail + "/edit")
    assert edit_page.status_code == 200
    assert SECRET not in edit_page.text
    assert "Leave blank to keep the stored secret." in edit_page.text
    renamed = name + "-x"
    form = {**location_form(renamed, bucket="detail-bucket", prefix="clusters/prod"), "secret_access_key": ""}
    saved = admin.post(detail + "/edit", form)
    assert saved.status_code == 303, saved.text
    assert renamed in admin.get(detail).text

    # A new bucket must pass validation again; it cannot here, so nothing changes and the report is shown.
    moved = admin.post(detail + "/edit", {**form, "bucket": "another-bucket"})
    assert moved.status_code == 422
    assert "did not pass validation" in moved.text
    assert "check-failed" in moved.text
    assert SECRET not in moved.text
    assert "another-bucket" in moved.text  # the form keeps what was typed
    assert "detail-bucket" in admin.get(detail).text

    revalidated = admin.post(detail + "/validate")
    assert revalidated.status_code == 303
    after = admin.get(revalidated.headers["location"])
    assert "Unavailable" in after.text
    assert "Validation failed" in after.text

    confirm = admin.get(detail + "/delete")
    assert confirm.status_code == 200
    assert "not</strong> touched" in confirm.text
    gone = admin.post(detail + "/delete")
    assert gone.status_code == 303
    assert "deleted" in admin.get(gone.headers["location"]).text
    assert admin.get(detail).status_code == 404


def test_duplicate_names_and_bad_input_are_friendly(admin: WebClient) -> None:
    name = _unique("dup")
    create_unverified(admin, name=name)
    admin.get(LIST + "/new")
    again = admin.post_json("/ui/projects/default/backup-locations", {**location_form(name), "skip_validation": "on"})
    assert again.status_code == 409
    assert "already exists" in again.json()["message"]
    huge = admin.post_json("/ui/projects/default/backup-locations/check", location_form(bucket="b" * 5000))
    assert "too long" in huge.json()["problems"]["bucket"]["message"]
    bad_provider = admin.post_json("/ui/projects/default/backup-locations/check", location_form(provider="gcs"))
    assert "provider" in bad_provider.json()["problems"]


def test_errors_are_friendly_pages_never_tracebacks(admin: WebClient) -> None:
    for path in (
        "/projects/no-such-project/settings/backup-locations",
        LIST + "/" + str(uuid.uuid4()),
        LIST + "/" + str(uuid.uuid4()) + "/edit",
        "/projects/default/settings/nothing-here",
        "/account/nothing",
    ):
        page = admin.get(path)
        assert page.status_code == 404, path
        assert "text/html" in page.headers["content-type"]
        assert 'data-testid="error-message"' in page.text
        assert "Traceback" not in page.text
    assert admin.get("/logout").headers["location"] == "/"  # a link never signs out; only the form does
    assert admin.get("/account").status_code == 200
    unknown_ui = admin.get("/ui/nothing")
    assert unknown_ui.status_code == 404
    assert unknown_ui.json()["code"] == "not_found"
