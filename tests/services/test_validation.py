"""LocationValidator end to end against a real ministack with AUTH=true.

ministack enforces trust policies (principal and ``sts:ExternalId``), identity policies for S3 and EC2 and
session expiry, so each negative case below is the real AWS answer to a real misconfiguration. It ignores EC2
``DryRun`` (the call really runs), so ``ec2:CreateVolume`` creates a volume here that the role (which has no
``ec2:DeleteVolume``) cannot remove: that check is then a *warning* naming the leftover; the DryRun path
proper is tested against moto in ``tests/aws/test_probes_moto.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stowage.aws.broker import CredentialBroker
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain.checks import EC2_ACTIONS, LIVE_CHECK_IDS, S3_ACTIONS, STATIC_CHECK_IDS, CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials, StsCredentials
from stowage.services.validation import LocationValidator
from tests.support.aws_accounts import CLUSTER, CUSTOMER, PLATFORM, AwsAccounts

EXTERNAL_ID = "prj-ext-" + "a1B2" * 10
BUCKET = "acme-backups"
REGION = "eu-west-1"
PREFIX = "team-a"
ALL_ACTIONS = (*S3_ACTIONS, *EC2_ACTIONS)


def make_validator(**overrides: object) -> LocationValidator:
    settings = Settings(**overrides)  # type: ignore[arg-type]
    return LocationValidator(
        settings=settings,
        broker=CredentialBroker(settings),
        identity=IdentityResolver(),
        clock=lambda: datetime.now(UTC),
    )


def sts_spec(role_arn: str, **overrides: object) -> LocationSpec:
    fields: dict[str, object] = {
        "name": "primary",
        "provider": Provider.AWS,
        "bucket": BUCKET,
        "region": REGION,
        "prefix": PREFIX,
        "credentials": StsCredentials(role_arn),
    }
    fields.update(overrides)
    return LocationSpec(**fields)  # type: ignore[arg-type]


def by_id(report: object) -> dict[str, object]:
    return {c.id: c for c in report.checks}  # type: ignore[attr-defined]


def failed_ids(report: object) -> list[str]:
    return [c.id for c in report.checks if c.status is CheckStatus.FAILED]  # type: ignore[attr-defined]


def assert_no_leftovers(aws: AwsAccounts) -> None:
    assert aws.object_keys(BUCKET) == []
    assert aws.multipart_uploads(BUCKET) == []


@pytest.fixture
def bucket(aws: AwsAccounts) -> str:
    return aws.create_bucket(BUCKET, REGION)


def test_happy_path(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, prefix=PREFIX)
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    checks = by_id(report)
    assert report.ok, report.to_dict()
    # Static ids first, then the live ones in the contract's order.
    ids = [c.id for c in report.checks]
    assert ids[: len(STATIC_CHECK_IDS)] == list(STATIC_CHECK_IDS)
    assert ids[len(STATIC_CHECK_IDS) :] == list(LIVE_CHECK_IDS)
    for check_id in ("assume-role", "external-id-required", "bucket-region", *S3_ACTIONS):
        assert checks[check_id].status is CheckStatus.PASSED, checks[check_id]  # type: ignore[attr-defined]
    for action in EC2_ACTIONS:
        status = checks[action].status  # type: ignore[attr-defined]
        if action == "ec2:CreateVolume" and status is CheckStatus.WARNING:
            # ministack ignores DryRun: the leftover volume is named, the permission still counts as allowed.
            assert "ignored DryRun" in checks[action].message  # type: ignore[attr-defined]
            continue
        assert status is CheckStatus.PASSED, checks[action]
    assert checks["kms"].status is CheckStatus.SKIPPED  # type: ignore[attr-defined]
    assert "stowage-acme-primary" in checks["assume-role"].message  # type: ignore[attr-defined]
    assert report.duration_ms > 0
    assert_no_leftovers(aws)


def test_report_shape_matches_contract(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, prefix=PREFIX)
    data = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID).to_dict()
    assert set(data) == {"ok", "durationMs", "checks"}
    assert all(set(c) == {"id", "action", "status", "message", "remedy"} for c in data["checks"])  # type: ignore[attr-defined]
    json.dumps(data)


@pytest.mark.parametrize("missing", ALL_ACTIONS)
def test_each_missing_action_fails_exactly_its_check(aws: AwsAccounts, bucket: str, missing: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, prefix=PREFIX, remove=[missing])
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    assert failed_ids(report) == [missing], report.to_dict()
    check = by_id(report)[missing]
    assert check.action == missing  # type: ignore[attr-defined]
    assert "Denied" in check.message and ("AccessDenied" in check.message or "UnauthorizedOperation" in check.message)  # type: ignore[attr-defined]
    # The remedy is the exact statement, bucket ARN filled in.
    statement = json.loads(check.remedy.split(":\n", 1)[1])  # type: ignore[attr-defined]
    assert statement["Action"] == [missing]
    if missing.startswith("s3:"):
        expected = f"arn:aws:s3:::{BUCKET}" if missing == "s3:ListBucket" else f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"
        assert statement["Resource"] == [expected]
    else:
        assert statement["Resource"] == "*"
    if missing == "s3:DeleteObject":
        # The probe object could not be removed by the role: the report names it.
        assert "left behind" in check.message  # type: ignore[attr-defined]
        leftovers = aws.object_keys(BUCKET)
        assert len(leftovers) == 1 and leftovers[0] in check.message  # type: ignore[attr-defined]
    else:
        assert_no_leftovers(aws)


def test_trust_without_external_id_is_the_confused_deputy_hole(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=None, prefix=PREFIX)
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    checks = by_id(report)
    assert failed_ids(report) == ["external-id-required"], report.to_dict()
    assert checks["assume-role"].status is CheckStatus.PASSED  # type: ignore[attr-defined]
    hole = checks["external-id-required"]
    assert "WITHOUT the External ID" in hole.message  # type: ignore[attr-defined]
    condition = json.loads(hole.remedy.split(":\n", 1)[1])  # type: ignore[attr-defined]
    assert condition == {"Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}
    assert not report.ok


def check_assume_denied(report: object) -> None:
    checks = by_id(report)
    assert failed_ids(report) == ["assume-role"], report.to_dict()  # type: ignore[attr-defined]
    failure = checks["assume-role"]
    for cause in ("(1) the role ARN is wrong", "(2) the role's trust policy", "(3) the trust policy's sts:ExternalId"):
        assert cause in failure.message  # type: ignore[attr-defined]
    trust = json.loads(failure.remedy.split(":\n", 1)[1])  # type: ignore[attr-defined]
    statement = trust["Statement"][0]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{PLATFORM}:root"}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
    for check_id in LIVE_CHECK_IDS[1:]:
        assert checks[check_id].status is CheckStatus.SKIPPED  # type: ignore[attr-defined]


def test_role_trusting_another_account(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, trusted_account=CLUSTER)
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    check_assume_denied(report)


def test_wrong_external_id(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id="someone-elses-id")
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    check_assume_denied(report)


def test_missing_role(aws: AwsAccounts, bucket: str) -> None:
    role = f"arn:aws:iam::{CUSTOMER}:role/never-created"
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    check_assume_denied(report)


def test_no_control_plane_identity_says_so_at_once(
    aws: AwsAccounts, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    checks = by_id(report)
    assert failed_ids(report) == ["assume-role"], report.to_dict()
    assert "no usable AWS credentials" in checks["assume-role"].message  # type: ignore[attr-defined]
    # Both role checks answer from the same missing identity: nothing waits for (or blames) a timeout.
    external = checks["external-id-required"]
    assert external.status is CheckStatus.SKIPPED, external  # type: ignore[attr-defined]
    assert "timed out" not in json.dumps(report.to_dict())
    assert report.duration_ms < 5000


def test_role_scoped_to_another_bucket(aws: AwsAccounts, bucket: str) -> None:
    aws.create_bucket("other-bucket", REGION)
    role = aws.create_role("stowage", bucket="other-bucket", external_id=EXTERNAL_ID, prefix=PREFIX)
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    assert failed_ids(report) == list(S3_ACTIONS), report.to_dict()
    checks = by_id(report)
    assert checks["bucket-region"].status is CheckStatus.PASSED  # type: ignore[attr-defined]
    assert f"arn:aws:s3:::{BUCKET}" in checks["s3:ListBucket"].remedy  # type: ignore[attr-defined]
    assert_no_leftovers(aws)


def test_wrong_region_names_the_real_one(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, prefix=PREFIX)
    report = make_validator().validate(sts_spec(role, region="us-west-2"), project_name="acme", external_id=EXTERNAL_ID)
    assert failed_ids(report) == ["bucket-region"], report.to_dict()
    message = by_id(report)["bucket-region"].message  # type: ignore[attr-defined]
    assert "eu-west-1" in message and "us-west-2" in message
    assert by_id(report)["bucket-region"].remedy == 'Set the region to "eu-west-1", where the bucket is.'  # type: ignore[attr-defined]


def test_missing_bucket(aws: AwsAccounts) -> None:
    aws.create_bucket("some-other-bucket", REGION)
    role = aws.create_role("stowage", bucket=BUCKET, external_id=EXTERNAL_ID, prefix=PREFIX)
    report = make_validator().validate(sts_spec(role), project_name="acme", external_id=EXTERNAL_ID)
    assert failed_ids(report) == ["bucket-region"], report.to_dict()
    checks = by_id(report)
    assert "does not exist" in checks["bucket-region"].message  # type: ignore[attr-defined]
    for action in S3_ACTIONS:
        assert checks[action].status is CheckStatus.SKIPPED, checks[action]  # type: ignore[attr-defined]


def test_static_keys_skip_the_role_checks(aws: AwsAccounts, bucket: str) -> None:
    key, secret = aws.create_user_keys("backup-user", bucket=bucket, prefix=PREFIX)
    spec = sts_spec("", credentials=StaticCredentials(key, secret), s3_url=None)
    report = make_validator().validate(spec, project_name="acme", external_id=EXTERNAL_ID)
    checks = by_id(report)
    assert report.ok, report.to_dict()
    assert checks["assume-role"].status is CheckStatus.SKIPPED  # type: ignore[attr-defined]
    assert checks["external-id-required"].status is CheckStatus.SKIPPED  # type: ignore[attr-defined]
    for action in S3_ACTIONS:
        assert checks[action].status is CheckStatus.PASSED  # type: ignore[attr-defined]
    assert secret not in json.dumps(report.to_dict())
    assert_no_leftovers(aws)


def test_static_keys_missing_action_mentions_the_identity_policy(aws: AwsAccounts, bucket: str) -> None:
    key, secret = aws.create_user_keys("backup-user", bucket=bucket, prefix=PREFIX, remove=["s3:GetObject"])
    spec = sts_spec("", credentials=StaticCredentials(key, secret))
    report = make_validator().validate(spec, project_name="acme", external_id=EXTERNAL_ID)
    assert failed_ids(report) == ["s3:GetObject"]
    assert "the identity these keys belong to" in by_id(report)["s3:GetObject"].remedy  # type: ignore[attr-defined]


def test_volume_snapshots_off_skips_ec2(aws: AwsAccounts, bucket: str) -> None:
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, prefix=PREFIX, include_ec2=False)
    report = make_validator().validate(
        sts_spec(role, volume_snapshots=False), project_name="acme", external_id=EXTERNAL_ID
    )
    assert report.ok, report.to_dict()
    for action in EC2_ACTIONS:
        check = by_id(report)[action]
        assert check.status is CheckStatus.SKIPPED and "Volume snapshots are off" in check.message  # type: ignore[attr-defined]


def test_kms_key_given_and_allowed(aws: AwsAccounts, bucket: str) -> None:
    """With a KMS key the probe is written SSE-KMS; ministack's S3 never consults KMS, so this is the happy path
    only (denials are injected at the aws boundary in ``tests/aws/test_probes_kms.py``)."""
    key = "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    role = aws.create_role("stowage", bucket=bucket, external_id=EXTERNAL_ID, prefix=PREFIX, kms_key_arn=key)
    report = make_validator().validate(sts_spec(role, kms_key_arn=key), project_name="acme", external_id=EXTERNAL_ID)
    kms = by_id(report)["kms"]
    assert kms.status is CheckStatus.PASSED and key in kms.message, kms  # type: ignore[attr-defined]
    assert_no_leftovers(aws)


def test_static_failure_skips_live_checks(aws: AwsAccounts) -> None:
    validator = make_validator()
    report = validator.validate(
        sts_spec(f"arn:aws:iam::{CUSTOMER}:role/x", bucket="Not_A_Bucket"), project_name="acme", external_id=EXTERNAL_ID
    )
    assert failed_ids(report) == ["bucket-name"]
    for check_id in LIVE_CHECK_IDS:
        check = by_id(report)[check_id]
        assert check.status is CheckStatus.SKIPPED and "fix the errors above first" in check.message  # type: ignore[attr-defined]
    assert validator._broker.sts_calls == 0


def test_live_false_skips_live_checks(aws: AwsAccounts, bucket: str) -> None:
    validator = make_validator()
    report = validator.validate(
        sts_spec(f"arn:aws:iam::{CUSTOMER}:role/x"), project_name="acme", external_id=EXTERNAL_ID, live=False
    )
    assert report.ok
    for check_id in LIVE_CHECK_IDS:
        check = by_id(report)[check_id]
        assert check.status is CheckStatus.SKIPPED and check.message == "Live validation skipped."  # type: ignore[attr-defined]
    assert validator._broker.sts_calls == 0
