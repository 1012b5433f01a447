"""The STS broker against a real ministack with AUTH=true (trust policies, External ID and expiry enforced)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from stowage import errors
from stowage.aws.broker import CredentialBroker, TokenBucket
from stowage.aws.clients import TemporaryCredentials
from stowage.config import Settings
from tests.support.aws_accounts import CUSTOMER, AwsAccounts

EXTERNAL_ID = "ext-" + "x" * 40
REGION = "eu-west-1"


def settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def s3_as(aws: AwsAccounts, creds: TemporaryCredentials) -> object:
    return aws.client(
        "s3",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token or "",
    )


@pytest.fixture
def role(aws: AwsAccounts) -> str:
    aws.create_bucket("broker-bucket")
    return aws.create_role("stowage-backups", bucket="broker-bucket", external_id=EXTERNAL_ID)


def ask(broker: CredentialBroker, role_arn: str, **kwargs: object) -> TemporaryCredentials:
    params: dict[str, object] = {
        "role_arn": role_arn,
        "external_id": EXTERNAL_ID,
        "session_name": "stowage-test-loc",
        "region": REGION,
    }
    params.update(kwargs)
    return broker.credentials(**params)  # type: ignore[arg-type]


def test_assumes_with_external_id_and_caches(role: str, aws: AwsAccounts) -> None:
    broker = CredentialBroker(settings())
    first = ask(broker, role)
    second = ask(broker, role)
    assert first == second
    assert broker.sts_calls == 1
    assert first.session_token and first.expiration_epoch and first.expiration_epoch > time.time() + 800
    assert "secret" not in repr(first).lower() and first.secret_access_key not in repr(first)
    s3_as(aws, first).put_object(Bucket="broker-bucket", Key="hello", Body=b"hi")  # type: ignore[attr-defined]


def test_wrong_external_id_is_access_denied_and_not_cached(role: str) -> None:
    broker = CredentialBroker(settings())
    for _ in range(2):
        with pytest.raises(errors.CloudAccessDenied) as caught:
            ask(broker, role, external_id="not-the-one")
        assert caught.value.aws_code == "AccessDenied"
        assert "sts:AssumeRole" in caught.value.message
    assert broker.sts_calls == 2  # a failure is never cached


def test_concurrent_callers_share_one_sts_call(role: str) -> None:
    broker = CredentialBroker(settings())
    barrier = threading.Barrier(16)
    results: list[TemporaryCredentials] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        creds = ask(broker, role)
        with lock:
            results.append(creds)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 16
    assert len({c.access_key_id for c in results}) == 1
    assert broker.sts_calls == 1


def test_concurrent_callers_all_get_the_same_error(aws: AwsAccounts) -> None:
    broker = CredentialBroker(settings())
    missing = f"arn:aws:iam::{CUSTOMER}:role/does-not-exist"
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            ask(broker, missing)
        except errors.CloudError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(failures) == 8 and all(isinstance(f, errors.CloudAccessDenied) for f in failures)
    assert broker.sts_calls < 8  # waiters shared the leader's call


def test_cache_keys_include_external_id_and_session_policy(role: str, aws: AwsAccounts) -> None:
    broker = CredentialBroker(settings())
    plain = ask(broker, role)
    narrowed_policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::broker-bucket/cluster-a/*"}
            ],
        }
    )
    narrowed = ask(broker, role, session_policy=narrowed_policy)
    assert narrowed.access_key_id != plain.access_key_id
    assert ask(broker, role, session_policy=narrowed_policy) == narrowed
    assert broker.sts_calls == 2
    s3 = s3_as(aws, narrowed)
    s3.put_object(Bucket="broker-bucket", Key="cluster-a/ok", Body=b"x")  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket="broker-bucket", Key="cluster-b/no", Body=b"x")  # type: ignore[attr-defined]
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


def test_expired_credentials_are_refreshed(role: str, aws: AwsAccounts) -> None:
    # 4 s sessions (emulators accept less than AWS's 900 s); refresh window = half a session = 2 s.
    broker = CredentialBroker(settings(sts_duration_seconds=4, allow_short_sessions=True))
    first = ask(broker, role)
    assert first.expiration_epoch is not None and first.expiration_epoch - time.time() <= 5
    assert ask(broker, role) == first  # still fresh
    time.sleep(max(0.0, first.expiration_epoch - time.time()) + 1.0)
    with pytest.raises(ClientError) as caught:
        s3_as(aws, first).list_objects_v2(Bucket="broker-bucket")  # type: ignore[attr-defined]
    assert caught.value.response["Error"]["Code"] == "ExpiredToken"
    second = ask(broker, role)
    assert second.access_key_id != first.access_key_id
    assert broker.sts_calls == 2
    s3_as(aws, second).list_objects_v2(Bucket="broker-bucket")  # type: ignore[attr-defined]


def test_refreshes_inside_the_window_before_expiry(role: str) -> None:
    now = [time.time()]
    broker = CredentialBroker(settings(sts_duration_seconds=900), clock=lambda: now[0])
    first = ask(broker, role)
    assert first.expiration_epoch is not None
    now[0] = first.expiration_epoch - 901  # outside the 450 s window (half of a 900 s session)
    assert ask(broker, role) == first
    now[0] = first.expiration_epoch - 60  # inside it: refreshed although still valid
    assert ask(broker, role) != first
    assert broker.sts_calls == 2


def test_try_assume_without_external_id(aws: AwsAccounts) -> None:
    aws.create_bucket("open-bucket")
    guarded = aws.create_role("guarded", bucket="open-bucket", external_id=EXTERNAL_ID)
    open_role = aws.create_role("open", bucket="open-bucket", external_id=None)
    broker = CredentialBroker(settings())
    assert broker.try_assume_without_external_id(guarded, "s", REGION) is False
    assert broker.try_assume_without_external_id(open_role, "s", REGION) is True


def test_no_control_plane_credentials(aws: AwsAccounts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    broker = CredentialBroker(settings())
    with pytest.raises(errors.CloudCredentialsMissing):
        ask(broker, f"arn:aws:iam::{CUSTOMER}:role/any")


def test_rate_limit_spaces_sts_calls(aws: AwsAccounts) -> None:
    aws.create_bucket("rate-bucket")
    roles = [aws.create_role(f"r{i}", bucket="rate-bucket", external_id=EXTERNAL_ID) for i in range(6)]
    broker = CredentialBroker(settings(sts_calls_per_second=4.0))
    started = time.monotonic()
    for arn in roles:
        ask(broker, arn)
    # A burst of 4, then one call every 0.25 s.
    assert time.monotonic() - started >= 0.45
    assert broker.sts_calls == 6


def test_token_bucket_waits_for_refill() -> None:
    bucket = TokenBucket(rate=10, capacity=2)
    waits = [bucket.acquire() for _ in range(4)]
    assert waits[:2] == [0.0, 0.0]
    assert all(w > 0 for w in waits[2:])


def test_regional_sts_endpoint_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    broker = CredentialBroker(settings())
    endpoint = lambda region: broker._sts_client(region).meta.endpoint_url  # noqa: E731
    assert endpoint("eu-central-1") == "https://sts.eu-central-1.amazonaws.com"
    assert endpoint("cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn"
    assert endpoint("us-gov-west-1") == "https://sts.us-gov-west-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    assert endpoint("eu-central-1") == "http://127.0.0.1:9"
