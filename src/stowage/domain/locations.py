"""Backup locations: the spec a user types and the values derived from it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Provider(enum.StrEnum):
    """Where the bucket lives."""

    AWS = "aws"
    S3_COMPATIBLE = "s3-compatible"


class LocationStatus(enum.StrEnum):
    """Availability of a saved location, as Velero's BackupStorageLocation phases."""

    AVAILABLE = "Available"
    UNAVAILABLE = "Unavailable"
    UNVERIFIED = "Unverified"


class AgentAccess(enum.StrEnum):
    """How agents reach the bucket: credentials vended by the control plane, or their own assume-role."""

    BROKERED = "brokered"
    DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class StsCredentials:
    """Reach the bucket by assuming a customer role with the project's External ID."""

    role_arn: str
    type: str = field(default="sts", init=False)


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """Long-lived access keys; the secret never appears in repr or logs."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    type: str = field(default="static", init=False)

    @property
    def masked_secret(self) -> str:
        """The secret as shown to users: only its last four characters."""
        return mask_secret(self.secret_access_key)


Credentials = StsCredentials | StaticCredentials


def mask_secret(secret: str) -> str:
    """Hide all but the last four characters of a secret."""
    if len(secret) <= 4:
        return "****"
    return "*" * 12 + secret[-4:]


@dataclass(frozen=True, slots=True)
class LocationSpec:
    """Everything a user types to describe a backup location."""

    name: str
    provider: Provider
    bucket: str
    region: str
    credentials: Credentials
    s3_url: str | None = None
    force_path_style: bool = False
    ca_cert: str | None = None
    prefix: str | None = None
    kms_key_arn: str | None = None
    volume_snapshots: bool = True
    is_default: bool = False
    agent_access: AgentAccess = AgentAccess.BROKERED

    @property
    def normalized_prefix(self) -> str:
        """The prefix without leading/trailing slashes ('' when none)."""
        return (self.prefix or "").strip("/")

    def object_key(self, *parts: str) -> str:
        """A key under the location's prefix."""
        joined = "/".join(p.strip("/") for p in parts if p)
        return f"{self.normalized_prefix}/{joined}" if self.normalized_prefix else joined

    @property
    def uses_sts(self) -> bool:
        """True when the location is reached by assuming a role."""
        return isinstance(self.credentials, StsCredentials)

    @property
    def ec2_checks_apply(self) -> bool:
        """EC2 snapshot permissions matter only for AWS with volume snapshots on."""
        return self.volume_snapshots and self.provider is Provider.AWS


def role_session_name(project: str, location: str) -> str:
    """A traceable RoleSessionName: ``stowage-<project>-<location>``, valid characters, <= 64."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@-_")
    raw = f"stowage-{project}-{location}"
    cleaned = "".join(ch if ch in allowed else "-" for ch in raw)
    return cleaned[:64]
