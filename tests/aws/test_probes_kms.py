"""The kms check. No emulator here makes S3 consult KMS (ministack stores SSE-KMS headers and never calls KMS),
so KMS denials are injected at the aws boundary: the probes run against a real ministack, and a botocore
``before-call`` hook answers one S3 operation with the error AWS gives when the key policy or the role's
policy refuses ``kms:GenerateDataKey`` (on PutObject) or ``kms:Decrypt`` (on GetObject). Everything else,
including cleanup of the probe object, goes to the emulator for real.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from stowage.aws.broker import CredentialBroker
from stowage.aws.clients import TemporaryCredentials
from stowage.aws.probes import default_client_factory, run_probes
from stowage.config import Settings
from stowage.domain.checks import CheckResult, CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StsCredentials
from tests.support.aws_accounts import AwsAccounts

EXTERNAL_ID = "kms-" + "k" * 40
BUCKET = "kms-bucket"
REGION = "eu-west-1"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def denial(operation: str, action: str, role: str) -> dict[str, Any]:
    message = (
        f"User: {role}/stowage is not authorized to perform: {action} on resource: {KEY} because no "
        "identity-based policy allows the action"
    )
    return {"Error": {"Code": "AccessDenied", "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}}


def injecting_factory(credentials: TemporaryCredentials, spec: LocationSpec, answers: dict[str, dict[str, Any]]) -> Any:
    base = default_client_factory(credentials, spec, verify=None, timeout=10)

    def make(service: str) -> Any:
        client = base(service)
        for operation, parsed in answers.items():

            def answer(parsed: dict[str, Any] = parsed, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
                status = parsed["ResponseMetadata"]["HTTPStatusCode"]
                return AWSResponse("https://injected.invalid", status, {}, None), parsed

            if service == "s3":
                client.meta.events.register(f"before-call.s3.{operation}", answer)
        return client

    return make


@pytest.fixture
def setup(aws: AwsAccounts) -> tuple[TemporaryCredentials, str]:
    aws.create_bucket(BUCKET, REGION)
    role = aws.create_role("stowage", bucket=BUCKET, external_id=EXTERNAL_ID, kms_key_arn=KEY, include_ec2=False)
    creds = CredentialBroker(Settings()).assume_once(
        role_arn=role, external_id=EXTERNAL_ID, session_name="stowage-kms", region=REGION
    )
    return creds, role


def spec(role: str, kms_key_arn: str | None = KEY) -> LocationSpec:
    return LocationSpec(
        name="enc",
        provider=Provider.AWS,
        bucket=BUCKET,
        region=REGION,
        kms_key_arn=kms_key_arn,
        volume_snapshots=False,
        credentials=StsCredentials(role),
    )


def results(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.id: c for c in checks}


def assert_both_remedies(check: CheckResult, role: str) -> None:
    first, second = check.remedy.split("2) ", 1)
    role_statement = json.loads(first.split(":\n", 1)[1].strip())
    assert role_statement == {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": [KEY]}
    key_statement = json.loads(second.split(":\n", 1)[1])
    assert key_statement["Principal"] == {"AWS": role}
    assert key_statement["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]


def test_generate_data_key_denied_on_put(setup: tuple[TemporaryCredentials, str], aws: AwsAccounts) -> None:
    creds, role = setup
    location = spec(role)
    answers = {"PutObject": denial("PutObject", "kms:GenerateDataKey", role)}
    checks = results(
        run_probes(creds, location, principal_arn=role, client_factory=injecting_factory(creds, location, answers))
    )
    kms = checks["kms"]
    assert kms.status is CheckStatus.FAILED
    assert "kms:GenerateDataKey" in kms.message and KEY in kms.message
    assert_both_remedies(kms, role)
    # S3 itself allowed the write: s3:PutObject is not blamed, and nothing else fails.
    assert checks["s3:PutObject"].status is CheckStatus.WARNING
    assert [c.id for c in checks.values() if c.status is CheckStatus.FAILED] == ["kms"]
    assert aws.object_keys(BUCKET) == []


def test_decrypt_denied_on_get(setup: tuple[TemporaryCredentials, str], aws: AwsAccounts) -> None:
    creds, role = setup
    location = spec(role)
    answers = {"GetObject": denial("GetObject", "kms:Decrypt", role)}
    checks = results(
        run_probes(creds, location, principal_arn=role, client_factory=injecting_factory(creds, location, answers))
    )
    kms = checks["kms"]
    assert kms.status is CheckStatus.FAILED and "kms:Decrypt" in kms.message
    assert_both_remedies(kms, role)
    assert checks["s3:PutObject"].status is CheckStatus.PASSED
    assert checks["s3:GetObject"].status is CheckStatus.WARNING
    assert [c.id for c in checks.values() if c.status is CheckStatus.FAILED] == ["kms"]
    # The real object was written; the real delete still removed it.
    assert checks["s3:DeleteObject"].status is CheckStatus.PASSED
    assert aws.object_keys(BUCKET) == []


def test_kms_error_code_from_s3(setup: tuple[TemporaryCredentials, str]) -> None:
    creds, role = setup
    location = spec(role)
    disabled = {
        "Error": {"Code": "KMS.DisabledException", "Message": f"{KEY} is disabled."},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    checks = results(
        run_probes(
            creds,
            location,
            principal_arn=role,
            client_factory=injecting_factory(creds, location, {"PutObject": disabled}),
        )
    )
    assert checks["kms"].status is CheckStatus.FAILED and "KMS.DisabledException" in checks["kms"].message


def test_bucket_default_encryption_is_detected_without_a_key_in_the_spec(
    setup: tuple[TemporaryCredentials, str],
) -> None:
    """A bucket with default SSE-KMS encrypts the probe although the spec names no key."""
    creds, role = setup
    location = spec(role, kms_key_arn=None)
    base = default_client_factory(creds, location, verify=None, timeout=10)

    def encrypted_by_default(service: str) -> Any:
        client = base(service)

        def add_sse(params: dict[str, Any], **_: Any) -> None:
            params["ServerSideEncryption"] = "aws:kms"
            params["SSEKMSKeyId"] = KEY

        # Stands in for the bucket's default encryption, which ministack does not apply.
        client.meta.events.register("provide-client-params.s3.PutObject", add_sse)
        return client

    checks = results(run_probes(creds, location, principal_arn=role, client_factory=encrypted_by_default))
    assert checks["kms"].status is CheckStatus.PASSED and KEY in checks["kms"].message


def test_no_kms_is_skipped(setup: tuple[TemporaryCredentials, str]) -> None:
    creds, role = setup
    checks = results(run_probes(creds, spec(role, kms_key_arn=None), principal_arn=role))
    assert checks["kms"].status is CheckStatus.SKIPPED
