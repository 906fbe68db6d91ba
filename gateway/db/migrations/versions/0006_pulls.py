"""pulls: studies queried and retrieved from a source PACS, one item per study

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pulls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("found", sa.Integer(), nullable=True),
        sa.Column("retrieved", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pulls")),
    )
    op.create_index(op.f("ix_pulls_state"), "pulls", ["state"])
    op.create_table(
        "pull_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pull_pk", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("study_instance_uid", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("failed_instances", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["pull_pk"], ["pulls.id"], name=op.f("fk_pull_items_pull_pk_pulls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_items")),
        sa.UniqueConstraint("pull_pk", "study_instance_uid", name="uq_pull_items_pull_study"),
    )
    op.create_index(op.f("ix_pull_items_pull_pk"), "pull_items", ["pull_pk"])
    op.create_index(op.f("ix_pull_items_source"), "pull_items", ["source"])
    op.create_index(op.f("ix_pull_items_state"), "pull_items", ["state"])
    op.create_index(op.f("ix_pull_items_started_at"), "pull_items", ["started_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_pull_items_started_at"), table_name="pull_items")
    op.drop_index(op.f("ix_pull_items_state"), table_name="pull_items")
    op.drop_index(op.f("ix_pull_items_source"), table_name="pull_items")
    op.drop_index(op.f("ix_pull_items_pull_pk"), table_name="pull_items")
    op.drop_table("pull_items")
    op.drop_index(op.f("ix_pulls_state"), table_name="pulls")
    op.drop_table("pulls")
