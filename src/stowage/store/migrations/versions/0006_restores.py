"""restores, their per-item results and live logs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "restores",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("destination_cluster_id", sa.String(length=36), nullable=False),
        sa.Column("source_cluster_id", sa.String(length=36), nullable=False),
        sa.Column("backup_id", sa.String(length=36), nullable=True),
        sa.Column("backup_name", sa.String(length=63), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=False),
        sa.Column("source_prefix", sa.String(length=1024), nullable=False),
        sa.Column("destination_prefix", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("items_restored", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.Column("last_report_at", _TS, nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("completed_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["destination_cluster_id"], ["clusters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("destination_cluster_id", "name", name="uq_restores_destination_name"),
    )
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.create_index("ix_restores_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_restores_destination_created", ["destination_cluster_id", "created_at"], unique=False)
        batch_op.create_index("ix_restores_phase", ["phase"], unique=False)
    op.create_table(
        "restore_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("restore_id", sa.String(length=36), nullable=False),
        sa.Column("api_version", sa.String(length=253), nullable=False),
        sa.Column("kind", sa.String(length=253), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=True),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["restore_id"], ["restores.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_restore_items_restore_seq", "restore_items", ["restore_id", "id"])
    op.create_table(
        "restore_log_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("restore_id", sa.String(length=36), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["restore_id"], ["restores.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_restore_log_lines_restore_seq", "restore_log_lines", ["restore_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_restore_log_lines_restore_seq", table_name="restore_log_lines")
    op.drop_table("restore_log_lines")
    op.drop_index("ix_restore_items_restore_seq", table_name="restore_items")
    op.drop_table("restore_items")
    op.drop_table("restores")
