"""The fault proxy itself: each injected fault reaches botocore as the real endpoint's would, and is retried.

With ``rate=1.0`` and one attempt every call sees exactly one fault, so the error botocore raises is the one
its parser read from the injected answer (S3 REST-XML, EC2 query, STS query); with botocore's standard retries
and a lower rate the same calls succeed, and the proxy's figures add up.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.support.aws_accounts import CUSTOMER, SECRET, AwsAccounts
from tests.support.faults import FaultProxy

REGION = "eu-west-1"
# botocore's "max_attempts" counts retries; "total_max_attempts" counts the first try too.
ONE_TRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=False)


def _client(service: str, endpoint: str, config: Config = ONE_TRY) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CUSTOMER,
        aws_secret_access_key=SECRET,
        config=config,
    )


@pytest.mark.parametrize(
    ("kind", "service", "code", "status"),
    [
        ("500", "s3", "InternalError", 500),
        ("503", "s3", "SlowDown", 503),
        ("500", "ec2", "InternalError", 500),
        ("503", "ec2", "RequestLimitExceeded", 503),
        ("500", "sts", "InternalFailure", 500),
        ("503", "sts", "Throttling", 400),
    ],
)
def test_injected_answers_parse_as_the_services_own(
    aws: AwsAccounts, kind: str, service: str, code: str, status: int
) -> None:
    bucket = aws.create_bucket("faulty", REGION)
    with FaultProxy(aws.endpoint, rate=1.0, kinds=(kind,)) as proxy:
        client = _client(service, proxy.url)
        call = {
            "s3": lambda: client.put_object(Bucket=bucket, Key="k", Body=b"x" * 100),
            "ec2": lambda: client.describe_volumes(),
            "sts": lambda: client.get_caller_identity(),
        }[service]
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        if service == "s3":
            # A HEAD error has no body: botocore names it by its status.
            with pytest.raises(ClientError) as head:
                client.head_object(Bucket=bucket, Key="k")
            assert head.value.response["Error"]["Code"] == str(status)
        assert proxy.snapshot().faults[kind] >= 1


@pytest.mark.parametrize("kind", ["reset", "reset_after"])
def test_resets_reach_botocore_as_connection_errors(aws: AwsAccounts, kind: str) -> None:
    bucket = aws.create_bucket("faulty", REGION)
    with FaultProxy(aws.endpoint, rate=1.0, kinds=(kind,)) as proxy:
        s3 = _client("s3", proxy.url)
        for call in (
            lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 10_000),  # reset mid-body
            lambda: s3.list_objects_v2(Bucket=bucket),  # reset before the answer
        ):
            with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
                call()
    assert proxy.snapshot().faults[kind] == 2
    if kind == "reset_after":
        # The endpoint acted on the request before the client lost the answer.
        assert aws.object_keys(bucket) == ["k"]
    else:
        assert aws.object_keys(bucket) == []


def test_calls_succeed_through_faults_with_standard_retries(aws: AwsAccounts) -> None:
    bucket = aws.create_bucket("faulty", REGION)
    retrying = Config(retries={"total_max_attempts": 8, "mode": "standard"}, parameter_validation=False)
    with FaultProxy(aws.endpoint, rate=0.3, seed=3, delay_seconds=(0.01, 0.05)) as proxy:
        s3 = _client("s3", proxy.url, retrying)
        for i in range(60):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=f"v{i}".encode())
            assert s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == f"v{i}".encode()
    faulted = ("500", "503", "reset", "reset_after")
    stats = proxy.snapshot()
    deadline = time.monotonic() + 5
    # The proxy counts an answer after it has sent it: on a loaded machine the client can be done a moment
    # before the proxy's thread has counted the last one.
    while stats.requests != stats.answered + sum(stats.faults[k] for k in faulted) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = proxy.snapshot()
    print(f"\nfault proxy at 30 %: {stats.summary()}")
    assert stats.requests == stats.answered + sum(stats.faults[k] for k in faulted)
    assert stats.retries >= stats.injected - stats.faults["delay"] > 0
    assert not stats.unrecovered_calls
    assert sorted(aws.object_keys(bucket)) == sorted(f"k{i}" for i in range(60))
