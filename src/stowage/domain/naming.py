"""Rules for what users type: bucket names, regions, S3 URLs, CA certificates, ARNs and names.

Every failure says what is wrong and how to fix it, in words for someone filling in a form. Checks of the
API contract return a ``CheckResult``; the other inputs have ``*_problem`` finders that return the message
(or ``None`` when the value is fine), for services to raise as ``InvalidInput``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import SplitResult, urlsplit

from cryptography import x509

from stowage.domain import endpoints
from stowage.domain.checks import CheckResult
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials
from stowage.domain.regions import (
    ALL_REGIONS,
    PARTITION_REGIONS,
    REGION_NAMES,
    REGION_PARTITION,
    partition_for_region,
)

PARTITIONS: tuple[str, ...] = tuple(PARTITION_REGIONS)
_PARTITION_LIST = ", ".join(PARTITIONS[:-1]) + " or " + PARTITIONS[-1]
_DIGITS = frozenset(string.digits)
_LOWER_ALNUM = frozenset(string.ascii_lowercase + string.digits)
_ALNUM = frozenset(string.ascii_letters + string.digits)
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# Longest value echoed back in a message: enough to recognise it, short enough for a form's error line.
_SHOW_MAX = 80


@dataclass(frozen=True, slots=True)
class _Problem:
    """One broken rule: ``what`` completes "X cannot be used: ...", ``fix`` is a sentence on its own."""

    what: str
    fix: str


def _show(value: str) -> str:
    """The value in quotes for a message, invisible characters made visible and long values cut."""
    visible = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii") for ch in value
    )
    if len(visible) > _SHOW_MAX:
        visible = visible[: _SHOW_MAX - 1] + "…"
    return f'"{visible}"'


def _char_names(chars: Iterable[str]) -> str:
    """Offending characters listed once each, in order, spaces and invisible ones by name."""
    seen: list[str] = []
    for ch in chars:
        if ch not in seen:
            seen.append(ch)
    names = []
    for ch in seen[:8]:
        if ch == " ":
            names.append("a space")
        elif ch.isspace():
            names.append("a tab or line break" if ch in "\t\r\n" else "an invisible space")
        elif not ch.isprintable():
            names.append(f"an invisible character {ch.encode('unicode_escape', 'backslashreplace').decode('ascii')}")
        else:
            names.append(f'"{ch}"')
    if len(seen) > 8:
        names.append("and more")
    return ", ".join(names)


def _compose(subject: str, problems: list[_Problem]) -> tuple[str, str]:
    """Message and remedy for a list of problems: every problem named, every distinct fix given once."""
    fixes: list[str] = []
    for p in problems:
        if p.fix and p.fix not in fixes:
            fixes.append(p.fix)
    remedy = " ".join(fixes)
    message = f"{subject} cannot be used: {'; '.join(p.what for p in problems)}."
    return (f"{message} {remedy}" if remedy else message), remedy


def _fmt_time(moment: datetime) -> str:
    """A certificate date as users read it, always in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------------------------- bucket name

BUCKET_MIN_LENGTH = 3
BUCKET_MAX_LENGTH = 63
_BUCKET_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-")
# "sthree-configurator" is covered by "sthree-" but listed so the message names the rule AWS documents.
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-configurator", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_IPV4_LIKE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_BUCKET_RULES = (
    "Bucket names have 3 to 63 lowercase letters, digits, dots and hyphens, and start and end with a letter "
    "or digit; enter the bucket's exact name as the S3 console shows it."
)


def _bucket_problems(bucket: str) -> list[str]:
    """Every naming rule the bucket name breaks, as phrases (empty when the name is valid)."""
    problems: list[str] = []
    name = bucket.strip()
    if name != bucket:
        problems.append("it has spaces at the start or end")
    if not BUCKET_MIN_LENGTH <= len(name) <= BUCKET_MAX_LENGTH:
        problems.append(f"it has {len(name)} characters (allowed: {BUCKET_MIN_LENGTH} to {BUCKET_MAX_LENGTH})")
    if any(ch in string.ascii_uppercase for ch in name):
        problems.append("it has uppercase letters (bucket names are all lowercase)")
    bad = [ch for ch in name if ch not in _BUCKET_CHARS and ch not in string.ascii_uppercase]
    if bad:
        problems.append(f"it has characters that are not allowed: {_char_names(bad)}")
    # Only dots and hyphens are worth a separate word here: other characters were reported just above.
    if name and name[0] in ".-":
        problems.append(f'it starts with "{name[0]}" instead of a letter or digit')
    if name and name[-1] in ".-":
        problems.append(f'it ends with "{name[-1]}" instead of a letter or digit')
    if ".." in name:
        problems.append("it has two dots in a row")
    if _IPV4_LIKE.fullmatch(name):
        problems.append("it is formatted like an IP address")
    for prefix in _BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            problems.append(f'it starts with "{prefix}", which AWS reserves')
            break
    for suffix in _BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            problems.append(f'it ends with "{suffix}", which AWS reserves')
            break
    return problems


def _suggest_bucket_name(bucket: str) -> str | None:
    """A valid name close to the one typed (lowercased, bad characters turned into hyphens), if one exists."""
    name = bucket.strip().lower()
    name = re.sub(r"[^a-z0-9.-]+", "-", name)
    name = re.sub(r"\.{2,}", ".", name).strip(".-")
    for prefix in _BUCKET_RESERVED_PREFIXES:
        name = name.removeprefix(prefix)
    for suffix in _BUCKET_RESERVED_SUFFIXES:
        name = name.removesuffix(suffix)
    name = name[:BUCKET_MAX_LENGTH].strip(".-")
    if name == bucket or _bucket_problems(name):
        return None
    return name


def check_bucket_name(bucket: str, *, virtual_host_tls: bool = False) -> CheckResult:
    """Check a bucket name against every S3 general-purpose bucket naming rule."""
    if not bucket.strip():
        fix = "Enter the name of the bucket to back up into, exactly as the S3 console shows it."
        return CheckResult.failed("bucket-name", f"The bucket name is empty. {fix}", fix)
    problems = _bucket_problems(bucket)
    if problems:
        suggestion = _suggest_bucket_name(bucket)
        fix = _BUCKET_RULES + (f' Did you mean "{suggestion}"?' if suggestion else "")
        message = f"Bucket name {_show(bucket)} is not valid: {'; '.join(problems)}. {fix}"
        return CheckResult.failed("bucket-name", message, fix)
    if "." in bucket and virtual_host_tls:
        fix = 'Turn on "Force S3 path style", or use a bucket whose name has no dots.'
        message = (
            f'Bucket name "{bucket}" has dots, so HTTPS requests to https://{bucket}.<endpoint> '
            "(virtual-hosted style) fail certificate validation: a wildcard certificate covers only one "
            f"level of the host name. {fix}"
        )
        return CheckResult.warning("bucket-name", message, fix)
    return CheckResult.passed("bucket-name", f'Bucket name "{bucket}" is valid.')


# --------------------------------------------------------------------------------------------------- region

REGION_MAX_LENGTH = 64


def _squash(text: str) -> str:
    """Lowercase ASCII letters and digits only, so "US East 1", "us-east1" and "São Paulo" compare plainly."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in folded.lower() if ch in _LOWER_ALNUM)


def _city_key(code: str) -> str:
    """The squashed part of a region's display name in parentheses ("frankfurt"), or "" when it has none.

    GovCloud's "(US-East)" is left out: it would make "us-east" look like a GovCloud region.
    """
    if REGION_PARTITION.get(code) == "aws-us-gov":
        return ""
    match = re.search(r"\(([^)]*)\)", REGION_NAMES.get(code, ""))
    return _squash(match.group(1)) if match else ""


def region_suggestions(text: str, limit: int = 3) -> list[str]:
    """Known AWS region codes close to what the user typed (a code, a console name, a city, a typo)."""
    squashed = _squash(text)
    if not squashed:
        return []
    exact = [
        code
        for code in ALL_REGIONS
        if squashed in (_squash(code), _squash(REGION_NAMES.get(code, "")), _city_key(code))
    ]
    if exact:
        return exact[:limit]
    found: list[str] = []
    if len(squashed) >= 4 and not any(ch in _DIGITS for ch in squashed):
        # A city inside a longer text ("eu frankfurt") or part of one ("virginia"): people often know the
        # console's names better than the codes. Digits mean a code was typed, not a name.
        found.extend(
            code
            for code in ALL_REGIONS
            if _city_key(code) and (_city_key(code) in squashed or squashed in _city_key(code))
        )
    hyphenated = re.sub(r"[\s_]+", "-", text.strip().lower())
    found.extend(difflib.get_close_matches(hyphenated, ALL_REGIONS, n=limit, cutoff=0.6))
    by_squash = {_squash(code): code for code in ALL_REGIONS}
    found.extend(by_squash[s] for s in difflib.get_close_matches(squashed, list(by_squash), n=limit, cutoff=0.75))
    unique: list[str] = []
    for code in found:
        if code not in unique:
            unique.append(code)
    return unique[:limit]


def _quoted_list(values: list[str]) -> str:
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _check_aws_region(region: str) -> CheckResult:
    fix = 'Enter the code of the bucket\'s region, like "us-east-1" (the S3 console shows it next to the bucket).'
    if not region.strip():
        return CheckResult.failed("region", f"The region is empty. {fix}", fix)
    if region in REGION_PARTITION:
        partition = REGION_PARTITION[region]
        name = REGION_NAMES.get(region, region)
        return CheckResult.passed("region", f"Region {region} ({name}), partition {partition}.")
    zone = re.fullmatch(r"(.+-[0-9]+)[a-z]", region.strip().lower())
    if zone and zone.group(1) in REGION_PARTITION:
        code = zone.group(1)
        zone_fix = f'Use the region "{code}".'
        message = f"{_show(region)} is an Availability Zone, not a region. {zone_fix}"
        return CheckResult.failed("region", message, zone_fix)
    if region.strip() in REGION_PARTITION:
        fix = f'Remove the spaces around it: "{region.strip()}".'
    else:
        suggestions = region_suggestions(region)
        if suggestions:
            fix = f"Did you mean {_quoted_list(suggestions)}? Region codes are lowercase with hyphens, like us-east-1."
    return CheckResult.failed("region", f"{_show(region)} is not an AWS region code. {fix}", fix)


def _check_custom_region(region: str) -> CheckResult:
    fix = 'Enter the region your storage expects; if it does not use regions, "us-east-1" is the usual choice.'
    if not region.strip():
        return CheckResult.failed("region", f"The region is empty. {fix}", fix)
    problems: list[_Problem] = []
    if region != region.strip():
        problems.append(_Problem("it has spaces at the start or end", f'Remove them: "{region.strip()}".'))
    inner = [ch for ch in region.strip() if ch.isspace() or not ch.isprintable()]
    if inner:
        problems.append(_Problem(f"it contains {_char_names(inner)}", "Region names are one word, without spaces."))
    if len(region) > REGION_MAX_LENGTH:
        problems.append(_Problem(f"it has {len(region)} characters (at most {REGION_MAX_LENGTH})", fix))
    if problems:
        message, remedy = _compose(f"Region {_show(region)}", problems)
        return CheckResult.failed("region", message, remedy)
    return CheckResult.passed("region", f'Region "{region}" (S3-compatible storage: any region it accepts).')


def check_region(region: str, provider: Provider) -> CheckResult:
    """Check the region: a known AWS region code for AWS, any one-word name for S3-compatible storage."""
    if provider is Provider.AWS:
        return _check_aws_region(region)
    return _check_custom_region(region)


# --------------------------------------------------------------------------------------------------- S3 URL

_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_URL_EXAMPLE = "https://s3.example.com:9000"


def _redact(url: str) -> str:
    """The URL without any ``user:password@`` part, so a message never repeats a secret."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{tail}"


def _host_problem(host: str) -> str | None:
    """Why a host (as ``urlsplit`` returns it: lowercase, no brackets) is not usable, or None."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f'"{host}" is not a valid IPv6 address'
        return None
    if all(ch in _DIGITS or ch == "." for ch in host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f'"{host}" is not a valid IP address'
        return None
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        return f'"{host}" is not a valid host name'
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_aws_host(host: str) -> bool:
    # AWS's own endpoints (regional, FIPS, dual-stack, VPC) serve virtual-hosted style with valid certificates.
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn")) or host == "amazonaws.com"


def _url_structure_problems(url: str, parts: SplitResult) -> list[_Problem]:
    problems: list[_Problem] = []
    scheme = parts.scheme.lower()
    if scheme == "s3":
        problems.append(
            _Problem(
                "an s3:// address names a bucket, not the storage's endpoint",
                f"Enter the endpoint's web address, like {_URL_EXAMPLE}, and the bucket in the Bucket field.",
            )
        )
    elif scheme not in ("http", "https"):
        problems.append(
            _Problem(f'it uses "{parts.scheme}:", not http or https', f"Enter an address like {_URL_EXAMPLE}.")
        )
    if "@" in parts.netloc:
        problems.append(
            _Problem(
                "it contains a user name or password (the user:password@ part)",
                "Remove it: addresses are shown in settings, logs and reports, so a secret in one leaks; enter "
                "access keys in the credentials fields instead.",
            )
        )
    host = parts.hostname or ""
    if not host:
        problems.append(_Problem("it has no host name", f"Enter an address like {_URL_EXAMPLE}."))
    else:
        host_problem = _host_problem(host)
        if host_problem:
            problems.append(_Problem(host_problem, "Check the host name for typos."))
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        problems.append(_Problem("its port is not valid", "Use a port number from 1 to 65535, or leave it out."))
    if parts.path not in ("", "/"):
        problems.append(
            _Problem(
                f'it has a path ("{parts.path}")',
                f"Enter only the endpoint, like {_URL_EXAMPLE}: the bucket goes in the Bucket field and a folder "
                "inside it in the Prefix field.",
            )
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        problems.append(_Problem("it has a ?query or #fragment", "Remove everything from the ? or # on."))
    return problems


def check_s3_url(s3_url: str | None, *, force_path_style: bool, provider: Provider) -> CheckResult:
    """Check the S3 endpoint URL: required for S3-compatible storage, optional for AWS."""
    if s3_url is None or not s3_url.strip():
        if provider is Provider.AWS:
            return CheckResult.passed("s3-url", "Uses the default AWS endpoint of the region.")
        fix = f"Enter the address of your storage's S3 API, like {_URL_EXAMPLE}."
        return CheckResult.failed("s3-url", f"S3-compatible storage needs an S3 URL. {fix}", fix)
    shown = _show(_redact(s3_url))
    subject = f"S3 URL {shown}"
    url = s3_url.strip()
    problems: list[_Problem] = []
    if url != s3_url:
        problems.append(_Problem("it has spaces at the start or end", "Remove the spaces around it."))
    inner = [ch for ch in url if ch.isspace() or not ch.isprintable()]
    if inner:
        problems.append(_Problem(f"it contains {_char_names(inner)}", "Remove them: web addresses have no spaces."))
    if "://" not in url:
        fix = f'Start it with https:// (or http:// for storage without TLS), like "https://{_redact(url)}".'
        problems.append(_Problem("it has no scheme", fix))
        message, remedy = _compose(subject, problems)
        return CheckResult.failed("s3-url", message, remedy)
    try:
        parts = urlsplit(url)
    except ValueError:
        problems.append(_Problem("it is not a valid web address", f"Enter an address like {_URL_EXAMPLE}."))
        message, remedy = _compose(subject, problems)
        return CheckResult.failed("s3-url", message, remedy)
    problems.extend(_url_structure_problems(url, parts))
    if problems:
        message, remedy = _compose(subject, problems)
        return CheckResult.failed("s3-url", message, remedy)

    host = parts.hostname or ""
    forbidden = endpoints.literal_refusal(host)
    if forbidden is not None:
        # Named in the text: no setting allows it (names that resolve there are refused at connection time).
        fix = "Use your storage's own address: metadata and link-local addresses are never allowed."
        return CheckResult.failed("s3-url", endpoints.refusal_message(host, forbidden), fix)
    cautions: list[_Problem] = []
    if parts.scheme.lower() == "http" and not _is_loopback(host):
        cautions.append(
            _Problem(
                f"it uses plain http to {host}, so credentials and backup data travel unencrypted",
                "Use https:// (and paste the storage's CA certificate if it uses its own).",
            )
        )
    if not force_path_style and not _is_aws_host(host):
        cautions.append(
            _Problem(
                "Force S3 path style is off",
                'Turn on "Force S3 path style": custom endpoints usually serve buckets at host/bucket, while '
                "bucket.host needs wildcard DNS and a wildcard certificate.",
            )
        )
    if cautions:
        fixes = " ".join(c.fix for c in cautions)
        message = f"S3 URL {shown} is valid, but {'; and '.join(c.what for c in cautions)}. {fixes}"
        return CheckResult.warning("s3-url", message, fixes)
    return CheckResult.passed("s3-url", f"S3 URL {shown} is valid.")


# -------------------------------------------------------------------------------------------- CA certificate

_PEM_FIX = (
    "Paste the CA certificate in PEM form, including the -----BEGIN CERTIFICATE----- and "
    "-----END CERTIFICATE----- lines."
)
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/=")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(no subject)"


def _pem_shape_problem(text: str) -> str | None:
    """Why the text is not PEM certificates at all, in the words of the usual mistake, or None."""
    if "PRIVATE KEY-----" in text:
        return f"This contains a private key: never paste private keys here, remove it. {_PEM_FIX}"
    if "-----BEGIN CERTIFICATE-----" in text:
        return None
    if "-----BEGIN CERTIFICATE REQUEST-----" in text or "-----BEGIN NEW CERTIFICATE REQUEST-----" in text:
        return f"This is a certificate signing request (CSR), not a certificate. {_PEM_FIX}"
    compact = "".join(text.split())
    # DER certificates start with a SEQUENCE, which base64 writes as "MI"; real ones are hundreds of characters.
    if compact.startswith("MI") and len(compact) >= 100 and all(ch in _BASE64 for ch in compact):
        return f"This looks like a certificate without its BEGIN/END lines. {_PEM_FIX}"
    return f"This is not a PEM certificate. {_PEM_FIX}"


def check_ca_cert(pem: str | None, *, now: datetime) -> CheckResult:
    """Check a custom CA bundle: readable PEM, every certificate currently valid, CA certificates only."""
    if pem is None or not pem.strip():
        return CheckResult.skipped("ca-cert", "System CA certificates are used: no custom certificate given.")
    if now.tzinfo is None:
        # Certificate dates are aware; comparing them with a naive time would raise, so naive means UTC.
        now = now.replace(tzinfo=UTC)
    shape = _pem_shape_problem(pem)
    if shape:
        return CheckResult.failed("ca-cert", shape, _PEM_FIX)
    try:
        certs = x509.load_pem_x509_certificates(pem.strip().encode("utf-8"))
        dated = [(c, _subject(c), c.not_valid_before_utc, c.not_valid_after_utc) for c in certs]
    except ValueError:
        fix = f"Copy it again; {_PEM_FIX[0].lower()}{_PEM_FIX[1:]}"
        return CheckResult.failed("ca-cert", f"The certificate is damaged or incomplete and cannot be read. {fix}", fix)
    invalid: list[str] = []
    for _cert, subject, before, after in dated:
        if after < now:
            invalid.append(f'"{subject}" expired on {_fmt_time(after)} (valid from {_fmt_time(before)})')
        elif before > now:
            invalid.append(f'"{subject}" is not valid before {_fmt_time(before)}')
    if invalid:
        fix = "Paste the storage's current CA certificate (ask whoever runs the storage for it)."
        return CheckResult.failed("ca-cert", f"The CA certificate cannot be used: {'; '.join(invalid)}. {fix}", fix)
    try:
        leaves = [subject for cert, subject, _before, _after in dated if not _is_ca(cert)]
    except ValueError:
        # Malformed extensions: readable dates but a broken body. Treat like damaged PEM.
        fix = f"Copy it again; {_PEM_FIX[0].lower()}{_PEM_FIX[1:]}"
        return CheckResult.failed("ca-cert", f"The certificate is damaged and cannot be read. {fix}", fix)
    if leaves:
        fix = "Paste the certificate of the CA that issued the storage's certificate (the last one of its chain)."
        names = ", ".join(f'"{s}"' for s in leaves)
        message = (
            f"{names} {'is not a CA certificate' if len(leaves) == 1 else 'are not CA certificates'} "
            "(no BasicConstraints CA=true): it looks like a server's own certificate, and TLS verification "
            f"needs the CA that issued it. {fix}"
        )
        return CheckResult.warning("ca-cert", message, fix)
    count = f"{len(dated)} CA certificate{'s' if len(dated) != 1 else ''}"
    details = ", ".join(f'"{subject}" (valid until {_fmt_time(after)})' for _c, subject, _b, after in dated)
    return CheckResult.passed("ca-cert", f"{count}: {details}.")


# ------------------------------------------------------------------------------------------------- role ARN

_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
# IAM paths allow any printable ASCII between slashes; empty segments ("//") are never what was meant.
_PATH_SEGMENT = re.compile(r"[\x21-\x2e\x30-\x7e]+")
_ROLE_ARN = re.compile(r"arn:(aws|aws-us-gov|aws-cn):iam::([0-9]{12}):role/(.+)")
_PATH_MAX = 512
_ROLE_EXAMPLE = "arn:aws:iam::123456789012:role/stowage-backups"
_ROLE_FIX = f"A role ARN looks like {_ROLE_EXAMPLE}; copy it from the role's page in the IAM console."
# Roles under these paths are managed by AWS and trust only an AWS service, never Stowage.
_AWS_MANAGED_PATHS = ("/aws-service-role/", "/aws-reserved/")
_QUOTES = "'\"`‘’“”"  # curly quotes arrive with ARNs pasted from documents


@dataclass(frozen=True, slots=True)
class RoleArn:
    """An IAM role ARN split into its parts; ``path`` is "/" or "/a/b/"."""

    partition: str
    account_id: str
    path: str
    name: str

    @property
    def arn(self) -> str:
        """The ARN again, in its canonical form."""
        return f"arn:{self.partition}:iam::{self.account_id}:role{self.path}{self.name}"


def parse_role_arn(arn: str) -> RoleArn | None:
    """Split a well-formed IAM role ARN into its parts; None when it is not one."""
    match = _ROLE_ARN.fullmatch(arn)
    if not match:
        return None
    *segments, name = match.group(3).split("/")
    if not _ROLE_NAME.fullmatch(name) or not all(_PATH_SEGMENT.fullmatch(s) for s in segments):
        return None
    path = "/" + "".join(f"{s}/" for s in segments)
    if len(path) > _PATH_MAX:
        return None
    return RoleArn(partition=match.group(1), account_id=match.group(2), path=path, name=name)


def _account_problem(account: str, after: str) -> _Problem | None:
    if _ACCOUNT_ID.fullmatch(account):
        return None
    if not account:
        return _Problem(
            "it has no account ID", f"Add the 12-digit ID of the account that owns it, right after {after}."
        )
    digits = re.sub(r"[\s-]", "", account)
    if _ACCOUNT_ID.fullmatch(digits):
        return _Problem(f'its account ID "{account}" has spaces or dashes', f"Write it as 12 digits: {digits}.")
    return _Problem(
        f'its account ID "{account}" is not 12 digits', "Account IDs are exactly 12 digits (keep leading zeros)."
    )


def _role_resource_problems(partition: str, account: str, resource: str, *, cluster: bool) -> list[_Problem]:
    kind, _, rest = resource.partition("/")
    account_shown = account if _ACCOUNT_ID.fullmatch(account) else "<account ID>"
    if kind == "user":
        return [
            _Problem(
                "it is the ARN of an IAM user, not of a role",
                (
                    "Enter the ARN of the role the cluster's agent runs as (for example its IRSA or node role), "
                    "or trust the whole cluster account by its ID instead."
                )
                if cluster
                else (
                    "Stowage assumes a role: create one with the trust policy shown here and enter its ARN "
                    "(or choose static keys to use the user's access keys)."
                ),
            )
        ]
    if kind == "instance-profile":
        guess = f"arn:{partition}:iam::{account_shown}:role/{rest.rsplit('/', 1)[-1] or '<role name>'}"
        return [
            _Problem(
                "it is the ARN of an instance profile, not of a role",
                f"Enter the ARN of the role inside the profile, usually {guess}.",
            )
        ]
    if kind == "policy":
        return [
            _Problem(
                "it is the ARN of a policy, not of a role",
                "Attach the policy to a role and enter the role's ARN (IAM console → Roles → your role).",
            )
        ]
    if kind == "group":
        return [_Problem("it is the ARN of an IAM group, not of a role", _ROLE_FIX)]
    if resource == "root":
        return [_Problem("it is the ARN of a whole account, not of a role", _ROLE_FIX)]
    if kind != "role":
        return [_Problem(f'it points to "{kind or resource}", not to a role', _ROLE_FIX)]
    *segments, name = rest.split("/")
    problems: list[_Problem] = []
    if not name:
        problems.append(_Problem("it has no role name after role/", _ROLE_FIX))
    elif len(name) > 64:
        problems.append(_Problem(f"its role name has {len(name)} characters (at most 64)", _ROLE_FIX))
    elif not _ROLE_NAME.fullmatch(name):
        bad = [ch for ch in name if not _ROLE_NAME.fullmatch(ch)]
        problems.append(
            _Problem(
                f"its role name has characters that are not allowed: {_char_names(bad)}",
                "Role names use letters, digits and + = , . @ _ - only; copy the ARN from the IAM console.",
            )
        )
    if not all(_PATH_SEGMENT.fullmatch(s) for s in segments) or len(rest) - len(name) + 1 > _PATH_MAX:
        problems.append(_Problem("its path (between role/ and the name) is not valid", _ROLE_FIX))
    return problems


def _role_arn_problems(value: str, *, cluster: bool = False) -> list[_Problem]:
    """Everything wrong with a role ARN, tailored to the usual mistakes (empty when it is fine)."""
    if not value.strip():
        return [_Problem("it is empty", f"Enter the ARN of the IAM role you created for Stowage. {_ROLE_FIX}")]
    cleaned = value.strip().strip(_QUOTES).strip()
    if cleaned != value:
        inner = _role_arn_problems(cleaned, cluster=cluster) if cleaned else []
        fix = f"Remove them and enter exactly {cleaned}." if not inner else "Remove them."
        return [_Problem("it has spaces or quotes around it", fix), *inner]
    role = parse_role_arn(value)
    if role is not None:
        if role.path.startswith(_AWS_MANAGED_PATHS):
            return [
                _Problem(
                    "it is a role managed by AWS (service-linked or SSO), which only AWS services can assume",
                    "Create a role for Stowage with the trust policy shown here and enter its ARN.",
                )
            ]
        return []
    if _ACCOUNT_ID.fullmatch(value):
        return [
            _Problem(
                "it is an account ID, not a role ARN",
                f"Enter the role's ARN: arn:aws:iam::{value}:role/<role name>.",
            )
        ]
    if not value.startswith("arn:"):
        if _ROLE_NAME.fullmatch(value):
            return [
                _Problem(
                    "it looks like a role name, not a role ARN",
                    f"Enter the role's full ARN, like arn:aws:iam::<account ID>:role/{value} (the role's page in "
                    "the IAM console shows it).",
                )
            ]
        return [_Problem("it is not an ARN (ARNs start with arn:)", _ROLE_FIX)]
    parts = value.split(":", 5)
    if len(parts) < 6:
        return [_Problem("it is incomplete", _ROLE_FIX)]
    _, partition, service, region, account, resource = parts
    problems: list[_Problem] = []
    if partition not in PARTITIONS:
        problems.append(
            _Problem(f'its partition "{partition}" is unknown', f"The partition after arn: is {_PARTITION_LIST}.")
        )
    if service == "sts" and resource.startswith("assumed-role/"):
        name = resource.split("/")[1] or "<role name>"
        shown_partition = partition if partition in PARTITIONS else "aws"
        shown_account = account if _ACCOUNT_ID.fullmatch(account) else "<account ID>"
        return [
            _Problem(
                "it is the ARN of an assumed-role session (what aws sts get-caller-identity prints), not of the role",
                f"Enter the role's own ARN: arn:{shown_partition}:iam::{shown_account}:role/{name} (add the "
                "role's path before the name if it has one).",
            )
        ]
    if service != "iam":
        return [*problems, _Problem(f'it belongs to the "{service}" service, not to IAM', _ROLE_FIX)]
    if region:
        problems.append(
            _Problem(
                f'it has a region ("{region}"), but IAM ARNs have none',
                "Leave the region empty: IAM ARNs have two colons in a row after iam (arn:aws:iam::123...).",
            )
        )
    account_problem = _account_problem(account, "iam::")
    if account_problem:
        problems.append(account_problem)
    problems.extend(_role_resource_problems(partition, account, resource, cluster=cluster))
    return problems or [_Problem("it is not a valid IAM role ARN", _ROLE_FIX)]


def check_role_arn(role_arn: str | None, *, region: str, provider: Provider) -> CheckResult:
    """Check the ARN of the role Stowage assumes, including that its partition matches the region's."""
    value = role_arn or ""
    problems = _role_arn_problems(value)
    if problems:
        message, remedy = _compose(f"Role ARN {_show(value)}" if value.strip() else "The role ARN", problems)
        return CheckResult.failed("role-arn", message, remedy)
    role = parse_role_arn(value)
    assert role is not None  # no problems means it parsed
    # Only a known region has a certain partition; an unknown one is reported by the region check.
    expected = REGION_PARTITION.get(region)
    if provider is Provider.AWS and expected is not None and role.partition != expected:
        fix = (
            f"Roles work only inside their partition: use a role from the {expected} partition "
            f"(arn:{expected}:iam::...), or correct the region."
        )
        message = (
            f'Role ARN "{value}" is in the {role.partition} partition, but region {region} is in {expected}. {fix}'
        )
        return CheckResult.failed("role-arn", message, fix)
    return CheckResult.passed("role-arn", f'Role "{role.name}" in account {role.account_id} ({role.partition}).')


def cluster_role_arn_problem(arn: str | None) -> str | None:
    """Why a cluster account's role ARN (multi-account trust) is not usable; None when absent or fine."""
    if arn is None or arn == "":
        return None
    problems = _role_arn_problems(arn, cluster=True)
    if not problems:
        return None
    return _compose(f"Cluster role ARN {_show(arn)}", problems)[0]


# ------------------------------------------------------------------------------------------ static credentials

ACCESS_KEY_MIN_LENGTH = 16
ACCESS_KEY_MAX_LENGTH = 128
_AWS_ACCESS_KEY = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}")
_KEYS_FIX = "Enter the access key ID and secret access key exactly as your storage issued them."
_SWAPPED = "The two fields may be swapped: the access key ID is the shorter one, the secret the longer one."


def _access_key_problems(access_key_id: str, secret_access_key: str, *, aws_format: bool) -> list[_Problem]:
    key, secret = access_key_id, secret_access_key
    problems: list[_Problem] = []
    if not key.strip():
        problems.append(_Problem("the access key ID is empty", _KEYS_FIX))
    else:
        if key != key.strip() or any(ch.isspace() or not ch.isprintable() for ch in key):
            problems.append(_Problem("the access key ID contains spaces", "Remove the spaces."))
        stripped = key.strip()
        if any(ch in "/+" for ch in stripped) and len(stripped) == 40:
            problems.append(_Problem("the access key ID looks like a secret access key", _SWAPPED))
        elif aws_format:
            if not all(ch in _ALNUM for ch in stripped):
                problems.append(_Problem("the access key ID has characters other than letters and digits", _KEYS_FIX))
            if not ACCESS_KEY_MIN_LENGTH <= len(stripped) <= ACCESS_KEY_MAX_LENGTH:
                problems.append(
                    _Problem(
                        f"the access key ID has {len(stripped)} characters (AWS keys have "
                        f"{ACCESS_KEY_MIN_LENGTH} to {ACCESS_KEY_MAX_LENGTH})",
                        _KEYS_FIX,
                    )
                )
            if stripped.startswith("ASIA"):
                problems.append(
                    _Problem(
                        "the access key ID is a temporary key (it starts with ASIA) that only works with its "
                        "session token",
                        "Use a long-term access key (starting with AKIA), or choose the STS method with a role.",
                    )
                )
        elif len(stripped) > ACCESS_KEY_MAX_LENGTH:
            problems.append(
                _Problem(
                    f"the access key ID has {len(stripped)} characters (at most {ACCESS_KEY_MAX_LENGTH})", _KEYS_FIX
                )
            )
    if not secret:
        problems.append(_Problem("the secret access key is empty", _KEYS_FIX))
    else:
        if secret != secret.strip():
            problems.append(_Problem("the secret access key has spaces at the start or end", "Remove the spaces."))
        if _AWS_ACCESS_KEY.fullmatch(secret.strip()):
            problems.append(_Problem("the secret access key looks like an access key ID", _SWAPPED))
    return problems


def access_key_problem(
    access_key_id: str | None, secret_access_key: str | None, *, aws_format: bool = True
) -> str | None:
    """Why static keys are not usable (never repeating the secret); None when they look right.

    ``aws_format`` applies AWS's key format (16–128 letters and digits, no temporary keys); S3-compatible
    storage and emulators issue keys in other shapes, so they only need non-empty values without spaces.
    """
    problems = _access_key_problems(access_key_id or "", secret_access_key or "", aws_format=aws_format)
    return _compose("These access keys", problems)[0] if problems else None


def check_static_credentials(credentials: StaticCredentials, *, aws_format: bool = True) -> CheckResult:
    """Check static access keys (id "credentials"); messages never contain the secret."""
    problems = _access_key_problems(credentials.access_key_id, credentials.secret_access_key, aws_format=aws_format)
    if problems:
        message, remedy = _compose("These access keys", problems)
        return CheckResult.failed("credentials", message, remedy)
    return CheckResult.passed("credentials", "Access key ID and secret access key are filled in.")


# ------------------------------------------------------------------------------------------------- all static


def static_checks(spec: LocationSpec, *, now: datetime) -> list[CheckResult]:
    """The checks that need no network: bucket-name, region, s3-url, ca-cert, role-arn (and credentials)."""
    url = (spec.s3_url or "").strip()
    virtual_host_tls = not spec.force_path_style and (not url or url.lower().startswith("https"))
    checks = [
        check_bucket_name(spec.bucket, virtual_host_tls=virtual_host_tls),
        check_region(spec.region, spec.provider),
        check_s3_url(spec.s3_url, force_path_style=spec.force_path_style, provider=spec.provider),
        check_ca_cert(spec.ca_cert, now=now),
    ]
    if isinstance(spec.credentials, StaticCredentials):
        checks.append(CheckResult.skipped("role-arn", "Uses static keys: no role to assume."))
        # AWS's key format is certain only against AWS itself; custom endpoints (emulators too) issue their own.
        aws_format = spec.provider is Provider.AWS and not url
        checks.append(check_static_credentials(spec.credentials, aws_format=aws_format))
    else:
        checks.append(check_role_arn(spec.credentials.role_arn, region=spec.region, provider=spec.provider))
    return checks


# ------------------------------------------------------------------------------------------ plain problems

NAME_MAX_LENGTH = 63
_LOCATION_CHARS = frozenset(string.ascii_letters + string.digits + " ._-")
_PROJECT_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")


def location_name_problem(name: str) -> str | None:
    """Why a location name is not allowed (1–63 letters, digits, spaces, . _ -); None when it is fine."""
    rules = (
        "Use 1 to 63 letters, digits, spaces, dots, underscores or hyphens, starting with a letter or digit, "
        'like "prod-backups".'
    )
    if not name.strip():
        return f"The location name is empty. {rules}"
    problems: list[str] = []
    if len(name) > NAME_MAX_LENGTH:
        problems.append(f"it has {len(name)} characters (at most {NAME_MAX_LENGTH})")
    if name != name.strip():
        problems.append("it has spaces at the start or end")
    bad = [ch for ch in name if ch not in _LOCATION_CHARS]
    if bad:
        problems.append(f"it has characters that are not allowed: {_char_names(bad)}")
    if name[0] in "._-":
        problems.append(f'it starts with "{name[0]}"')
    if not problems:
        return None
    return f"Location name {_show(name)} cannot be used: {'; '.join(problems)}. {rules}"


def _suggest_project_name(name: str) -> str | None:
    folded = unicodedata.normalize("NFKD", name.strip().lower())
    cleaned = re.sub(r"[^a-z0-9-]+", "-", "".join(ch for ch in folded if not unicodedata.combining(ch)))
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    cleaned = re.sub(r"^[^a-z]+", "", cleaned)[:NAME_MAX_LENGTH].rstrip("-")
    if not cleaned or cleaned == name:
        return None
    return cleaned


def project_name_problem(name: str) -> str | None:
    """Why a project name is not allowed (a DNS label: lowercase letters, digits, hyphens); None when fine."""
    rules = "Use 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
    if not name.strip():
        return f'The project name is empty. {rules[:-1]}, like "team-a".'
    problems: list[str] = []
    if len(name) > NAME_MAX_LENGTH:
        problems.append(f"it has {len(name)} characters (at most {NAME_MAX_LENGTH})")
    if any(ch in string.ascii_uppercase for ch in name):
        problems.append("it has uppercase letters")
    bad = [ch for ch in name if ch not in _PROJECT_CHARS and ch not in string.ascii_uppercase]
    if bad:
        problems.append(f"it has characters that are not allowed: {_char_names(bad)}")
    # A first character that is not allowed at all was reported above; digits and hyphens are allowed later on.
    if name[0] in _DIGITS or name[0] == "-":
        problems.append("it does not start with a letter")
    if name.endswith("-"):
        problems.append("it ends with a hyphen")
    if not problems:
        return None
    suggestion = _suggest_project_name(name)
    hint = f' Did you mean "{suggestion}"?' if suggestion else ""
    return f"Project name {_show(name)} cannot be used: {'; '.join(problems)}. {rules}{hint}"


PREFIX_MAX_LENGTH = 512
VALIDATION_MARKER = ".stowage-validation"


def prefix_problem(prefix: str | None) -> str | None:
    """Why a prefix (folder inside the bucket) is not usable; None when absent or fine."""
    if not prefix:
        return None
    problems: list[_Problem] = []
    if len(prefix) > PREFIX_MAX_LENGTH:
        problems.append(
            _Problem(f"it has {len(prefix)} characters (at most {PREFIX_MAX_LENGTH})", "Use a shorter prefix.")
        )
    if prefix.startswith("/"):
        better = prefix.lstrip("/")
        problems.append(
            _Problem("it starts with /", f"Remove the leading slash{f': {_show(better)}' if better else ''}.")
        )
    if "//" in prefix.lstrip("/"):
        problems.append(_Problem("it has // (an empty folder name)", "Use single slashes between folder names."))
    if any(segment in (".", "..") for segment in prefix.split("/")):
        problems.append(
            _Problem('it has a "." or ".." folder', 'Name folders plainly: "." and ".." are not folders in S3.')
        )
    controls = [ch for ch in prefix if unicodedata.category(ch) in ("Cc", "Cs")]
    if controls:
        problems.append(_Problem(f"it contains {_char_names(controls)}", "Remove invisible characters."))
    # The prefix goes into the permission policy's Resource ARN, where * ? and ${...} are wildcards and policy
    # variables: they would grant access to other prefixes than the one shown.
    wild = [ch for ch in prefix if ch in "*?$"]
    if wild:
        problems.append(
            _Problem(
                f"it contains {_char_names(wild)}, which IAM policies read as wildcards or variables",
                "Use letters, digits, hyphens, dots, underscores and slashes.",
            )
        )
    if prefix.rstrip("/").endswith(VALIDATION_MARKER):
        problems.append(
            _Problem(
                f'it ends with "{VALIDATION_MARKER}", a name Stowage uses for its checks', "Choose another prefix."
            )
        )
    if not problems:
        return None
    return _compose(f"Prefix {_show(prefix)}", problems)[0]


_KMS_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}")
_KMS_ALIAS = re.compile(r"alias/[A-Za-z0-9/_-]{1,250}")
_KMS_EXAMPLE = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
_KMS_FIX = f"A KMS key ARN looks like {_KMS_EXAMPLE}; copy it from the key's page in the KMS console."


def kms_key_arn_problem(arn: str | None, *, region: str) -> str | None:
    """Why a KMS key ARN is not usable for a bucket in ``region``; None when absent or fine."""
    if not arn:
        return None
    subject = f"KMS key ARN {_show(arn)}"
    partition = partition_for_region(region)
    cleaned = arn.strip().strip(_QUOTES).strip()
    if cleaned != arn:
        return _compose(subject, [_Problem("it has spaces or quotes around it", f"Remove them: {_show(cleaned)}.")])[0]
    if _KMS_KEY_ID.fullmatch(arn) or _KMS_ALIAS.fullmatch(arn):
        full = f"arn:{partition}:kms:{region or '<region>'}:<account ID>:{arn if '/' in arn else 'key/' + arn}"
        return _compose(subject, [_Problem("it is a key ID or alias, not an ARN", f"Enter the full ARN: {full}.")])[0]
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return _compose(subject, [_Problem("it is not an ARN", _KMS_FIX)])[0]
    _, key_partition, service, key_region, account, resource = parts
    problems: list[_Problem] = []
    if service != "kms":
        return _compose(subject, [_Problem(f'it belongs to the "{service}" service, not to KMS', _KMS_FIX)])[0]
    if key_partition not in PARTITIONS:
        problems.append(_Problem(f'its partition "{key_partition}" is unknown', f"Use {_PARTITION_LIST}."))
    if not key_region:
        problems.append(_Problem("it has no region", _KMS_FIX))
    account_problem = _account_problem(account, f"kms:{key_region}:")
    if account_problem:
        problems.append(account_problem)
    if not (resource.startswith("key/") and _KMS_KEY_ID.fullmatch(resource[4:])) and not _KMS_ALIAS.fullmatch(resource):
        problems.append(_Problem("it does not end with key/<key ID> or alias/<alias name>", _KMS_FIX))
    if key_partition in PARTITIONS and key_partition != partition:
        problems.append(
            _Problem(
                f"the key is in the {key_partition} partition but region {region} is in {partition}",
                f"Use a key from the {partition} partition.",
            )
        )
    elif key_region and region and key_region != region:
        problems.append(
            _Problem(
                f"the key is in region {key_region} but the bucket is in {region}",
                f"SSE-KMS needs a key in the bucket's region: pick a key in {region} (or a multi-Region replica "
                "key there).",
            )
        )
    if not problems:
        return None
    return _compose(subject, problems)[0]


def account_id_problem(account_id: str | None) -> str | None:
    """Why an AWS account ID is not usable (exactly 12 digits); None when absent or fine."""
    if not account_id:
        return None
    if _ACCOUNT_ID.fullmatch(account_id):
        return None
    subject = f"Account ID {_show(account_id)}"
    in_arn = re.match(r"arn:[^:]*:[^:]*:[^:]*:([0-9]{12})(?::|$)", account_id.strip())
    if in_arn:
        fix = f"Enter only the account ID: {in_arn.group(1)}."
        return _compose(subject, [_Problem("it is an ARN, not an account ID", fix)])[0]
    value = account_id.strip()
    digits = re.sub(r"[\s-]", "", value)
    if _ACCOUNT_ID.fullmatch(digits):
        problem = _Problem("it has spaces or dashes", f"Enter the 12 digits only: {digits}.")
    elif digits.isascii() and digits.isdigit():
        problem = _Problem(f"it has {len(digits)} digits", "Account IDs are exactly 12 digits: keep any leading zeros.")
    else:
        problem = _Problem("it is not 12 digits", "Account IDs are exactly 12 digits, like 123456789012.")
    return _compose(subject, [problem])[0]
