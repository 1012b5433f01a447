"""The location form: from form fields to a LocationSpec, inline problems, and the validated-inputs seal."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from stowage import errors
from stowage.domain.checks import CheckStatus, ValidationReport
from stowage.domain.locations import AgentAccess, LocationSpec, Provider, StaticCredentials, StsCredentials
from stowage.domain.naming import (
    account_id_problem,
    cluster_role_arn_problem,
    kms_key_arn_problem,
    location_name_problem,
    prefix_problem,
    static_checks,
)
from stowage.store.tables import utcnow

# Bounds that keep a silly paste from becoming a slow request; the domain rules say what is actually allowed.
MAX_LENGTHS = {
    "name": 200,
    "bucket": 255,
    "region": 128,
    "s3_url": 2048,
    "ca_cert": 256 * 1024,
    "prefix": 1024,
    "kms_key_arn": 2048,
    "role_arn": 2048,
    "access_key_id": 256,
    "secret_access_key": 1024,
    "cluster_account_id": 64,
    "cluster_role_arn": 2048,
}
# Which form field each contract check is about, for inline errors.
CHECK_FIELDS = {
    "bucket-name": "bucket",
    "region": "region",
    "s3-url": "s3_url",
    "ca-cert": "ca_cert",
    "role-arn": "role_arn",
    "credentials": "access_key_id",
}
FIELD_LABELS = {
    "name": "Location Name",
    "provider": "Location Provider",
    "bucket": "S3 Bucket",
    "region": "Region",
    "s3_url": "S3 URL",
    "ca_cert": "Certificate",
    "prefix": "Prefix",
    "kmsKeyArn": "KMS key ARN",
    "kms_key_arn": "KMS key ARN",
    "role_arn": "Role ARN",
    "access_key_id": "Access key ID",
}


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    limit = MAX_LENGTHS.get(name)
    if limit is not None and len(value) > limit:
        raise errors.InvalidInput(
            f"{FIELD_LABELS.get(name, name)} is too long ({len(value)} characters; at most {limit}).", field=name
        )
    return value


def _flag(form: Mapping[str, Any], name: str) -> bool:
    return _text(form, name).lower() in {"on", "true", "1", "yes"}


_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def _choice(form: Mapping[str, Any], name: str, kind: type[_Choice], default: _Choice, problem: str) -> _Choice:
    raw = _text(form, name) or default.value
    try:
        return kind(raw)
    except ValueError as exc:
        raise errors.InvalidInput(problem, field=name) from exc


def provider_of(form: Mapping[str, Any]) -> Provider:
    """The provider chosen in the form."""
    return _choice(form, "provider", Provider, Provider.AWS, "Choose AWS or S3-compatible as the provider.")


def agent_access_of(form: Mapping[str, Any]) -> AgentAccess:
    """How agents reach the bucket, as chosen in the form (brokered unless direct is picked)."""
    return _choice(
        form, "agent_access", AgentAccess, AgentAccess.BROKERED, "Choose brokered or direct as the agent access."
    )


def credentials_of(form: Mapping[str, Any]) -> StsCredentials | StaticCredentials:
    """The credentials of the form's authentication step."""
    method = _text(form, "auth") or "sts"
    if method == "sts":
        return StsCredentials(role_arn=_text(form, "role_arn").strip())
    if method == "static":
        return StaticCredentials(
            access_key_id=_text(form, "access_key_id").strip(), secret_access_key=_text(form, "secret_access_key")
        )
    raise errors.InvalidInput("Choose STS or static keys as the authentication method.", field="auth")


def spec_from_form(form: Mapping[str, Any]) -> LocationSpec:
    """A LocationSpec from the wizard's (or the edit page's) fields; blank optional fields become None."""
    return LocationSpec(
        name=_text(form, "name").strip(),
        provider=provider_of(form),
        bucket=_text(form, "bucket").strip(),
        region=_text(form, "region").strip(),
        credentials=credentials_of(form),
        s3_url=_text(form, "s3_url").strip() or None,
        force_path_style=_flag(form, "force_path_style"),
        ca_cert=_text(form, "ca_cert").strip() or None,
        prefix=_text(form, "prefix").strip() or None,
        kms_key_arn=_text(form, "kms_key_arn").strip() or None,
        volume_snapshots=_flag(form, "volume_snapshots"),
        is_default=_flag(form, "is_default"),
        agent_access=agent_access_of(form),
    )


def cluster_trust_of(form: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The multi-account choice: (cluster account ID, cluster role ARN), at most one of them set."""
    choice = _text(form, "cluster_trust")
    if choice == "account":
        return _text(form, "cluster_account_id").strip() or None, None
    if choice == "role":
        return None, _text(form, "cluster_role_arn").strip() or None
    return None, None


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """What is wrong with one field, as shown under it."""

    level: str
    message: str


def field_problems(form: Mapping[str, Any]) -> dict[str, FieldProblem]:
    """Every field's problem by the same domain rules the API applies (static checks, name, prefix, KMS)."""
    problems: dict[str, FieldProblem] = {}
    try:
        spec = spec_from_form(form)
    except errors.InvalidInput as exc:
        return {exc.field or "form": FieldProblem("error", exc.message)}
    for check in static_checks(spec, now=utcnow()):
        field = CHECK_FIELDS.get(check.id)
        if field is None:
            continue
        if check.status is CheckStatus.FAILED:
            problems[field] = FieldProblem("error", check.message)
        elif check.status is CheckStatus.WARNING:
            problems[field] = FieldProblem("warning", check.message)
    for field, problem in (
        ("name", location_name_problem(spec.name)),
        ("prefix", prefix_problem(spec.prefix)),
        ("kms_key_arn", kms_key_arn_problem(spec.kms_key_arn, region=spec.region)),
    ):
        if problem:
            problems[field] = FieldProblem("error", problem)
    if spec.agent_access is AgentAccess.BROKERED and _text(form, "agent_access"):
        # Brokered agents never assume the role, so account A is not asked for (its fields are hidden then).
        return problems
    account, role = cluster_trust_of(form)
    if _text(form, "cluster_trust") == "account":
        problem = account_id_problem(account) if account else "Enter the 12-digit ID of the cluster's AWS account."
        if problem:
            problems["cluster_account_id"] = FieldProblem("error", problem)
    if _text(form, "cluster_trust") == "role":
        problem = cluster_role_arn_problem(role) if role else "Enter the ARN of the cluster's IAM role."
        if problem:
            problems["cluster_role_arn"] = FieldProblem("error", problem)
    return problems


def seal(key: bytes, session_id: str, spec: LocationSpec) -> str:
    """A MAC over exactly the inputs that were validated (for this session), so Create can require them."""
    # Whether it becomes the default does not change what validation checked.
    document = asdict(replace(spec, is_default=False))
    payload = json.dumps(document, sort_keys=True, default=str).encode()
    return hmac.new(key, session_id.encode() + b"\0" + payload, hashlib.sha256).hexdigest()


def seal_matches(key: bytes, session_id: str, spec: LocationSpec, sent: str) -> bool:
    """True when ``sent`` seals exactly these inputs."""
    return bool(sent) and hmac.compare_digest(seal(key, session_id, spec), sent)


def split_remedy(remedy: str) -> tuple[str, str | None]:
    """Split a remedy into its prose and an embedded JSON document (pretty-printed), if it has one."""
    start = remedy.find("{")
    end = remedy.rfind("}")
    if start < 0 or end <= start:
        return remedy, None
    try:
        document = json.loads(remedy[start : end + 1])
    except ValueError:
        return remedy, None
    prose = (remedy[:start] + " " + remedy[end + 1 :]).strip().rstrip(":").strip()
    return prose, json.dumps(document, indent=2)


def report_json(report: ValidationReport) -> dict[str, Any]:
    """The report for the wizard's script: contract fields plus the remedy split into prose and JSON."""
    data = report.to_dict()
    checks: list[dict[str, Any]] = []
    raw = data.get("checks")
    for check in raw if isinstance(raw, list) else []:
        prose, document = split_remedy(str(check.get("remedy", "")))
        checks.append({**check, "remedyText": prose, "remedyJson": document})
    return {"ok": report.ok, "durationMs": report.duration_ms, "summary": report.summary(), "checks": checks}


def edit_changes(form: Mapping[str, Any]) -> dict[str, Any]:
    """The edit page's fields as a partial update (the service decides whether validation must run again)."""
    spec = spec_from_form(form)
    credentials = spec.credentials
    changes: dict[str, Any] = {
        "name": spec.name,
        "provider": spec.provider,
        "bucket": spec.bucket,
        "region": spec.region,
        "s3_url": spec.s3_url,
        "force_path_style": spec.force_path_style,
        "ca_cert": spec.ca_cert,
        "prefix": spec.prefix,
        "kms_key_arn": spec.kms_key_arn,
        "volume_snapshots": spec.volume_snapshots,
        "agent_access": spec.agent_access,
        "credentials": credentials,
    }
    # No is_default here: the default moves with "Set as default", never as a side effect of an edit.
    return changes
