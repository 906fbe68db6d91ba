"""pipeline: study states, jobs and their instances, outputs, deliveries and their items

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("analysis_id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("outputs", sa.String(), nullable=False),
        sa.Column("destinations", sa.String(), nullable=False),
        sa.Column("model_ref", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("processed_by", sa.String(), nullable=True),
        sa.Column("model_name", sa.String(), nullable=True),
        sa.Column("model_version", sa.String(), nullable=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("model_backend", sa.String(), nullable=True),
        sa.Column("analysis_seconds", sa.Float(), nullable=True),
        sa.Column("findings_present", sa.Integer(), nullable=True),
        sa.Column("predecessor_job_pk", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["predecessor_job_pk"], ["jobs.id"], name=op.f("fk_jobs_predecessor_job_pk_jobs")),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"], name=op.f("fk_jobs_study_pk_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    op.create_index("ix_jobs_claim", "jobs", ["status", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_jobs_study_pk"), "jobs", ["study_pk"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], name=op.f("fk_deliveries_job_pk_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("job_pk", "destination", name="uq_deliveries_job_destination"),
    )
    op.create_index("ix_deliveries_claim", "deliveries", ["status", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_deliveries_job_pk"), "deliveries", ["job_pk"], unique=False)

    op.create_table(
        "outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("sop_class_uid", sa.String(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(), nullable=False),
        sa.Column("series_instance_uid", sa.String(), nullable=False),
        sa.Column("file_path", sa.String(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], name=op.f("fk_outputs_job_pk_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outputs")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_outputs_sop_instance_uid")),
    )
    op.create_index(op.f("ix_outputs_job_pk"), "outputs", ["job_pk"], unique=False)

    op.create_table(
        "study_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("routing", sa.String(), nullable=True),
        sa.Column("completed_through", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completion_reason", sa.String(), nullable=True),
        sa.Column("completions", sa.Integer(), nullable=False),
        sa.Column("instance_set_sha256", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("job_pk", sa.Integer(), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], name=op.f("fk_study_states_job_pk_jobs")),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"], name=op.f("fk_study_states_study_pk_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_states")),
        sa.UniqueConstraint("study_pk", name=op.f("uq_study_states_study_pk")),
    )
    op.create_index(op.f("ix_study_states_completed_at"), "study_states", ["completed_at"], unique=False)

    op.create_table(
        "delivery_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_pk", sa.Integer(), nullable=False),
        sa.Column("output_pk", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_pk"], ["deliveries.id"], name=op.f("fk_delivery_items_delivery_pk_deliveries")
        ),
        sa.ForeignKeyConstraint(["output_pk"], ["outputs.id"], name=op.f("fk_delivery_items_output_pk_outputs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_items")),
        sa.UniqueConstraint("delivery_pk", "output_pk", name="uq_delivery_items_delivery_output"),
    )
    op.create_index(op.f("ix_delivery_items_delivery_pk"), "delivery_items", ["delivery_pk"], unique=False)
    op.create_index(op.f("ix_delivery_items_output_pk"), "delivery_items", ["output_pk"], unique=False)

    op.create_table(
        "job_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("instance_pk", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("file_path", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["instance_pk"], ["instances.id"], name=op.f("fk_job_instances_instance_pk_instances")),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], name=op.f("fk_job_instances_job_pk_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_instances")),
    )
    op.create_index(op.f("ix_job_instances_instance_pk"), "job_instances", ["instance_pk"], unique=False)
    op.create_index(op.f("ix_job_instances_job_pk"), "job_instances", ["job_pk"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_job_instances_job_pk"), table_name="job_instances")
    op.drop_index(op.f("ix_job_instances_instance_pk"), table_name="job_instances")

    op.drop_table("job_instances")
    op.drop_index(op.f("ix_delivery_items_output_pk"), table_name="delivery_items")
    op.drop_index(op.f("ix_delivery_items_delivery_pk"), table_name="delivery_items")

    op.drop_table("delivery_items")
    op.drop_index(op.f("ix_study_states_completed_at"), table_name="study_states")

    op.drop_table("study_states")
    op.drop_index(op.f("ix_outputs_job_pk"), table_name="outputs")

    op.drop_table("outputs")
    op.drop_index(op.f("ix_deliveries_job_pk"), table_name="deliveries")
    op.drop_index("ix_deliveries_claim", table_name="deliveries")

    op.drop_table("deliveries")
    op.drop_index(op.f("ix_jobs_study_pk"), table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")

    op.drop_table("jobs")
