"""Validation under 10 % injected faults: the verdict of every run equals the verdict without faults.

The control plane's STS, S3 and EC2 calls all go through the fault proxy (``AWS_ENDPOINT_URL``), which answers
10 % of them with ``500 InternalError``, throttling (``503 SlowDown``/``RequestLimitExceeded``, STS ``400
Throttling``), a connection reset (mid-request, or after the endpoint acted) or a delay. A transient fault must
be retried by the probe clients (``DEFAULT_CONFIG`` in ``stowage.aws.clients``), never reported as a missing
permission: a good role passes every run, a role without ``s3:GetObject`` fails exactly that check every run.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stowage.aws.broker import CredentialBroker
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain.checks import CheckStatus, ValidationReport
from stowage.domain.locations import LocationSpec, Provider, StsCredentials
from stowage.services.validation import LocationValidator
from tests.support.aws_accounts import AwsAccounts
from tests.support.faults import FaultProxy

EXTERNAL_ID = "prj-ext-" + "f4Ul" * 10
BUCKET = "fault-backups"
REGION = "eu-west-1"
PREFIX = "team-f"
RUNS = 20


def _validator() -> LocationValidator:
    # What is tested is the verdict under faults, not the time limit: a loaded CI machine (two test workers on
    # two cores) must not turn retries into "Validation timed out".
    settings = Settings(validation_timeout_seconds=120)
    return LocationValidator(
        settings=settings,
        broker=CredentialBroker(settings),
        identity=IdentityResolver(),
        clock=lambda: datetime.now(UTC),
    )


def _spec(role_arn: str) -> LocationSpec:
    return LocationSpec(
        name="primary",
        provider=Provider.AWS,
        bucket=BUCKET,
        region=REGION,
        prefix=PREFIX,
        credentials=StsCredentials(role_arn),
    )


def _verdict(report: ValidationReport) -> dict[str, CheckStatus]:
    return {c.id: c.status for c in report.checks}


@pytest.mark.parametrize("missing", [None, "s3:GetObject"], ids=["good-role", "without-GetObject"])
def test_validation_verdicts_are_unchanged_under_ten_percent_faults(
    aws: AwsAccounts, monkeypatch: pytest.MonkeyPatch, missing: str | None
) -> None:
    aws.create_bucket(BUCKET, REGION)
    role = aws.create_role(
        "stowage", bucket=BUCKET, external_id=EXTERNAL_ID, prefix=PREFIX, remove=[missing] if missing else []
    )
    baseline = _verdict(_validator().validate(_spec(role), project_name="acme", external_id=EXTERNAL_ID))
    failed = sorted(k for k, v in baseline.items() if v is CheckStatus.FAILED)
    assert failed == ([missing] if missing else []), baseline

    with FaultProxy(aws.endpoint, rate=0.10, seed=101 if missing else 7) as proxy:
        # Every AWS call of the control plane (STS, S3, EC2) now crosses the proxy.
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        validator = _validator()
        differences: list[str] = []
        for run in range(RUNS):
            report = validator.validate(_spec(role), project_name="acme", external_id=EXTERNAL_ID)
            verdict = _verdict(report)
            if verdict != baseline:
                changed = {
                    c.id: f"{c.status.value}: {c.message}" for c in report.checks if c.status is not baseline[c.id]
                }
                differences.append(f"run {run}: {changed}")
        stats = proxy.snapshot()
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    leftovers = aws.object_keys(BUCKET)
    print(
        f"\nvalidation x{RUNS} ({'good role' if missing is None else 'without ' + missing}) at 10 % faults: "
        f"{stats.summary()}; verdicts changed {len(differences)}; probe objects left {len(leftovers)}"
    )
    assert stats.injected >= RUNS  # about 30 calls a run: the faults really happened
    assert not differences, "\n".join(differences)
    assert not stats.unrecovered_calls
    assert leftovers == []


def test_a_fault_that_outlasts_the_retries_is_not_reported_as_a_missing_permission(
    aws: AwsAccounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every S3 and EC2 answer a 500 or a throttle: the checks fail as untested, never with a statement to add."""
    aws.create_bucket(BUCKET, REGION)
    role = aws.create_role("stowage", bucket=BUCKET, external_id=EXTERNAL_ID, prefix=PREFIX)
    with FaultProxy(aws.endpoint, rate=1.0, kinds=("500", "503"), services=("s3", "ec2")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        report = _validator().validate(_spec(role), project_name="acme", external_id=EXTERNAL_ID)
        stats = proxy.snapshot()
    print(f"\nvalidation with every S3/EC2 call faulted: {stats.summary()}")
    checks = {c.id: c for c in report.checks}
    assert checks["assume-role"].status is CheckStatus.PASSED
    probed = [c for c in report.checks if c.action.startswith(("s3:", "ec2:"))]
    assert probed and all(c.status is not CheckStatus.PASSED for c in probed)
    for check in probed:
        assert "Denied" not in check.message and "statement" not in check.remedy, check
        if check.status is CheckStatus.FAILED:
            assert "not a permission answer" in check.message, check
            assert "on all 5 attempts" in check.message, check
    # Five attempts of each call (DEFAULT_CONFIG), nothing forwarded to the endpoint.
    assert stats.retries >= 4 * len(probed) and stats.answered == stats.by_service["sts"]
