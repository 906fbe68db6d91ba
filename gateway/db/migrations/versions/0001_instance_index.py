"""instance index: patients, studies, series, instances, replacements

Revision ID: 0001
Revises: (none)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(), nullable=False),
        sa.Column("patient_name", sa.String(), nullable=True),
        sa.Column("patient_birth_date", sa.String(), nullable=True),
        sa.Column("patient_sex", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patients_identity"),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(), nullable=False),
        sa.Column("patient_pk", sa.Integer(), nullable=False),
        sa.Column("study_date", sa.String(), nullable=True),
        sa.Column("study_time", sa.String(), nullable=True),
        sa.Column("accession_number", sa.String(), nullable=True),
        sa.Column("study_id", sa.String(), nullable=True),
        sa.Column("study_description", sa.String(), nullable=True),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_pk"], ["patients.id"], name=op.f("fk_studies_patient_pk_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_studies_study_instance_uid")),
    )
    op.create_index(op.f("ix_studies_last_received_at"), "studies", ["last_received_at"], unique=False)
    op.create_index(op.f("ix_studies_patient_pk"), "studies", ["patient_pk"], unique=False)

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(), nullable=True),
        sa.Column("body_part_examined", sa.String(), nullable=True),
        sa.Column("series_description", sa.String(), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("laterality", sa.String(), nullable=True),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"], name=op.f("fk_series_study_pk_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("series_instance_uid", name=op.f("uq_series_series_instance_uid")),
    )
    op.create_index(op.f("ix_series_study_pk"), "series", ["study_pk"], unique=False)

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(), nullable=False),
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("sop_class_uid", sa.String(), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("image_type", sa.String(), nullable=True),
        sa.Column("view_position", sa.String(), nullable=True),
        sa.Column("image_laterality", sa.String(), nullable=True),
        sa.Column("patient_orientation", sa.String(), nullable=True),
        sa.Column("photometric_interpretation", sa.String(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(), nullable=False),
        sa.Column("calling_ae_title", sa.String(), nullable=False),
        sa.Column("called_ae_title", sa.String(), nullable=False),
        sa.Column("peer_address", sa.String(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("file_path", sa.String(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["series_pk"], ["series.id"], name=op.f("fk_instances_series_pk_series")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_instances_sop_instance_uid")),
    )
    op.create_index("ix_instances_received_at", "instances", ["received_at"], unique=False)
    op.create_index(op.f("ix_instances_series_pk"), "instances", ["series_pk"], unique=False)

    op.create_table(
        "instance_replacements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_pk", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_series_instance_uid", sa.String(), nullable=False),
        sa.Column("previous_content_sha256", sa.String(length=64), nullable=False),
        sa.Column("previous_file_size", sa.BigInteger(), nullable=False),
        sa.Column("previous_transfer_syntax_uid", sa.String(), nullable=False),
        sa.Column("previous_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("calling_ae_title", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_pk"], ["instances.id"], name=op.f("fk_instance_replacements_instance_pk_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_replacements")),
    )
    op.create_index(
        op.f("ix_instance_replacements_instance_pk"), "instance_replacements", ["instance_pk"], unique=False
    )
    op.create_index(
        op.f("ix_instance_replacements_sop_instance_uid"), "instance_replacements", ["sop_instance_uid"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_instance_replacements_sop_instance_uid"), table_name="instance_replacements")
    op.drop_index(op.f("ix_instance_replacements_instance_pk"), table_name="instance_replacements")

    op.drop_table("instance_replacements")
    op.drop_index(op.f("ix_instances_series_pk"), table_name="instances")
    op.drop_index("ix_instances_received_at", table_name="instances")

    op.drop_table("instances")
    op.drop_index(op.f("ix_series_study_pk"), table_name="series")

    op.drop_table("series")
    op.drop_index(op.f("ix_studies_patient_pk"), table_name="studies")
    op.drop_index(op.f("ix_studies_last_received_at"), table_name="studies")

    op.drop_table("studies")
    op.drop_table("patients")
