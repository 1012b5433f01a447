"""workspaces: groups of clusters, their backups, restores and schedules

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_workspaces_project_name"),
    )
    op.create_index("ix_workspaces_project_id", "workspaces", ["project_id"])
    op.create_table(
        "workspace_clusters",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("added_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "cluster_id"),
    )
    op.create_table(
        "workspace_backups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("schedule_name", sa.String(length=63), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_workspace_backups_name"),
    )
    op.create_index("ix_workspace_backups_workspace_id", "workspace_backups", ["workspace_id"])
    op.create_table(
        "workspace_restores",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_backup_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workspace_restores_workspace_id", "workspace_restores", ["workspace_id"])
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workspace_backup_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_backups_workspace_backup_id", ["workspace_backup_id"], unique=False)
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workspace_restore_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_restores_workspace_restore_id", ["workspace_restore_id"], unique=False)
    with op.batch_alter_table("backup_schedules", schema=None) as batch_op:
        batch_op.alter_column("cluster_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column("workspace_id", sa.String(length=36), nullable=True))
        batch_op.create_unique_constraint("uq_backup_schedules_workspace_id", ["workspace_id"])
        batch_op.create_foreign_key(
            "fk_backup_schedules_workspace_id", "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("backup_schedules", schema=None) as batch_op:
        batch_op.drop_constraint("fk_backup_schedules_workspace_id", type_="foreignkey")
        batch_op.drop_constraint("uq_backup_schedules_workspace_id", type_="unique")
        batch_op.drop_column("workspace_id")
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.drop_index("ix_restores_workspace_restore_id")
        batch_op.drop_column("workspace_restore_id")
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_index("ix_backups_workspace_backup_id")
        batch_op.drop_column("workspace_backup_id")
    op.drop_table("workspace_restores")
    op.drop_table("workspace_backups")
    op.drop_table("workspace_clusters")
    op.drop_table("workspaces")
