"""backups, their live logs, and backup schedules

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=False),
        sa.Column("location_name", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("schedule_name", sa.String(length=63), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("storage_prefix", sa.String(length=1024), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("items_backed_up", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("snapshots", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.Column("last_report_at", _TS, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("delete_attempts", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("completed_at", _TS, nullable=True),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("deletion_requested_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cluster_id", "name", name="uq_backups_cluster_name"),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.create_index("ix_backups_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_backups_cluster_created", ["cluster_id", "created_at"], unique=False)
        batch_op.create_index("ix_backups_phase", ["phase"], unique=False)
        batch_op.create_index("ix_backups_expires", ["expires_at"], unique=False)

    op.create_table(
        "backup_log_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("backup_id", sa.String(length=36), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["backup_id"], ["backups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_backup_log_lines_backup_seq", "backup_log_lines", ["backup_id", "id"])

    op.create_table(
        "backup_schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=True),
        sa.Column("backup_prefix", sa.String(length=63), nullable=False),
        sa.Column("schedule", sa.String(length=200), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("next_run_at", _TS, nullable=True),
        sa.Column("last_backup_name", sa.String(length=63), nullable=True),
        sa.Column("last_run_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cluster_id"),
    )
    with op.batch_alter_table("backup_schedules", schema=None) as batch_op:
        batch_op.create_index("ix_backup_schedules_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_backup_schedules_next_run_at", ["next_run_at"], unique=False)


def downgrade() -> None:
    op.drop_table("backup_schedules")
    op.drop_index("ix_backup_log_lines_backup_seq", table_name="backup_log_lines")
    op.drop_table("backup_log_lines")
    op.drop_table("backups")
