"""Initial index schema: dataset metadata, ingestion reports, evaluations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_meta",
        sa.Column("dataset_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True, index=True),
        sa.Column("card_cid", sa.String(100), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("validation_manifest_cid", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ingest_reports",
        sa.Column("manifest_cid", sa.String(100), primary_key=True),
        sa.Column("dataset_name", sa.String(64), nullable=False, index=True),
        sa.Column("report_cid", sa.String(100), nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "evaluations",
        sa.Column("proposal_id", sa.Integer, primary_key=True),
        sa.Column("manifest_cid", sa.String(100), nullable=False, index=True),
        sa.Column("report_cid", sa.String(100), nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("score_bps", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("evaluations")
    op.drop_table("ingest_reports")
    op.drop_table("dataset_meta")
