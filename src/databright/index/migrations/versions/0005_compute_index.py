"""The compute market in the chain-event cache: workers, coordinators, jobs, per-part payouts
and slashes, credits and withdrawals, the cached verification of each job's receipt; and each holder's dividends withdrawn by source
(the shareholder dashboard's dividends waiting by source).

Chain events synced before this revision were read without the ComputeMarket's logs, so the
upgrade marks the cache stale (its market address no longer matches): the next sync clears it
and rebuilds every chain-derived table from block 0.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UINT = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")


def upgrade() -> None:
    op.create_table(
        "compute_workers",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("coordinator", sa.String(42), nullable=False),
        sa.Column("stake", UINT, nullable=False),
        sa.Column("min_fee", UINT, nullable=False),
        sa.Column("determinism_class", sa.String(66), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("release_at", UINT, nullable=True),
        sa.Column("jobs", sa.Integer, nullable=False),
        sa.Column("earned", UINT, nullable=False),
        sa.Column("slashed", UINT, nullable=False),
        sa.Column("registered_block", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_compute_workers_coordinator", "compute_workers", ["coordinator"])
    op.create_index("ix_compute_workers_determinism_class", "compute_workers",
                    ["determinism_class"])
    op.create_table(
        "compute_coordinators",
        sa.Column("enclave", sa.String(42), primary_key=True),
        sa.Column("operator", sa.String(42), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("evidence_cid", sa.String(100), nullable=False),
        sa.Column("registered_block", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "compute_jobs",
        sa.Column("job_id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("consumer", sa.String(42), nullable=False),
        sa.Column("coordinator", sa.String(42), nullable=False),
        sa.Column("program_digest", sa.String(66), nullable=False),
        sa.Column("spec_cid", sa.String(100), nullable=False),
        sa.Column("training_fee", UINT, nullable=False),
        sa.Column("budget", UINT, nullable=False),
        sa.Column("spent", UINT, nullable=False),
        sa.Column("refund", UINT, nullable=False),
        sa.Column("slashed", UINT, nullable=False),
        sa.Column("deadline", UINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        sa.Column("liars", sa.Integer, nullable=False),
        sa.Column("receipt_hash", sa.String(66), nullable=True),
        sa.Column("fee_status", sa.String(16), nullable=False),
        sa.Column("created_block", sa.BigInteger, nullable=False),
        sa.Column("closed_block", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_compute_jobs_dataset_id", "compute_jobs", ["dataset_id"])
    op.create_index("ix_compute_jobs_consumer", "compute_jobs", ["consumer"])
    op.create_index("ix_compute_jobs_status", "compute_jobs", ["status"])
    op.create_table(
        "compute_payouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(42), nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("amount", UINT, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_compute_payouts_job", "compute_payouts", ["job_id", "part"])
    op.create_index("ix_compute_payouts_worker", "compute_payouts", ["worker", "job_id"])
    op.create_table(
        "compute_accounts",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("credited", UINT, nullable=False),
        sa.Column("withdrawn", UINT, nullable=False),
    )
    op.create_table(
        "compute_receipt_checks",
        sa.Column("job_id", sa.Integer, primary_key=True),
        sa.Column("receipt_hash", sa.String(66), nullable=False),
        sa.Column("job_state", sa.String(32), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("checked_block", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "holder_dividends_withdrawn",
        sa.Column("dataset_id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("source", sa.String(24), primary_key=True),
        sa.Column("withdrawn", UINT, nullable=False),
    )
    # rebuild the cache on the next sync: it was read without the ComputeMarket's logs
    op.execute("UPDATE sync_state SET market = ''")


def downgrade() -> None:
    for table in ("holder_dividends_withdrawn", "compute_receipt_checks", "compute_accounts", "compute_payouts",
                  "compute_jobs", "compute_coordinators", "compute_workers"):
        op.drop_table(table)
