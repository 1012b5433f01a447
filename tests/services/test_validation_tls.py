"""Custom CA: an S3-compatible endpoint over HTTPS with a certificate from a CA the test made.

The endpoint is ministack itself served with TLS (see ``tests/support/ministack.py`` for how); the
credentials are an IAM user's keys with Stowage's policy, so access is checked (``AUTH=true``) as well.
"""

from __future__ import annotations

import pytest

from stowage.aws.broker import CredentialBroker
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain.checks import EC2_ACTIONS, S3_ACTIONS, CheckStatus, ValidationReport
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials
from stowage.services.validation import LocationValidator
from tests.support.aws_accounts import AwsAccounts
from tests.support.ministack import Ministack, TlsMaterial

BUCKET = "tls-backups"
REGION = "eu-west-1"


@pytest.fixture
def keys(aws_tls: AwsAccounts, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    # Only the CA given in the spec may make this endpoint trusted: no bundle from the environment.
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    aws_tls.create_bucket(BUCKET, REGION)
    return aws_tls.create_user_keys("storage-user", bucket=BUCKET, include_ec2=False)


def validate(ministack_tls: Ministack, keys: tuple[str, str], ca_cert: str | None) -> ValidationReport:
    settings = Settings(validation_timeout_seconds=20)
    validator = LocationValidator(settings=settings, broker=CredentialBroker(settings), identity=IdentityResolver())
    spec = LocationSpec(
        name="on-prem",
        provider=Provider.S3_COMPATIBLE,
        bucket=BUCKET,
        region=REGION,
        s3_url=ministack_tls.url,
        force_path_style=True,
        ca_cert=ca_cert,
        credentials=StaticCredentials(*keys),
    )
    return validator.validate(spec, project_name="acme", external_id="unused-for-static-keys")


def test_custom_ca_makes_the_endpoint_trusted(
    ministack_tls: Ministack, keys: tuple[str, str], tls_material: TlsMaterial, aws_tls: AwsAccounts
) -> None:
    report = validate(ministack_tls, keys, tls_material.ca_pem)
    checks = {c.id: c for c in report.checks}
    assert report.ok, report.to_dict()
    assert checks["ca-cert"].status is CheckStatus.PASSED
    for action in S3_ACTIONS:
        assert checks[action].status is CheckStatus.PASSED, checks[action]
    for action in EC2_ACTIONS:
        assert checks[action].status is CheckStatus.SKIPPED and "S3-compatible" in checks[action].message
    assert aws_tls.object_keys(BUCKET) == []


def test_without_the_ca_tls_fails_clearly(ministack_tls: Ministack, keys: tuple[str, str]) -> None:
    report = validate(ministack_tls, keys, None)
    checks = {c.id: c for c in report.checks}
    assert not report.ok
    for action in S3_ACTIONS:
        check = checks[action]
        assert check.status is CheckStatus.FAILED, check
        assert "TLS" in check.message and "certificate verify failed" in check.message, check.message
        assert "paste the CA certificate" in check.remedy
    assert checks["bucket-region"].status is CheckStatus.FAILED


def test_a_different_ca_is_not_trusted(
    ministack_tls: Ministack, keys: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.support.ministack import make_tls_material

    stranger = make_tls_material(tmp_path_factory.mktemp("other-ca"))
    report = validate(ministack_tls, keys, stranger.ca_pem)
    failed = {c.id for c in report.checks if c.status is CheckStatus.FAILED}
    assert set(S3_ACTIONS) <= failed
    assert "does not match the CA certificate given" in next(c for c in report.checks if c.id == "s3:PutObject").remedy
