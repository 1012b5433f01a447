"""The validation time bound: endpoints that accept connections and never answer must not hang a request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from stowage.aws.broker import CredentialBroker
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain.checks import LIVE_CHECK_IDS, S3_ACTIONS, CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials, StsCredentials
from stowage.services.validation import LocationValidator

LIMIT = 2.0


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stopping.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def validator() -> LocationValidator:
    settings = Settings(validation_timeout_seconds=LIMIT)
    return LocationValidator(settings=settings, broker=CredentialBroker(settings), identity=IdentityResolver())


def test_sts_blackhole_times_out_within_the_bound(blackhole: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", blackhole)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "111111111111")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spec = LocationSpec(
        name="slow",
        provider=Provider.AWS,
        bucket="some-bucket",
        region="eu-west-1",
        credentials=StsCredentials("arn:aws:iam::222222222222:role/stowage"),
    )
    started = time.monotonic()
    report = validator().validate(spec, project_name="acme", external_id="e" * 40)
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT + 1.0, elapsed
    assert not report.ok
    live = [c for c in report.checks if c.id in LIVE_CHECK_IDS]
    assert all(c.status is CheckStatus.FAILED for c in live), report.to_dict()
    assert all(f"timed out after {LIMIT:g} s" in c.message for c in live)
    assert report.duration_ms < (LIMIT + 1.0) * 1000


def test_s3_blackhole_times_out_within_the_bound(blackhole: str) -> None:
    spec = LocationSpec(
        name="slow",
        provider=Provider.S3_COMPATIBLE,
        bucket="some-bucket",
        region="us-east-1",
        s3_url=blackhole,
        force_path_style=True,
        credentials=StaticCredentials("storage-user", "storage-secret"),
    )
    started = time.monotonic()
    report = validator().validate(spec, project_name="acme", external_id="unused")
    assert time.monotonic() - started < LIMIT + 1.0
    checks = {c.id: c for c in report.checks}
    assert checks["assume-role"].status is CheckStatus.SKIPPED
    for action in S3_ACTIONS:
        assert checks[action].status is CheckStatus.FAILED
        assert "timed out" in checks[action].message


class _BrokenBroker(CredentialBroker):
    """A broker with a bug: the validator must report it as failed checks, never raise."""

    def assume_once(self, **_: object) -> object:  # type: ignore[override]
        raise RuntimeError("boom")

    def try_assume_without_external_id(self, role_arn: str, session_name: str, region: str) -> bool:
        return False


def test_a_bug_becomes_failed_checks_not_an_exception() -> None:
    settings = Settings(validation_timeout_seconds=LIMIT)
    validator = LocationValidator(settings=settings, broker=_BrokenBroker(settings), identity=IdentityResolver())
    spec = LocationSpec(
        name="buggy",
        provider=Provider.AWS,
        bucket="some-bucket",
        region="eu-west-1",
        credentials=StsCredentials("arn:aws:iam::222222222222:role/stowage"),
    )
    report = validator.validate(spec, project_name="acme", external_id="e" * 40)
    live = [c for c in report.checks if c.id in LIVE_CHECK_IDS]
    assert not report.ok
    assert all(c.status is CheckStatus.FAILED and "stopped unexpectedly (RuntimeError)" in c.message for c in live)
