"""Backup-location endpoints through a real uvicorn server (SQLite, no AWS identity).

Live validation needs AWS; here the control plane has no identity, so these tests cover the static checks,
``skipValidation`` and the CRUD contract. The live path is covered against ministack in tests/aws and
tests/api/test_live_api.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.servers import StowageServer

BASE = "/api/v1/projects/default/backup-locations"


def spec(name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "provider": "aws",
        "bucket": f"{name.lower()}-bucket",
        "region": "us-east-1",
        "credentials": {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/stowage-backup"},
        "skipValidation": True,
    }
    body.update(overrides)
    return body


@pytest.fixture
def http(server: StowageServer) -> Any:
    with server.client() as client:
        yield client
        for item in client.get(BASE, params={"limit": 500}).json()["items"]:
            client.delete(f"{BASE}/{item['id']}")


def test_create_with_skip_validation_is_unverified_and_first_is_default(http: httpx.Client) -> None:
    answer = http.post(BASE, json=spec("alpha"))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "Unverified" and body["isDefault"] is True
    assert body["externalId"] and body["project"] == "default" and body["lastValidatedAt"] is None
    second = http.post(BASE, json=spec("beta")).json()
    assert second["isDefault"] is False


def test_duplicate_name_is_409(http: httpx.Client) -> None:
    assert http.post(BASE, json=spec("dup")).status_code == 201
    again = http.post(BASE, json=spec("dup", bucket="other-bucket"))
    assert again.status_code == 409 and "already exists" in again.json()["message"]


def test_list_search_limit_offset_total(http: httpx.Client) -> None:
    for name, region in [("prod-east", "us-east-1"), ("prod-west", "us-west-2"), ("dev", "eu-west-1")]:
        assert http.post(BASE, json=spec(name, region=region)).status_code == 201
    everything = http.get(BASE).json()
    assert everything["total"] == 3 and [i["name"] for i in everything["items"]] == ["dev", "prod-east", "prod-west"]
    assert http.get(BASE, params={"search": "PROD"}).json()["total"] == 2
    assert [i["name"] for i in http.get(BASE, params={"search": "eu-west"}).json()["items"]] == ["dev"]
    assert http.get(BASE, params={"search": "dev-bucket"}).json()["total"] == 1
    assert http.get(BASE, params={"search": "%"}).json()["total"] == 0  # LIKE wildcards are literal
    page = http.get(BASE, params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and [i["name"] for i in page["items"]] == ["prod-east"]
    assert http.get(BASE, params={"limit": 0}).status_code == 422
    assert http.get(BASE, params={"offset": -1}).status_code == 422


def test_get_patch_default_delete(http: httpx.Client) -> None:
    first = http.post(BASE, json=spec("one")).json()
    second = http.post(BASE, json=spec("two")).json()
    assert http.get(f"{BASE}/{first['id']}").json()["name"] == "one"
    renamed = http.patch(f"{BASE}/{second['id']}", json={"name": "two-renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "two-renamed"
    clash = http.patch(f"{BASE}/{second['id']}", json={"name": "one"})
    assert clash.status_code == 409
    made_default = http.post(f"{BASE}/{second['id']}/default").json()
    assert made_default["isDefault"] is True
    assert http.get(f"{BASE}/{first['id']}").json()["isDefault"] is False
    defaults = [i for i in http.get(BASE).json()["items"] if i["isDefault"]]
    assert len(defaults) == 1
    assert http.delete(f"{BASE}/{first['id']}").status_code == 204
    missing = http.get(f"{BASE}/{first['id']}")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_changing_what_the_location_reaches_requires_validation(http: httpx.Client) -> None:
    created = http.post(BASE, json=spec("moving")).json()
    answer = http.patch(f"{BASE}/{created['id']}", json={"bucket": "another-bucket"})
    # No AWS identity here: the live checks cannot pass, so the change is refused and nothing is lost.
    assert answer.status_code == 422 and answer.json()["code"] == "validation_failed"
    assert http.get(f"{BASE}/{created['id']}").json()["bucket"] == "moving-bucket"
    forced = http.patch(f"{BASE}/{created['id']}", json={"bucket": "another-bucket", "skipValidation": True})
    assert forced.status_code == 200 and forced.json()["status"] == "Unverified"


def test_static_secret_is_masked_everywhere_and_encrypted_at_rest(http: httpx.Client, server: StowageServer) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    body = spec(
        "static-one", credentials={"type": "static", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": secret}
    )
    created = http.post(BASE, json=body)
    assert created.status_code == 201, created.text
    assert secret not in created.text
    assert created.json()["credentials"]["secretAccessKey"].endswith("MPLEKEY"[-4:])
    assert created.json()["externalId"] is None
    for text in (http.get(BASE).text, http.get(f"{BASE}/{created.json()['id']}").text):
        assert secret not in text
    raw = (server.data_dir / "stowage.db").read_bytes()
    assert secret.encode() not in raw
    assert secret not in server.log.read_text()


def test_validate_reports_static_failures_with_contract_ids(http: httpx.Client) -> None:
    body = spec("bad", bucket="Bad_Bucket..name", region="us-est-1")
    body.pop("skipValidation")
    report = http.post(f"{BASE}/validate", json=body)
    assert report.status_code == 200, report.text
    data = report.json()
    assert data["ok"] is False and isinstance(data["durationMs"], int)
    checks = {c["id"]: c for c in data["checks"]}
    assert checks["bucket-name"]["status"] == "failed" and checks["bucket-name"]["message"]
    assert checks["region"]["status"] == "failed" and "us-east-1" in checks["region"]["message"]
    assert checks["role-arn"]["status"] == "passed"
    # Live checks are not attempted while static ones fail.
    assert checks["assume-role"]["status"] == "skipped"
    assert http.get(BASE).json()["total"] == 0  # validate saves nothing


def test_create_refuses_static_failures_even_with_skip_validation(http: httpx.Client) -> None:
    answer = http.post(BASE, json=spec("bad", bucket="xn--bad"))
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "validation_failed"
    failed = [c["id"] for c in body["details"]["report"]["checks"] if c["status"] == "failed"]
    assert failed == ["bucket-name"]


def test_create_without_identity_fails_live_validation_with_report(http: httpx.Client) -> None:
    body = spec("live")
    body.pop("skipValidation")
    answer = http.post(BASE, json=body)
    assert answer.status_code == 422
    checks = {c["id"]: c for c in answer.json()["details"]["report"]["checks"]}
    assert checks["assume-role"]["status"] == "failed" and checks["assume-role"]["remedy"]


def test_patch_of_enum_fields_keeps_them_enums(http: httpx.Client) -> None:
    created = http.post(BASE, json=spec("enums")).json()
    answer = http.patch(
        f"{BASE}/{created['id']}", json={"agentAccess": "direct", "provider": "aws", "skipValidation": True}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["agentAccess"] == "direct" and answer.json()["provider"] == "aws"
    assert http.get(f"{BASE}/{created['id']}").json()["agentAccess"] == "direct"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "renamed-location"),
        ("provider", "s3-compatible"),
        ("bucket", "another-bucket-1"),
        ("region", "eu-central-1"),
        ("s3Url", "https://s3.example.com"),
        ("forcePathStyle", True),
        ("prefix", "team-b"),
        ("kmsKeyArn", "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("volumeSnapshots", False),
        ("isDefault", True),
        ("agentAccess", "direct"),
        ("revalidateIntervalMinutes", 45),
        ("credentials", {"type": "sts", "roleArn": "arn:aws:iam::222222222222:role/other-role"}),
    ],
)
def test_patch_of_each_field_is_applied(http: httpx.Client, field: str, value: Any) -> None:
    created = http.post(BASE, json=spec(f"patch-{field.lower()}")).json()
    # S3-compatible storage has no default endpoint, so the switch carries one.
    extra = {"s3Url": "https://s3.example.com"} if field == "provider" else {}
    answer = http.patch(f"{BASE}/{created['id']}", json={field: value, **extra, "skipValidation": True})
    assert answer.status_code == 200, answer.text
    shown = http.get(f"{BASE}/{created['id']}").json()
    if field == "credentials":
        assert shown["credentials"]["roleArn"] == value["roleArn"]
    else:
        assert shown[field] == value, shown


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"name": 5, "bucket": [], "region": null, "credentials": "x"}', "application/json"),
        (json.dumps({**spec("x"), "credentials": {"type": "kerberos"}}).encode(), "application/json"),
        (json.dumps({**spec("x"), "unknownField": 1}).encode(), "application/json"),
        (json.dumps(spec("x" * 100_000)).encode(), "application/json"),
        (json.dumps({**spec("x"), "caCert": "A" * 300_000}).encode(), "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"name=x", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_get_clear_4xx_never_500(http: httpx.Client, raw: bytes, content_type: str) -> None:
    for path in (BASE, f"{BASE}/validate"):
        answer = http.post(path, content=raw, headers={"Content-Type": content_type})
        assert 400 <= answer.status_code < 500, answer.text
        body = answer.json()
        assert body["code"] and body["message"] and "Traceback" not in answer.text


def test_body_over_one_megabyte_is_413(http: httpx.Client) -> None:
    answer = http.post(
        BASE, content=b"{" + b" " * (2 * 1024 * 1024) + b"}", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["code"] == "too_large"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
fields = st.sampled_from(
    [
        "name",
        "provider",
        "bucket",
        "region",
        "s3Url",
        "forcePathStyle",
        "caCert",
        "prefix",
        "kmsKeyArn",
        "volumeSnapshots",
        "isDefault",
        "credentials",
        "skipValidation",
        "agentAccess",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(fields, json_values, max_size=14))
def test_fuzzed_bodies_never_500(server: StowageServer, body: dict[str, Any]) -> None:
    with server.client() as client:
        for path in (BASE, f"{BASE}/validate"):
            answer = client.post(path, json=body)
            assert answer.status_code < 500, (body, answer.text)
        for item in client.get(BASE, params={"limit": 500}).json()["items"]:
            client.delete(f"{BASE}/{item['id']}")
