"""The ModelRegistry's credits and withdrawals per account (``registry_accounts``: the
dashboard's model-registry money), and a composite index on ``proposals (dataset_id, status,
proposal_id)`` for the dataset pages' counts by status.

Chain events synced before this revision were applied without the registry's ``Credited`` and
``Withdrawn``, so the upgrade marks the cache stale (its market address no longer matches): the
next sync clears it and rebuilds every chain-derived table from block 0.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UINT = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")


def upgrade() -> None:
    op.create_table(
        "registry_accounts",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("credited", UINT, nullable=False),
        sa.Column("withdrawn", UINT, nullable=False),
    )
    op.create_index("ix_proposals_dataset_status", "proposals",
                    ["dataset_id", "status", "proposal_id"])
    # rebuild the cache on the next sync: it was read without the registry's credits
    op.execute("UPDATE sync_state SET market = ''")


def downgrade() -> None:
    op.drop_index("ix_proposals_dataset_status", table_name="proposals")
    op.drop_table("registry_accounts")
