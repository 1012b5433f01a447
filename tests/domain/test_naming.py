"""The validation rules for what users type: every rule, its message and its fix."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stowage.domain.checks import CheckResult, CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials, StsCredentials
from stowage.domain.naming import (
    RoleArn,
    access_key_problem,
    account_id_problem,
    check_bucket_name,
    check_ca_cert,
    check_region,
    check_role_arn,
    check_s3_url,
    check_static_credentials,
    cluster_role_arn_problem,
    kms_key_arn_problem,
    location_name_problem,
    parse_role_arn,
    prefix_problem,
    project_name_problem,
    region_suggestions,
    static_checks,
)
from stowage.domain.regions import ALL_REGIONS, REGION_NAMES, REGION_PARTITION

AWS = Provider.AWS
CUSTOM = Provider.S3_COMPATIBLE
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/stowage-backups"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def assert_failed(result: CheckResult, *words: str) -> None:
    """A failure names the problem and carries its fix, in the message too (services show only the message)."""
    assert result.status is CheckStatus.FAILED, result
    assert result.remedy, result
    assert result.remedy in result.message, result
    for word in words:
        assert word in result.message, (word, result.message)


def assert_warning(result: CheckResult, *words: str) -> None:
    assert result.status is CheckStatus.WARNING, result
    assert result.remedy and result.remedy in result.message, result
    for word in words:
        assert word in result.message, (word, result.message)


# ----------------------------------------------------------------------------------------------- bucket name


@pytest.mark.parametrize("name", ["abc", "my-bucket", "my.bucket.name", "a1b2c3", "1bucket", "b" * 63, "a-b.c-d"])
def test_valid_bucket_names_pass(name: str) -> None:
    result = check_bucket_name(name)
    assert result.status is CheckStatus.PASSED
    assert result.id == "bucket-name"
    assert name in result.message


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("ab", ["2 characters", "3 to 63"]),
        ("b" * 64, ["64 characters"]),
        ("My-Bucket", ["uppercase", 'Did you mean "my-bucket"']),
        ("my_bucket", ['"_"', 'Did you mean "my-bucket"']),
        ("my bucket", ["a space", 'Did you mean "my-bucket"']),
        ("-bucket", ['starts with "-"']),
        (".bucket", ['starts with "."']),
        ("bucket-", ['ends with "-"']),
        ("bucket.", ['ends with "."']),
        ("my..bucket", ["two dots in a row", 'Did you mean "my.bucket"']),
        ("192.168.5.4", ["IP address"]),
        ("xn--bucket", ['starts with "xn--"', "reserves"]),
        ("sthree-bucket", ['starts with "sthree-"']),
        ("sthree-configurator", ['starts with "sthree-configurator"']),
        ("amzn-s3-demo-bucket", ['starts with "amzn-s3-demo-"']),
        ("bucket-s3alias", ['ends with "-s3alias"']),
        ("bucket--ol-s3", ['ends with "--ol-s3"']),
        ("bucket.mrap", ['ends with ".mrap"']),
        ("bucket--x-s3", ['ends with "--x-s3"']),
        ("bucket--table-s3", ['ends with "--table-s3"']),
        (" bucket ", ["spaces at the start or end", 'Did you mean "bucket"']),
        ("bücket", ['"ü"']),
    ],
)
def test_invalid_bucket_names_fail_with_the_rule(name: str, words: list[str]) -> None:
    result = check_bucket_name(name)
    assert_failed(result, *words, "lowercase letters, digits, dots and hyphens")


def test_bucket_name_reports_every_problem_at_once() -> None:
    result = check_bucket_name("-My_Bucket..")
    assert_failed(result, "uppercase", '"_"', 'starts with "-"', 'ends with "."', "two dots in a row")


def test_empty_bucket_name_says_to_enter_one() -> None:
    assert_failed(check_bucket_name(""), "empty", "Enter the name")
    assert_failed(check_bucket_name("   "), "empty")


def test_no_suggestion_when_nothing_close_is_valid() -> None:
    result = check_bucket_name("__")
    assert_failed(result)
    assert "Did you mean" not in result.message


def test_dotted_bucket_warns_about_virtual_hosted_tls() -> None:
    result = check_bucket_name("my.bucket", virtual_host_tls=True)
    assert_warning(result, "certificate", "Force S3 path style", "no dots")
    assert check_bucket_name("my.bucket", virtual_host_tls=False).status is CheckStatus.PASSED
    assert check_bucket_name("my-bucket", virtual_host_tls=True).status is CheckStatus.PASSED


def test_invalid_dotted_bucket_fails_rather_than_warns() -> None:
    assert check_bucket_name("My.Bucket", virtual_host_tls=True).status is CheckStatus.FAILED


_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
_VALID_BUCKETS = (
    st.lists(_LABEL, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda n: 3 <= len(n) <= 63)
    .filter(lambda n: not n.startswith(("xn--", "sthree-", "amzn-s3-demo-")))
    .filter(lambda n: not n.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")))
)


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name.count(".") == 3 and all(p.isdigit() and len(p) <= 3 for p in name.split("."))
    return True


@given(_VALID_BUCKETS)
def test_every_valid_bucket_name_passes(name: str) -> None:
    assume(not _is_ipv4(name))
    assert check_bucket_name(name).status is CheckStatus.PASSED


@given(_VALID_BUCKETS, st.data())
def test_any_uppercase_letter_fails(name: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(name)))
    letter = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    result = check_bucket_name(name[:position] + letter + name[position:])
    assert_failed(result, "uppercase")


@given(st.text(max_size=80), st.booleans())
def test_bucket_check_never_raises_and_suggestions_are_valid(name: str, tls: bool) -> None:
    result = check_bucket_name(name, virtual_host_tls=tls)
    assert result.id == "bucket-name"
    if result.status is CheckStatus.FAILED:
        assert result.remedy in result.message
        if 'Did you mean "' in result.message:
            suggestion = result.message.split('Did you mean "')[1].split('"')[0]
            assert check_bucket_name(suggestion).status is CheckStatus.PASSED


# ---------------------------------------------------------------------------------------------------- region


@pytest.mark.parametrize("region", ALL_REGIONS)
def test_every_known_region_passes_with_its_partition(region: str) -> None:
    result = check_region(region, AWS)
    assert result.status is CheckStatus.PASSED
    assert REGION_PARTITION[region] in result.message
    assert REGION_NAMES[region] in result.message


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("US East 1", "us-east-1"),
        ("us-east1", "us-east-1"),
        ("useast1", "us-east-1"),
        ("US-EAST-1", "us-east-1"),
        ("us_east_1", "us-east-1"),
        ("Frankfurt", "eu-central-1"),
        ("Europe (Ireland)", "eu-west-1"),
        ("eu frankfurt", "eu-central-1"),
        ("virginia", "us-east-1"),
        ("Sao Paulo", "sa-east-1"),
        ("eu-west-9", "eu-west-1"),
        ("us-gov-west", "us-gov-west-1"),
    ],
)
def test_unknown_region_is_refused_with_the_closest_codes(typed: str, expected: str) -> None:
    result = check_region(typed, AWS)
    assert_failed(result, "not an AWS region code", f'"{expected}"', "Did you mean")
    assert expected in region_suggestions(typed)


def test_exact_spelling_match_suggests_only_that_region() -> None:
    assert region_suggestions("US East 1") == ["us-east-1"]
    assert "us-east-1" in region_suggestions("us-east")
    assert "us-gov-east-1" not in region_suggestions("us-east")


def test_availability_zone_gets_its_region() -> None:
    assert_failed(check_region("us-east-1a", AWS), "Availability Zone", '"us-east-1"')


def test_region_with_spaces_around_is_refused_with_the_trimmed_code() -> None:
    assert_failed(check_region(" eu-west-1 ", AWS), "Remove the spaces", '"eu-west-1"')


def test_nonsense_region_gets_the_format() -> None:
    result = check_region("xx", AWS)
    assert_failed(result, "us-east-1")
    assert "Did you mean" not in result.message


@pytest.mark.parametrize("provider", [AWS, CUSTOM])
def test_empty_region_fails(provider: Provider) -> None:
    assert_failed(check_region("", provider), "empty")
    assert_failed(check_region("  ", provider), "empty")


@pytest.mark.parametrize("region", ["us-east-1", "minio", "garage", "de-fra-1", "x" * 64])
def test_custom_storage_accepts_any_one_word_region(region: str) -> None:
    assert check_region(region, CUSTOM).status is CheckStatus.PASSED


@pytest.mark.parametrize(
    ("region", "words"),
    [
        (" minio", ["spaces at the start or end", '"minio"']),
        ("my region", ["a space", "without spaces"]),
        ("a\tb", ["tab"]),
        ("x" * 65, ["65 characters", "64"]),
    ],
)
def test_custom_storage_region_rules(region: str, words: list[str]) -> None:
    assert_failed(check_region(region, CUSTOM), *words)


@given(st.text(max_size=40), st.sampled_from([AWS, CUSTOM]))
def test_region_check_never_raises(region: str, provider: Provider) -> None:
    result = check_region(region, provider)
    assert result.id == "region"
    if result.status is CheckStatus.FAILED:
        assert result.remedy in result.message


@given(st.sampled_from(ALL_REGIONS))
def test_uppercased_region_is_refused_and_suggested_back(region: str) -> None:
    result = check_region(region.upper(), AWS)
    assert_failed(result, f'"{region}"')


# ---------------------------------------------------------------------------------------------------- S3 URL


def test_no_url_means_the_default_aws_endpoint() -> None:
    for value in (None, "", "  "):
        result = check_s3_url(value, force_path_style=False, provider=AWS)
        assert result.status is CheckStatus.PASSED
        assert "default AWS endpoint" in result.message


def test_custom_storage_needs_a_url() -> None:
    for value in (None, ""):
        assert_failed(check_s3_url(value, force_path_style=True, provider=CUSTOM), "needs an S3 URL", "https://")


@pytest.mark.parametrize(
    "url",
    ["https://minio.example.com", "https://minio.example.com:9000/", "http://127.0.0.1:9000", "https://[::1]:9000"],
)
def test_good_urls_with_path_style_pass(url: str) -> None:
    result = check_s3_url(url, force_path_style=True, provider=CUSTOM)
    assert result.status is CheckStatus.PASSED
    assert url in result.message


def test_aws_endpoint_without_path_style_passes() -> None:
    url = "https://s3.eu-west-1.amazonaws.com"
    assert check_s3_url(url, force_path_style=False, provider=AWS).status is CheckStatus.PASSED


def test_custom_url_without_path_style_warns() -> None:
    result = check_s3_url("https://minio.example.com", force_path_style=False, provider=CUSTOM)
    assert_warning(result, "Force S3 path style")


@pytest.mark.parametrize("host", ["10.0.0.5", "minio.example.com"])
def test_plain_http_to_another_host_warns(host: str) -> None:
    result = check_s3_url(f"http://{host}:9000", force_path_style=True, provider=CUSTOM)
    assert_warning(result, "unencrypted", "https://", host)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "minio.localhost"])
def test_plain_http_to_loopback_is_fine(host: str) -> None:
    assert check_s3_url(f"http://{host}:9000", force_path_style=True, provider=CUSTOM).status is CheckStatus.PASSED


def test_http_and_virtual_host_warnings_come_together() -> None:
    result = check_s3_url("http://minio.example.com", force_path_style=False, provider=CUSTOM)
    assert_warning(result, "unencrypted", "Force S3 path style")


def test_credentials_in_url_fail_and_are_not_repeated() -> None:
    result = check_s3_url("https://admin:hunter2@minio.example.com", force_path_style=True, provider=CUSTOM)
    assert_failed(result, "user name or password", "leaks", "credentials fields")
    assert "hunter2" not in result.message
    assert "admin" not in result.message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("minio.example.com:9000", ["no scheme", '"https://minio.example.com:9000"']),
        ("s3://my-bucket", ["s3://", "Bucket field"]),
        ("ftp://minio.example.com", ['"ftp:"', "http or https"]),
        ("https://", ["no host name"]),
        ("https://minio.example.com/my-bucket", ['path ("/my-bucket")', "Bucket field", "Prefix"]),
        ("https://minio.example.com?x=1", ["?query"]),
        ("https://minio.example.com#top", ["#fragment"]),
        ("https://minio.example.com:99999", ["port", "1 to 65535"]),
        ("https://minio.example.com:abc", ["port"]),
        ("https://minio.example.com:0", ["port"]),
        ("https://minio.example.com:", ["port"]),
        ("https://300.1.1.1", ["not a valid IP address"]),
        ("https://bad_host-.example.com", ["not a valid host name"]),
        ("https://[zz]:9000", ["not a valid web address"]),
        (" https://minio.example.com", ["spaces at the start or end"]),
        ("https://minio example.com", ["a space"]),
    ],
)
def test_bad_urls_fail_with_the_reason(url: str, words: list[str]) -> None:
    assert_failed(check_s3_url(url, force_path_style=True, provider=CUSTOM), *words)


@given(st.text(max_size=60), st.booleans(), st.sampled_from([AWS, CUSTOM]))
def test_url_check_never_raises(url: str, path_style: bool, provider: Provider) -> None:
    result = check_s3_url(url, force_path_style=path_style, provider=provider)
    assert result.id == "s3-url"
    if result.status is CheckStatus.FAILED:
        assert result.remedy in result.message


@given(st.text(alphabet="abcdefghijklmnop:/@.[]?#%1234567890", max_size=40))
def test_url_check_never_raises_on_url_like_text(tail: str) -> None:
    check_s3_url(f"https://{tail}", force_path_style=True, provider=CUSTOM)


# ------------------------------------------------------------------------------------------- CA certificates

_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    common_name: str,
    *,
    ca: bool | None = True,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
) -> str:
    """A PEM certificate signed by the test CA key; ``ca=None`` leaves BasicConstraints out."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name("Test Root CA"))
        .public_key((_CA_KEY if ca else _LEAF_KEY).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    cert = builder.sign(_CA_KEY, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


CA_PEM = _cert("Test Root CA")


def test_no_certificate_is_skipped() -> None:
    for value in (None, "", "  \n"):
        result = check_ca_cert(value, now=NOW)
        assert result.status is CheckStatus.SKIPPED
        assert "no custom certificate" in result.message


def test_ca_certificate_passes_naming_subject_and_count() -> None:
    result = check_ca_cert(CA_PEM, now=NOW)
    assert result.status is CheckStatus.PASSED
    assert "1 CA certificate" in result.message
    assert "CN=Test Root CA" in result.message


def test_bundle_of_two_cas_passes() -> None:
    result = check_ca_cert(CA_PEM + _cert("Test Intermediate CA"), now=NOW)
    assert result.status is CheckStatus.PASSED
    assert "2 CA certificates" in result.message
    assert "CN=Test Intermediate CA" in result.message


def test_naive_now_counts_as_utc() -> None:
    assert check_ca_cert(CA_PEM, now=NOW.replace(tzinfo=None)).status is CheckStatus.PASSED


def test_expired_certificate_fails_with_subject_and_dates() -> None:
    expired = _cert("Old CA", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35))
    result = check_ca_cert(expired, now=NOW)
    assert_failed(result, "CN=Old CA", "expired on 2025-04-27", "current CA certificate")


def test_not_yet_valid_certificate_fails() -> None:
    future = _cert("Future CA", not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=400))
    assert_failed(check_ca_cert(future, now=NOW), "CN=Future CA", "not valid before 2025-06-03")


def test_one_expired_certificate_in_a_bundle_fails_the_bundle() -> None:
    expired = _cert("Old CA", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    result = check_ca_cert(CA_PEM + expired, now=NOW)
    assert_failed(result, "CN=Old CA")
    assert "Test Root CA" not in result.message


@pytest.mark.parametrize("ca", [False, None])
def test_leaf_certificate_warns(ca: bool | None) -> None:
    result = check_ca_cert(_cert("minio.example.com", ca=ca), now=NOW)
    assert_warning(result, "CN=minio.example.com", "not a CA certificate", "issued")


def test_garbage_is_not_pem() -> None:
    assert_failed(check_ca_cert("hello", now=NOW), "not a PEM certificate", "-----BEGIN CERTIFICATE-----")


def test_body_without_begin_end_lines() -> None:
    body = "".join(CA_PEM.splitlines()[1:-1])
    assert_failed(check_ca_cert(body, now=NOW), "without its BEGIN/END lines")


def test_damaged_pem_fails() -> None:
    lines = CA_PEM.splitlines()
    damaged = "\n".join([lines[0], lines[1][:20], lines[-1]])
    assert_failed(check_ca_cert(damaged, now=NOW), "damaged or incomplete", "Copy it again")


def test_private_key_is_refused() -> None:
    key = _LEAF_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    assert_failed(check_ca_cert(CA_PEM + key, now=NOW), "private key", "never paste")


def test_certificate_request_is_refused() -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("csr"))
        .sign(_LEAF_KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode("ascii")
    )
    assert_failed(check_ca_cert(csr, now=NOW), "signing request")


@settings(max_examples=50)
@given(st.text(max_size=200))
def test_ca_check_never_raises(text: str) -> None:
    for pem in (text, f"-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n"):
        result = check_ca_cert(pem, now=NOW)
        assert result.id == "ca-cert"
        if result.status is CheckStatus.FAILED:
            assert result.remedy in result.message


# -------------------------------------------------------------------------------------------------- role ARN


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (ROLE, RoleArn("aws", "123456789012", "/", "stowage-backups")),
        ("arn:aws:iam::123456789012:role/team/a/stowage", RoleArn("aws", "123456789012", "/team/a/", "stowage")),
        ("arn:aws-cn:iam::000000000001:role/r+=,.@_-", RoleArn("aws-cn", "000000000001", "/", "r+=,.@_-")),
        ("arn:aws-us-gov:iam::123456789012:role/x", RoleArn("aws-us-gov", "123456789012", "/", "x")),
    ],
)
def test_parse_role_arn(arn: str, expected: RoleArn) -> None:
    assert parse_role_arn(arn) == expected
    assert expected.arn == arn


@pytest.mark.parametrize(
    "arn",
    [
        "",
        " " + ROLE,
        "arn:aws:iam::123456789012:user/bob",
        "arn:aws:iam::12345678901:role/x",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a//x",
        "arn:aws:iam::123456789012:role/" + "x" * 65,
        "arn:aws:iam::123456789012:role/bad name",
        "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/x",  # Arabic-Indic digits are digits to Python, not to IAM
        "arn:aws:iam::123456789012:role/" + "p/" * 300 + "x",
    ],
)
def test_parse_role_arn_refuses(arn: str) -> None:
    assert parse_role_arn(arn) is None


def test_valid_role_passes() -> None:
    result = check_role_arn(ROLE, region="us-east-1", provider=AWS)
    assert result.status is CheckStatus.PASSED
    assert "stowage-backups" in result.message and "123456789012" in result.message


@pytest.mark.parametrize(
    ("arn", "words"),
    [
        (None, ["empty", "arn:aws:iam::"]),
        ("", ["empty"]),
        (f" {ROLE} ", ["spaces or quotes", f"exactly {ROLE}"]),
        (f'"{ROLE}"', ["spaces or quotes", f"exactly {ROLE}"]),
        (f"‘{ROLE}’", ["spaces or quotes"]),  # curly quotes arrive with pasted text
        ("arn:aws:iam::123456789012:user/bob", ["IAM user", "create one", "static keys"]),
        ("arn:aws:iam::123456789012:instance-profile/web", ["instance profile", "role/web"]),
        ("arn:aws:iam::123456789012:policy/stowage", ["policy", "Attach the policy to a role"]),
        ("arn:aws:iam::123456789012:group/admins", ["IAM group"]),
        ("arn:aws:iam::123456789012:root", ["whole account"]),
        (
            "arn:aws:sts::123456789012:assumed-role/Backup/session-1",
            ["assumed-role session", "arn:aws:iam::123456789012:role/Backup"],
        ),
        ("arn:aws:iam:::role/stowage", ["no account ID", "12-digit"]),
        ("arn:aws:iam::1234:role/stowage", ['"1234" is not 12 digits']),
        ("arn:aws:iam::1234-5678-9012:role/stowage", ["dashes", "123456789012"]),
        ("arn:aws:iam:us-east-1:123456789012:role/stowage", ["has a region", "two colons"]),
        ("arn:aws:s3:::my-bucket", ['"s3" service']),
        ("arn:azure:iam::123456789012:role/stowage", ['partition "azure"', "aws, aws-us-gov or aws-cn"]),
        ("stowage-backups", ["role name", "arn:aws:iam::<account ID>:role/stowage-backups"]),
        ("123456789012", ["account ID, not a role ARN", "arn:aws:iam::123456789012:role/"]),
        ("arn:aws:iam", ["incomplete"]),
        ("not an arn at all", ["not an ARN"]),
        ("arn:aws:iam::123456789012:role/", ["no role name"]),
        ("arn:aws:iam::123456789012:role/" + "x" * 65, ["65 characters", "64"]),
        ("arn:aws:iam::123456789012:role/bad name", ["not allowed: a space"]),
        ("arn:aws:iam::123456789012:role/a//stowage", ["path"]),
        ("arn:aws:iam::123456789012:role/aws-service-role/x.amazonaws.com/AWSServiceRoleForX", ["managed by AWS"]),
        ("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_x", ["managed by AWS"]),
        ("arn:aws:iam::123456789012:mfa/x", ['"mfa"']),
    ],
)
def test_role_arn_mistakes_get_tailored_messages(arn: str | None, words: list[str]) -> None:
    assert_failed(check_role_arn(arn, region="us-east-1", provider=AWS), *words)


@pytest.mark.parametrize(
    ("arn", "region"),
    [
        ("arn:aws-cn:iam::123456789012:role/x", "us-east-1"),
        ("arn:aws:iam::123456789012:role/x", "cn-north-1"),
        ("arn:aws:iam::123456789012:role/x", "us-gov-west-1"),
    ],
)
def test_role_partition_must_match_region(arn: str, region: str) -> None:
    assert_failed(check_role_arn(arn, region=region, provider=AWS), "partition", region)


def test_partition_is_not_checked_for_custom_storage_or_unknown_regions() -> None:
    arn = "arn:aws-cn:iam::123456789012:role/x"
    assert check_role_arn(arn, region="us-east-1", provider=CUSTOM).status is CheckStatus.PASSED
    assert check_role_arn(arn, region="Frankfurt", provider=AWS).status is CheckStatus.PASSED
    gov = "arn:aws-us-gov:iam::123456789012:role/x"
    assert check_role_arn(gov, region="us-gov-east-1", provider=AWS).status is CheckStatus.PASSED


_ROLE_NAMES = st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,64}", fullmatch=True)
_PATHS = st.lists(st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), max_size=3).map(
    lambda segs: "/" + "".join(f"{s}/" for s in segs)
)


@given(
    st.sampled_from(["aws", "aws-us-gov", "aws-cn"]), st.from_regex(r"[0-9]{12}", fullmatch=True), _PATHS, _ROLE_NAMES
)
def test_generated_role_arns_round_trip(partition: str, account: str, path: str, name: str) -> None:
    assume(not path.startswith(("/aws-service-role/", "/aws-reserved/")))
    role = RoleArn(partition, account, path, name)
    assert parse_role_arn(role.arn) == role
    assert check_role_arn(role.arn, region="", provider=AWS).status is CheckStatus.PASSED


@given(st.text(max_size=80), st.sampled_from([AWS, CUSTOM]))
def test_role_check_never_raises(arn: str, provider: Provider) -> None:
    result = check_role_arn(arn, region="us-east-1", provider=provider)
    assert result.id == "role-arn"
    if result.status is CheckStatus.FAILED:
        assert result.remedy in result.message
    cluster_role_arn_problem(arn)
    parse_role_arn(arn)


@given(st.text(alphabet="arn:aws-iamstolerpuc/0123456789", max_size=60))
def test_role_check_never_raises_on_arn_like_text(arn: str) -> None:
    check_role_arn(arn, region="us-east-1", provider=AWS)
    check_role_arn("arn:" + arn, region="us-east-1", provider=AWS)


def test_cluster_role_arn_problem() -> None:
    assert cluster_role_arn_problem(None) is None
    assert cluster_role_arn_problem("") is None
    assert cluster_role_arn_problem("arn:aws:iam::111122223333:role/eks-agent") is None
    problem = cluster_role_arn_problem("arn:aws:iam::111122223333:user/ci")
    assert problem is not None
    assert "Cluster role ARN" in problem and "IAM user" in problem and "whole cluster account" in problem
    assert "arn:aws:iam::" in (cluster_role_arn_problem("eks-agent") or "")


# --------------------------------------------------------------------------------------- static credentials


@pytest.mark.parametrize(
    ("key", "secret", "aws_format", "words"),
    [
        ("", "Zq9-top-secret", True, ["access key ID is empty"]),
        ("AKIAIOSFODNN7EXAMPLE", "", True, ["secret access key is empty"]),
        ("AKIA-OSFODNN7EXAMPLE", "Zq9-top-secret", True, ["other than letters and digits"]),
        ("AKIA123", "Zq9-top-secret", True, ["7 characters", "16 to 128"]),
        ("A" * 129, "Zq9-top-secret", True, ["129 characters"]),
        ("ASIAIOSFODNN7EXAMPLE", "Zq9-top-secret", True, ["temporary key", "AKIA"]),
        (" AKIAIOSFODNN7EXAMPLE", "Zq9-top-secret", True, ["contains spaces", "Remove the spaces"]),
        ("AKIAIOSFODNN7EXAMPLE", "Zq9-top-secret ", True, ["secret access key has spaces"]),
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AKIAIOSFODNN7EXAMPLE", True, ["swapped"]),
        ("x" * 129, "Zq9-top-secret", False, ["129 characters"]),
        ("my key", "Zq9-top-secret", False, ["contains spaces"]),
    ],
)
def test_access_key_problems(key: str, secret: str, aws_format: bool, words: list[str]) -> None:
    problem = access_key_problem(key, secret, aws_format=aws_format)
    assert problem is not None
    for word in words:
        assert word in problem, (word, problem)
    if secret.strip():
        assert secret.strip() not in problem  # the secret is never repeated


def test_access_keys_that_look_right() -> None:
    assert access_key_problem("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") is None
    # MinIO's and emulators' keys have other shapes; only AWS's format is enforced for AWS itself.
    assert access_key_problem("minioadmin", "minioadmin", aws_format=False) is None
    assert access_key_problem("minioadmin", "minioadmin", aws_format=True) is not None
    assert access_key_problem(None, None) is not None


def test_check_static_credentials() -> None:
    good = StaticCredentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert check_static_credentials(good).status is CheckStatus.PASSED
    result = check_static_credentials(StaticCredentials("ASIAIOSFODNN7EXAMPLE", "topsecret"))
    assert_failed(result, "temporary key")
    assert result.id == "credentials"
    assert "topsecret" not in result.message


# ----------------------------------------------------------------------------------------------- all static


def _spec(**changes: object) -> LocationSpec:
    values: dict[str, object] = {
        "name": "prod",
        "provider": AWS,
        "bucket": "my-backups",
        "region": "eu-west-1",
        "credentials": StsCredentials(role_arn=ROLE),
    }
    values.update(changes)
    return LocationSpec(**values)  # type: ignore[arg-type]


def test_static_checks_order_and_ids() -> None:
    checks = static_checks(_spec(), now=NOW)
    assert [c.id for c in checks] == ["bucket-name", "region", "s3-url", "ca-cert", "role-arn"]
    assert [c.status for c in checks] == [
        CheckStatus.PASSED,
        CheckStatus.PASSED,
        CheckStatus.PASSED,
        CheckStatus.SKIPPED,
        CheckStatus.PASSED,
    ]


def test_static_checks_pass_the_ca_certificate() -> None:
    checks = static_checks(_spec(ca_cert=CA_PEM), now=NOW)
    assert checks[3].status is CheckStatus.PASSED


def test_static_checks_with_static_keys_skip_role_and_check_keys() -> None:
    keys = StaticCredentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    checks = static_checks(_spec(credentials=keys), now=NOW)
    assert [c.id for c in checks] == ["bucket-name", "region", "s3-url", "ca-cert", "role-arn", "credentials"]
    assert checks[4].status is CheckStatus.SKIPPED
    assert "static keys: no role to assume" in checks[4].message
    assert checks[5].status is CheckStatus.PASSED


def test_static_checks_relax_key_format_for_custom_endpoints() -> None:
    keys = StaticCredentials("minioadmin", "minioadmin")
    custom = _spec(
        provider=CUSTOM, region="minio", s3_url="http://127.0.0.1:9000", force_path_style=True, credentials=keys
    )
    assert static_checks(custom, now=NOW)[5].status is CheckStatus.PASSED
    emulator = _spec(s3_url="http://127.0.0.1:4566", force_path_style=True, credentials=keys)
    assert static_checks(emulator, now=NOW)[5].status is CheckStatus.PASSED
    assert static_checks(_spec(credentials=keys), now=NOW)[5].status is CheckStatus.FAILED


@pytest.mark.parametrize(
    ("s3_url", "force_path_style", "status"),
    [
        (None, False, CheckStatus.WARNING),
        ("", False, CheckStatus.WARNING),
        ("https://s3.eu-west-1.amazonaws.com", False, CheckStatus.WARNING),
        ("HTTPS://s3.eu-west-1.amazonaws.com", False, CheckStatus.WARNING),
        ("http://127.0.0.1:9000", False, CheckStatus.PASSED),
        (None, True, CheckStatus.PASSED),
        ("https://s3.eu-west-1.amazonaws.com", True, CheckStatus.PASSED),
    ],
)
def test_static_checks_warn_about_dotted_buckets_only_with_virtual_hosted_https(
    s3_url: str | None, force_path_style: bool, status: CheckStatus
) -> None:
    spec = _spec(bucket="my.backups", s3_url=s3_url, force_path_style=force_path_style)
    assert static_checks(spec, now=NOW)[0].status is status


def test_static_checks_report_every_failure() -> None:
    spec = _spec(bucket="My_Bucket", region="Ireland", credentials=StsCredentials("arn:aws:iam::1:user/x"))
    failed = [c.id for c in static_checks(spec, now=NOW) if c.is_failure]
    assert failed == ["bucket-name", "region", "role-arn"]


# ------------------------------------------------------------------------------------------- plain problems


@pytest.mark.parametrize("name", ["prod", "Prod Backups 1", "eu_west.primary-2", "x", "a" * 63])
def test_location_names_that_are_fine(name: str) -> None:
    assert location_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        (" prod", ["spaces at the start or end"]),
        ("prod ", ["spaces at the start or end"]),
        ("-prod", ['starts with "-"']),
        (".prod", ['starts with "."']),
        ("prod/eu", ['"/"']),
        ("prød", ['"ø"']),
        ("a" * 64, ["64 characters"]),
    ],
)
def test_location_name_problems(name: str, words: list[str]) -> None:
    problem = location_name_problem(name)
    assert problem is not None
    assert "1 to 63 letters" in problem
    for word in words:
        assert word in problem


@pytest.mark.parametrize("name", ["default", "team-a", "a", "a1-b2", "a" * 63])
def test_project_names_that_are_fine(name: str) -> None:
    assert project_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", ["empty"]),
        ("Team_A", ["uppercase", '"_"', 'Did you mean "team-a"']),
        ("1team", ["start with a letter", 'Did you mean "team"']),
        ("-team", ["start with a letter"]),
        ("team-", ["ends with a hyphen", 'Did you mean "team"']),
        ("a" * 64, ["64 characters"]),
        ("équipe", ['"é"', 'Did you mean "equipe"']),
        ("team a", ["a space", 'Did you mean "team-a"']),
    ],
)
def test_project_name_problems(name: str, words: list[str]) -> None:
    problem = project_name_problem(name)
    assert problem is not None
    assert "lowercase letters, digits and hyphens" in problem
    for word in words:
        assert word in problem, (word, problem)


@given(st.text(max_size=70))
def test_project_name_suggestions_are_valid(name: str) -> None:
    problem = project_name_problem(name)
    if problem and 'Did you mean "' in problem:
        suggestion = problem.split('Did you mean "')[1].split('"')[0]
        assert project_name_problem(suggestion) is None
    location_name_problem(name)


@pytest.mark.parametrize("prefix", [None, "", "backups", "backups/prod/", "team a/ü/v1", "a.b/c..d", "x" * 512])
def test_prefixes_that_are_fine(prefix: str | None) -> None:
    assert prefix_problem(prefix) is None


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("/backups", ["starts with /", 'Remove the leading slash: "backups"']),
        ("backups//prod", ["//", "single slashes"]),
        ("backups/../prod", ['"." or ".."']),
        ("./backups", ['"." or ".."']),
        ("backups/.", ['"." or ".."']),
        ("back\x00ups", ["invisible character"]),
        ("back\nups", ["tab or line break"]),
        ("backups/*", ['"*"', "wildcards"]),
        ("backups/${aws:username}", ['"$"']),
        ("backups/.stowage-validation", [".stowage-validation", "Choose another prefix"]),
        ("backups/x.stowage-validation/", [".stowage-validation"]),
        ("x" * 513, ["513 characters", "512"]),
    ],
)
def test_prefix_problems(prefix: str, words: list[str]) -> None:
    problem = prefix_problem(prefix)
    assert problem is not None
    for word in words:
        assert word in problem, (word, problem)


@given(st.text(max_size=40))
def test_prefix_problem_never_raises(prefix: str) -> None:
    prefix_problem(prefix)


@pytest.mark.parametrize(
    "arn",
    [
        None,
        "",
        KMS,
        "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws:kms:us-east-1:123456789012:alias/backups",
    ],
)
def test_kms_keys_that_are_fine(arn: str | None) -> None:
    assert kms_key_arn_problem(arn, region="us-east-1") is None


@pytest.mark.parametrize(
    ("arn", "words"),
    [
        (KMS.replace("us-east-1", "eu-west-1"), ["region eu-west-1", "bucket is in us-east-1", "SSE-KMS"]),
        (
            "arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ["aws-cn partition", "aws partition"],
        ),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", ["not an ARN", "arn:aws:kms:us-east-1:<account ID>:key/1234abcd"]),
        ("alias/backups", ["not an ARN", "arn:aws:kms:us-east-1:<account ID>:alias/backups"]),
        (f" {KMS}", ["spaces or quotes"]),
        ("arn:aws:s3:::bucket", ['"s3" service']),
        ("arn:aws:kms:us-east-1:123456789012:key/not-a-key", ["key/<key ID>"]),
        ("arn:aws:kms::123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", ["no region"]),
        ("arn:aws:kms:us-east-1:123:key/1234abcd-12ab-34cd-56ef-1234567890ab", ["not 12 digits"]),
        ("arn:nope:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", ['partition "nope"']),
        ("my key", ["not an ARN", "arn:aws:kms:"]),
    ],
)
def test_kms_key_problems(arn: str, words: list[str]) -> None:
    problem = kms_key_arn_problem(arn, region="us-east-1")
    assert problem is not None
    for word in words:
        assert word in problem, (word, problem)


def test_kms_key_partition_follows_the_region() -> None:
    cn = "arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert kms_key_arn_problem(cn, region="cn-north-1") is None
    assert "aws-cn" in (kms_key_arn_problem("alias/x", region="cn-north-1") or "")


@given(st.text(max_size=60), st.sampled_from(["us-east-1", "cn-north-1", "", "minio"]))
def test_kms_problem_never_raises(arn: str, region: str) -> None:
    kms_key_arn_problem(arn, region=region)


@pytest.mark.parametrize("account", [None, "", "123456789012", "000000000001"])
def test_account_ids_that_are_fine(account: str | None) -> None:
    assert account_id_problem(account) is None


@pytest.mark.parametrize(
    ("account", "words"),
    [
        ("1234-5678-9012", ["dashes", "123456789012"]),
        ("1234 5678 9012", ["spaces", "123456789012"]),
        (" 123456789012", ["123456789012"]),
        ("12345678901", ["11 digits", "leading zeros"]),
        ("arn:aws:iam::123456789012:root", ["an ARN", "123456789012"]),
        ("my-account", ["not 12 digits"]),
        ("١٢٣٤٥٦٧٨٩٠١٢", ["not 12 digits"]),
    ],
)
def test_account_id_problems(account: str, words: list[str]) -> None:
    problem = account_id_problem(account)
    assert problem is not None
    for word in words:
        assert word in problem, (word, problem)
