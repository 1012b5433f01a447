"""Check results and validation reports: a failed probe is data, not an exception."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class CheckStatus(enum.StrEnum):
    """Outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"
    WARNING = "warning"
    SKIPPED = "skipped"


# Stable check ids of the API contract; the IAM-action checks use the action itself as id.
STATIC_CHECK_IDS = ("bucket-name", "region", "s3-url", "ca-cert", "role-arn")
S3_ACTIONS = (
    "s3:ListBucket",
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
)
EC2_ACTIONS = (
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateVolume",
    "ec2:CreateTags",
    "ec2:DeleteSnapshot",
)
LIVE_CHECK_IDS = ("assume-role", "external-id-required", "bucket-region", *S3_ACTIONS, *EC2_ACTIONS, "kms")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check: what was tried, how it went, and how to fix it."""

    id: str
    status: CheckStatus
    message: str
    action: str = ""
    remedy: str = ""

    @classmethod
    def passed(cls, id: str, message: str, *, action: str = "") -> CheckResult:
        """A passing check."""
        return cls(id=id, status=CheckStatus.PASSED, message=message, action=action)

    @classmethod
    def failed(cls, id: str, message: str, remedy: str, *, action: str = "") -> CheckResult:
        """A failing check; the remedy says exactly how to fix it."""
        return cls(id=id, status=CheckStatus.FAILED, message=message, action=action, remedy=remedy)

    @classmethod
    def warning(cls, id: str, message: str, remedy: str = "", *, action: str = "") -> CheckResult:
        """A check that passed with a caveat worth reading."""
        return cls(id=id, status=CheckStatus.WARNING, message=message, action=action, remedy=remedy)

    @classmethod
    def skipped(cls, id: str, message: str, *, action: str = "") -> CheckResult:
        """A check that did not apply or could not run because an earlier one failed."""
        return cls(id=id, status=CheckStatus.SKIPPED, message=message, action=action)

    @property
    def is_failure(self) -> bool:
        """True when this check failed."""
        return self.status is CheckStatus.FAILED


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome of validating a location: ``ok`` only when no check failed."""

    checks: tuple[CheckResult, ...]
    duration_ms: int = 0
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", not any(c.is_failure for c in self.checks))

    @classmethod
    def of(cls, checks: Iterable[CheckResult], duration_ms: int = 0) -> ValidationReport:
        """Build a report from any iterable of checks."""
        return cls(checks=tuple(checks), duration_ms=duration_ms)

    def failures(self) -> list[CheckResult]:
        """The failed checks, in report order."""
        return [c for c in self.checks if c.is_failure]

    def summary(self) -> str:
        """One line for a location's status message."""
        failed = self.failures()
        if not failed:
            return f"All {len(self.checks)} checks passed."
        first = failed[0]
        more = f" (+{len(failed) - 1} more failed)" if len(failed) > 1 else ""
        return f"{first.id}: {first.message}{more}"

    def to_dict(self) -> dict[str, object]:
        """The API shape of the report (camelCase, as in the contract)."""
        return {
            "ok": self.ok,
            "durationMs": self.duration_ms,
            "checks": [
                {
                    "id": c.id,
                    "action": c.action,
                    "status": c.status.value,
                    "message": c.message,
                    "remedy": c.remedy,
                }
                for c in self.checks
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ValidationReport:
        """Rebuild a report stored with ``to_dict``."""
        raw = data.get("checks", [])
        items: list[dict[str, object]] = list(raw) if isinstance(raw, list) else []
        checks = [
            CheckResult(
                id=str(c["id"]),
                status=CheckStatus(str(c["status"])),
                message=str(c.get("message", "")),
                action=str(c.get("action", "")),
                remedy=str(c.get("remedy", "")),
            )
            for c in items
        ]
        duration = data.get("durationMs", 0)
        return cls.of(checks, int(duration) if isinstance(duration, int) else 0)
