"""Probe clients: leased from a pool with per-lease credentials, and usable before the credentials exist."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

from stowage import errors
from stowage.aws.broker import CredentialBroker
from stowage.aws.clients import TemporaryCredentials
from stowage.aws.probes import ClientPool, call, run_probes
from stowage.config import Settings
from stowage.domain.checks import CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StsCredentials
from tests.support.aws_accounts import AwsAccounts
from tests.support.ministack import TlsMaterial

EXTERNAL_ID = "pool-" + "p" * 40
BUCKET = "pool-bucket"
REGION = "eu-west-1"


def spec(role: str, **overrides: object) -> LocationSpec:
    fields: dict[str, object] = {
        "name": "pool",
        "provider": Provider.AWS,
        "bucket": BUCKET,
        "region": REGION,
        "volume_snapshots": False,
        "credentials": StsCredentials(role),
    }
    fields.update(overrides)
    return LocationSpec(**fields)  # type: ignore[arg-type]


def assume(role: str) -> TemporaryCredentials:
    return CredentialBroker(Settings()).assume_once(
        role_arn=role, external_id=EXTERNAL_ID, session_name="stowage-pool", region=REGION
    )


@pytest.fixture
def roles(aws: AwsAccounts) -> tuple[str, str]:
    aws.create_bucket(BUCKET, REGION)
    full = aws.create_role("full", bucket=BUCKET, external_id=EXTERNAL_ID, include_ec2=False)
    no_put = aws.create_role(
        "no-put", bucket=BUCKET, external_id=EXTERNAL_ID, include_ec2=False, remove=["s3:PutObject"]
    )
    return full, no_put


def test_leases_reuse_clients_with_each_leases_credentials(roles: tuple[str, str]) -> None:
    full, no_put = roles
    pool = ClientPool(timeout=10)
    with pool.lease(spec(full), assume(full)) as first:
        s3_first = first.client("s3")
        checks = {c.id: c for c in run_probes(assume(full), spec(full), client_factory=first.client)}
        assert checks["s3:PutObject"].status is CheckStatus.PASSED
    with pool.lease(spec(no_put), assume(no_put)) as second:
        assert second.client("s3") is s3_first  # the same warm client ...
        checks = {c.id: c for c in run_probes(assume(no_put), spec(no_put), client_factory=second.client)}
        assert checks["s3:PutObject"].status is CheckStatus.FAILED  # ... signing as the new holder
    with pytest.raises(errors.CloudCredentialsMissing):
        s3_first.list_objects_v2(Bucket=BUCKET)  # outside any lease it has no credentials at all


def test_concurrent_leases_get_separate_clients(roles: tuple[str, str]) -> None:
    full, _ = roles
    pool = ClientPool(timeout=10)
    with pool.lease(spec(full), assume(full)) as one, pool.lease(spec(full), assume(full)) as two:
        assert one.client("s3") is not two.client("s3")


def test_custom_ca_and_changed_endpoints_are_not_pooled(
    roles: tuple[str, str], tls_material: TlsMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, _ = roles
    pool = ClientPool(timeout=10)
    with pool.lease(spec(full), assume(full)) as plain:
        before = plain.client("s3")
    with pool.lease(spec(full, ca_cert=tls_material.ca_pem), assume(full)) as with_ca:
        assert with_ca.client("s3") is not before
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    with pool.lease(spec(full), assume(full)) as moved:
        assert moved.client("s3") is not before


def test_clients_built_before_the_credentials_exist(roles: tuple[str, str]) -> None:
    full, _ = roles
    pending: Future[TemporaryCredentials] = Future()
    with ClientPool(timeout=10).lease(spec(full), pending.result) as leased:
        s3 = leased.client("s3")  # no credentials yet: building needs none
        answers: list[object] = []
        caller = threading.Thread(target=lambda: answers.append(call(s3.head_bucket, Bucket=BUCKET)))
        caller.start()
        time.sleep(0.2)
        assert not answers  # signing waits for the credentials
        pending.set_result(assume(full))
        caller.join(10)
    assert answers and answers[0].ok  # type: ignore[attr-defined]
