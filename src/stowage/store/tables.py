"""Database tables (SQLAlchemy 2 declarative models)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    """A new random id (UUID4 as text)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Base of all tables."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Tenant(Base):
    """An organisation using Stowage."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    """A project of a tenant; owns backup locations and an External ID."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_projects_tenant_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    external_id: Mapped[str] = mapped_column(String(128))
    external_id_rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token with a role in one tenant; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Location(Base):
    """A saved backup location."""

    __tablename__ = "locations"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_locations_project_name"),
        Index("ix_locations_project_created", "project_id", "created_at"),
        Index("ix_locations_due", "next_validation_at"),
        # At most one default per project, enforced by the database itself.
        Index(
            "uq_locations_one_default",
            "project_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    provider: Mapped[str] = mapped_column(String(16))
    bucket: Mapped[str] = mapped_column(String(63))
    region: Mapped[str] = mapped_column(String(64))
    s3_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    force_path_style: Mapped[bool] = mapped_column(Boolean, default=False)
    ca_cert: Mapped[str | None] = mapped_column(Text, default=None)
    prefix: Mapped[str | None] = mapped_column(String(512), default=None)
    kms_key_arn: Mapped[str | None] = mapped_column(String(2048), default=None)
    volume_snapshots: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    agent_access: Mapped[str] = mapped_column(String(16), default="brokered")
    credential_type: Mapped[str] = mapped_column(String(16))
    role_arn: Mapped[str | None] = mapped_column(String(2048), default=None)
    access_key_id: Mapped[str | None] = mapped_column(String(128), default=None)
    # Fernet token of the secret access key; never returned by the API.
    secret_access_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    status: Mapped[str] = mapped_column(String(16), default="Unverified")
    status_message: Mapped[str] = mapped_column(Text, default="")
    last_validated_at: Mapped[datetime | None] = mapped_column(default=None)
    revalidate_interval_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    next_validation_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ValidationRecord(Base):
    """One stored validation report of a location (the last 20 are kept)."""

    __tablename__ = "validations"
    __table_args__ = (Index("ix_validations_location_created", "location_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    ok: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who signs in to the web UI; only an argon2 hash of the password is stored."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # Stored lower-cased so sign-in is case-insensitive and uniqueness cannot be dodged by case.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class Cluster(Base):
    """A Kubernetes cluster of a project whose agent talks to the control plane with an agent token."""

    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_clusters_project_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    cloud_account_id: Mapped[str | None] = mapped_column(String(12), default=None)
    region: Mapped[str | None] = mapped_column(String(64), default=None)
    # Only the SHA-256 of the agent token is kept; the token itself is shown once.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(16))
    token_created_at: Mapped[datetime] = mapped_column(default=utcnow)
    token_revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    agent_version: Mapped[str | None] = mapped_column(String(64), default=None)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CredentialIssuance(Base):
    """Audit: one set of temporary credentials issued by STS for a cluster and a location (never the secret).

    No foreign keys to clusters or locations: the audit outlives them (names are copied for that reason).
    """

    __tablename__ = "credential_issuances"
    __table_args__ = (
        Index("ix_issuances_project_issued", "project_id", "issued_at"),
        Index("ix_issuances_cluster_issued", "cluster_id", "issued_at"),
        Index("ix_issuances_location_issued", "location_id", "issued_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    cluster_id: Mapped[str] = mapped_column(String(36))
    cluster_name: Mapped[str] = mapped_column(String(63))
    location_id: Mapped[str] = mapped_column(String(36))
    location_name: Mapped[str] = mapped_column(String(63))
    access_key_id_prefix: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """One failed web sign-in, so that every server process sharing the database throttles the same tries.

    The key (email and client address) is stored only as a SHA-256 digest; ``failed_at`` is epoch seconds.
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key_hash", "failed_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[float] = mapped_column(Float, index=True)


class Backup(Base):
    """A backup of one cluster into one location: the request, its phase and what the agent reported.

    ``lease_expires_at`` is the job lease of the agent running it: a backup InProgress whose lease ran out
    lost its agent and is failed by the control plane.
    """

    __tablename__ = "backups"
    __table_args__ = (
        # Also what makes a scheduled backup exactly-once across several servers: they compute the same name.
        UniqueConstraint("cluster_id", "name", name="uq_backups_cluster_name"),
        Index("ix_backups_cluster_created", "cluster_id", "created_at"),
        Index("ix_backups_phase", "phase"),
        Index("ix_backups_expires", "expires_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    # No foreign key: a backup outlives nothing, but its objects stay in the bucket if the location is removed.
    location_id: Mapped[str] = mapped_column(String(36))
    location_name: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    schedule_name: Mapped[str | None] = mapped_column(String(63), default=None)
    origin: Mapped[str] = mapped_column(String(16), default="stowage")
    storage_prefix: Mapped[str] = mapped_column(String(1024))
    phase: Mapped[str] = mapped_column(String(16), default="New")
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    total_items: Mapped[int] = mapped_column(Integer, default=0)
    items_backed_up: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    snapshots: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_report_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime] = mapped_column()
    deletion_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set when the backup is one cluster's part of a workspace backup.
    workspace_backup_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)


class BackupLogLine(Base):
    """One line of a backup's live log, as the agent reported it (kept until the backup is deleted)."""

    __tablename__ = "backup_log_lines"
    __table_args__ = (Index("ix_backup_log_lines_backup_seq", "backup_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    backup_id: Mapped[str] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column()
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class BackupSchedule(Base):
    """A backup schedule of one cluster or of one workspace: a cron expression and the request of each backup."""

    __tablename__ = "backup_schedules"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    # Exactly one of the two is set.
    cluster_id: Mapped[str | None] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), unique=True)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), unique=True, default=None
    )
    location_id: Mapped[str | None] = mapped_column(String(36), default=None)
    backup_prefix: Mapped[str] = mapped_column(String(63))
    schedule: Mapped[str] = mapped_column(String(200))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    next_run_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    last_backup_name: Mapped[str | None] = mapped_column(String(63), default=None)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Restore(Base):
    """A restore of one backup into a destination cluster of the same project (or a dry-run preview of it)."""

    __tablename__ = "restores"
    __table_args__ = (
        UniqueConstraint("destination_cluster_id", "name", name="uq_restores_destination_name"),
        Index("ix_restores_destination_created", "destination_cluster_id", "created_at"),
        Index("ix_restores_phase", "phase"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    destination_cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    # The backup may be deleted later; the restore's record keeps what it came from.
    source_cluster_id: Mapped[str] = mapped_column(String(36))
    backup_id: Mapped[str | None] = mapped_column(String(36), default=None)
    backup_name: Mapped[str] = mapped_column(String(63))
    location_id: Mapped[str] = mapped_column(String(36))
    source_prefix: Mapped[str] = mapped_column(String(1024))
    destination_prefix: Mapped[str] = mapped_column(String(1024))
    name: Mapped[str] = mapped_column(String(63))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    phase: Mapped[str] = mapped_column(String(16), default="New")
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    total_items: Mapped[int] = mapped_column(Integer, default=0)
    items_restored: Mapped[int] = mapped_column(Integer, default=0)
    # Counts per item action (created, updated, skipped, failed; create, skip, conflict in previews).
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Problems found ahead (previews): missing CRDs, StorageClasses, NodePort clashes, ...
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_report_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    workspace_restore_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)


class RestoreItem(Base):
    """What happened (or would happen, in a preview) to one item of a restore."""

    __tablename__ = "restore_items"
    __table_args__ = (Index("ix_restore_items_restore_seq", "restore_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    restore_id: Mapped[str] = mapped_column(ForeignKey("restores.id", ondelete="CASCADE"))
    api_version: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(253))
    namespace: Mapped[str | None] = mapped_column(String(253), default=None)
    name: Mapped[str] = mapped_column(String(253))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, default=None)


class RestoreLogLine(Base):
    """One line of a restore's live log."""

    __tablename__ = "restore_log_lines"
    __table_args__ = (Index("ix_restore_log_lines_restore_seq", "restore_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    restore_id: Mapped[str] = mapped_column(ForeignKey("restores.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column()
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class Workspace(Base):
    """A named group of clusters of one project, backed up and restored together."""

    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_workspaces_project_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceCluster(Base):
    """Membership of a cluster in a workspace."""

    __tablename__ = "workspace_clusters"
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceBackup(Base):
    """One request that backed up several clusters of a workspace (each cluster's backup is a Backup row)."""

    __tablename__ = "workspace_backups"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_workspace_backups_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Clusters left out, each with the reason (e.g. its agent is disconnected): reported, never silent.
    skipped: Mapped[list[Any]] = mapped_column(JSON, default=list)
    schedule_name: Mapped[str | None] = mapped_column(String(63), default=None)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceRestore(Base):
    """One request that restored a workspace backup on the clusters still in the workspace."""

    __tablename__ = "workspace_restores"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    workspace_backup_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(63))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    skipped: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
