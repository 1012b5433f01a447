"""clusters and the credential issuance audit

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("cloud_account_id", sa.String(length=12), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hint", sa.String(length=16), nullable=False),
        sa.Column("token_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_clusters_project_name"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clusters_project_id"), ["project_id"], unique=False)

    op.create_table(
        "credential_issuances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("cluster_name", sa.String(length=63), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=False),
        sa.Column("location_name", sa.String(length=63), nullable=False),
        sa.Column("access_key_id_prefix", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("credential_issuances", schema=None) as batch_op:
        batch_op.create_index("ix_issuances_project_issued", ["project_id", "issued_at"], unique=False)
        batch_op.create_index("ix_issuances_cluster_issued", ["cluster_id", "issued_at"], unique=False)
        batch_op.create_index("ix_issuances_location_issued", ["location_id", "issued_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("credential_issuances", schema=None) as batch_op:
        batch_op.drop_index("ix_issuances_location_issued")
        batch_op.drop_index("ix_issuances_cluster_issued")
        batch_op.drop_index("ix_issuances_project_issued")
    op.drop_table("credential_issuances")
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clusters_project_id"))
    op.drop_table("clusters")
