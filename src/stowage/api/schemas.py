"""Request and response models of API v1 (camelCase on the wire)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stowage.domain.access import Role
from stowage.domain.locations import (
    AgentAccess,
    LocationSpec,
    Provider,
    StaticCredentials,
    StsCredentials,
)
from stowage.services.locations import SavedLocation

# Generous bounds: they exist so that a huge body is a clear 422, not a slow death.
Name = Annotated[str, Field(max_length=200)]
ShortText = Annotated[str, Field(max_length=2048)]
Pem = Annotated[str, Field(max_length=256 * 1024)]


class CamelModel(BaseModel):
    """camelCase aliases, unknown fields refused (they are usually typos)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StsCredentialsIn(CamelModel):
    """Assume a role with the project's External ID."""

    type: Literal["sts"]
    role_arn: ShortText


class StaticCredentialsIn(CamelModel):
    """Long-lived access keys (write-only)."""

    type: Literal["static"]
    access_key_id: Annotated[str, Field(max_length=256)]
    secret_access_key: Annotated[str, Field(max_length=1024)]


CredentialsIn = Annotated[StsCredentialsIn | StaticCredentialsIn, Field(discriminator="type")]


class LocationSpecIn(CamelModel):
    """LocationSpec of the contract."""

    name: Name
    provider: Provider = Provider.AWS
    bucket: Annotated[str, Field(max_length=255)]
    region: Annotated[str, Field(max_length=128)]
    s3_url: ShortText | None = None
    force_path_style: bool = False
    ca_cert: Pem | None = None
    prefix: Annotated[str, Field(max_length=1024)] | None = None
    kms_key_arn: ShortText | None = None
    volume_snapshots: bool = True
    is_default: bool = False
    agent_access: AgentAccess = AgentAccess.BROKERED
    credentials: CredentialsIn

    def to_spec(self) -> LocationSpec:
        """The domain spec (empty optional strings become None)."""
        return LocationSpec(
            name=self.name.strip(),
            provider=self.provider,
            bucket=self.bucket.strip(),
            region=self.region.strip(),
            credentials=credentials_from(self.credentials),
            s3_url=(self.s3_url or "").strip() or None,
            force_path_style=self.force_path_style,
            ca_cert=(self.ca_cert or "").strip() or None,
            prefix=(self.prefix or "").strip() or None,
            kms_key_arn=(self.kms_key_arn or "").strip() or None,
            volume_snapshots=self.volume_snapshots,
            is_default=self.is_default,
            agent_access=self.agent_access,
        )


def credentials_from(value: StsCredentialsIn | StaticCredentialsIn) -> StsCredentials | StaticCredentials:
    """Domain credentials from the wire model."""
    if isinstance(value, StsCredentialsIn):
        return StsCredentials(role_arn=value.role_arn.strip())
    return StaticCredentials(access_key_id=value.access_key_id.strip(), secret_access_key=value.secret_access_key)


class LocationCreate(LocationSpecIn):
    """LocationSpec plus ``skipValidation`` (admins only)."""

    skip_validation: bool = False


class LocationUpdate(CamelModel):
    """A partial update; omitted fields keep their value."""

    name: Name | None = None
    provider: Provider | None = None
    bucket: Annotated[str, Field(max_length=255)] | None = None
    region: Annotated[str, Field(max_length=128)] | None = None
    s3_url: ShortText | None = None
    force_path_style: bool | None = None
    ca_cert: Pem | None = None
    prefix: Annotated[str, Field(max_length=1024)] | None = None
    kms_key_arn: ShortText | None = None
    volume_snapshots: bool | None = None
    is_default: bool | None = None
    agent_access: AgentAccess | None = None
    credentials: CredentialsIn | None = None
    revalidate_interval_minutes: int | None = None
    skip_validation: bool = False

    def changes(self) -> dict[str, Any]:
        """The fields the client actually sent, as domain values (snake_case)."""
        sent = self.model_fields_set - {"skip_validation"}
        out: dict[str, Any] = {}
        for field in sent:
            value = getattr(self, field)
            if field == "credentials":
                if value is not None:
                    out["credentials"] = credentials_from(value)
                continue
            # Enums (provider, agentAccess) are str subclasses too: stripping would turn them into plain text.
            if isinstance(value, str) and not isinstance(value, enum.Enum):
                value = value.strip() or None
            if value is None and field in {
                "name",
                "provider",
                "bucket",
                "region",
                "force_path_style",
                "volume_snapshots",
                "is_default",
                "agent_access",
            }:
                continue  # null for a required field means "unchanged"
            out[field] = value
        return out


class CredentialsOut(CamelModel):
    """Credentials as shown: the role ARN, or the access key id with a masked secret."""

    type: Literal["sts", "static"]
    role_arn: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


class LocationPublic(CamelModel):
    """Location of the contract: the spec without secrets plus state."""

    id: str
    project: str
    name: str
    provider: Provider
    bucket: str
    region: str
    s3_url: str | None
    force_path_style: bool
    ca_cert: str | None
    prefix: str | None
    kms_key_arn: str | None
    volume_snapshots: bool
    is_default: bool
    agent_access: AgentAccess
    credentials: CredentialsOut
    external_id: str | None
    status: str
    status_message: str
    last_validated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    revalidate_interval_minutes: int | None

    @classmethod
    def of(cls, saved: SavedLocation) -> LocationPublic:
        """Build from a saved location (the secret is already masked by the service)."""
        spec = saved.spec
        creds = spec.credentials
        out = (
            CredentialsOut(type="sts", role_arn=creds.role_arn)
            if isinstance(creds, StsCredentials)
            else CredentialsOut(
                type="static", access_key_id=creds.access_key_id, secret_access_key=creds.secret_access_key
            )
        )
        return cls(
            id=saved.id,
            project=saved.project,
            name=spec.name,
            provider=spec.provider,
            bucket=spec.bucket,
            region=spec.region,
            s3_url=spec.s3_url,
            force_path_style=spec.force_path_style,
            ca_cert=spec.ca_cert,
            prefix=spec.prefix,
            kms_key_arn=spec.kms_key_arn,
            volume_snapshots=spec.volume_snapshots,
            is_default=spec.is_default,
            agent_access=spec.agent_access,
            credentials=out,
            external_id=saved.external_id,
            status=saved.status.value,
            status_message=saved.status_message,
            last_validated_at=saved.last_validated_at,
            created_at=saved.created_at,
            updated_at=saved.updated_at,
            revalidate_interval_minutes=saved.revalidate_interval_minutes,
        )


class LocationList(CamelModel):
    """A page of locations."""

    items: list[LocationPublic]
    total: int


class CheckOut(CamelModel):
    """One check of a validation report."""

    id: str
    action: str
    status: Literal["passed", "failed", "warning", "skipped"]
    message: str
    remedy: str


class ValidationReportOut(CamelModel):
    """ValidationReport of the contract."""

    ok: bool
    duration_ms: int
    checks: list[CheckOut]


class ValidationEntryOut(CamelModel):
    """A stored validation report."""

    id: str
    trigger: str
    created_at: datetime
    report: ValidationReportOut


class RevalidateOut(CamelModel):
    """The location after a re-validation, and the report."""

    location: LocationPublic
    report: ValidationReportOut


class ProjectIn(CamelModel):
    """A new project."""

    name: Name


class ProjectOut(CamelModel):
    """A project."""

    id: str
    name: str
    external_id: str
    created_at: datetime


class StsOut(CamelModel):
    """The STS panel of a project."""

    account_id: str
    partition: str
    principal_arn: str
    external_id: str


class RotateOut(CamelModel):
    """The project after rotating its External ID, with the consequence spelled out."""

    project: ProjectOut
    warning: str


class TokenIn(CamelModel):
    """A new API token."""

    name: Name
    role: Role = Role.VIEWER


class TokenOut(CamelModel):
    """An API token without its secret."""

    id: str
    name: str
    role: Role
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """A new token: ``token`` is shown this once."""

    token: str


class ErrorOut(BaseModel):
    """Every error answer."""

    code: str
    message: str
    details: dict[str, Any] | None = None
