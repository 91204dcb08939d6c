"""The chain-event cache: sync state, datasets, proposals, votes, entries, holders, refunds, items.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# exact 256-bit integers: NUMERIC(78) on PostgreSQL, decimal text elsewhere
UINT = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
ADDR = sa.String(42)
BLOCK = sa.BigInteger


def _col(name: str, type_: object, **kw: object) -> sa.Column:
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "sync_state",
        _col("id", sa.Integer, primary_key=True),
        _col("chain_id", sa.BigInteger),
        _col("market", ADDR),
        _col("last_block", BLOCK),
        _col("last_block_hash", sa.String(66)),
    )
    op.create_table(
        "synced_blocks",
        _col("block_number", BLOCK, primary_key=True),
        _col("block_hash", sa.String(66)),
    )
    op.create_table(
        "datasets",
        _col("dataset_id", sa.Integer, primary_key=True),
        _col("name", sa.String(64), unique=True),
        _col("symbol", sa.String(32)),
        _col("share_token", ADDR, unique=True),
        _col("initiator", ADDR),
        _col("card_cid", sa.String(100)),
        _col("quorum_bps", sa.Integer),
        _col("approval_bps", sa.Integer),
        _col("voting_period", UINT),
        _col("stake", UINT),
        _col("reward_r0", UINT),
        _col("reward_n0", UINT),
        _col("evaluator", ADDR),
        _col("item_count", UINT),
        _col("entry_count", sa.Integer),
        _col("total_supply", UINT),
        _col("total_distributed", UINT),
        _col("total_withdrawn", UINT),
        _col("dividends_held", UINT),
        _col("per_share", UINT),
        _col("validation_manifest_cid", sa.String(100), nullable=True),
        _col("items_loaded", sa.Boolean),
        _col("created_block", BLOCK),
    )
    op.create_table(
        "proposals",
        _col("proposal_id", sa.Integer, primary_key=True),
        _col("dataset_id", sa.Integer, index=True),
        _col("proposer", ADDR, index=True),
        _col("manifest_cid", sa.String(100)),
        _col("merkle_root", sa.String(66)),
        _col("item_count", UINT),
        _col("stake", UINT),
        _col("snapshot", BLOCK),
        _col("snapshot_supply", UINT, nullable=True),
        _col("deadline", UINT),
        _col("position", sa.Integer, nullable=True),
        _col("yes", UINT),
        _col("no", UINT),
        _col("score_bps", sa.Integer, nullable=True),
        _col("status", sa.String(16), index=True),
        _col("shares_minted", UINT),
        _col("items_loaded", sa.Boolean),
        _col("created_block", BLOCK),
        _col("finalized_block", BLOCK, nullable=True),
    )
    op.create_table(
        "votes",
        _col("proposal_id", sa.Integer, primary_key=True),
        _col("voter", ADDR, primary_key=True),
        _col("support", sa.Boolean),
        _col("weight", UINT),
        _col("block_number", BLOCK),
    )
    op.create_table(
        "entries",
        _col("dataset_id", sa.Integer, primary_key=True),
        _col("index", sa.Integer, primary_key=True),
        _col("manifest_cid", sa.String(100)),
        _col("merkle_root", sa.String(66)),
        _col("item_count", UINT),
        _col("contributor", ADDR, index=True),
        _col("proposal_id", sa.Integer),
        _col("shares_minted", UINT),
        _col("first_item", UINT),
        _col("items_loaded", sa.Boolean),
        _col("block_number", BLOCK),
    )
    op.create_table(
        "holders",
        _col("share_token", ADDR, primary_key=True),
        _col("account", ADDR, primary_key=True, index=True),
        _col("dataset_id", sa.Integer),
        _col("balance", UINT),
        _col("withdrawn", UINT),
        _col("owed", UINT),
        _col("per_share_paid", UINT),
    )
    op.create_table(
        "refunds",
        _col("account", ADDR, primary_key=True),
        _col("credited", UINT),
        _col("withdrawn", UINT),
    )
    op.create_table(
        "items",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("dataset_id", sa.Integer),
        _col("cid", sa.String(100)),
        _col("proposal_id", sa.Integer, nullable=True),
        _col("state", sa.String(16)),
    )
    op.create_index("ix_items_dataset_cid", "items", ["dataset_id", "cid"])
    op.create_index("ix_items_proposal", "items", ["proposal_id"])


def downgrade() -> None:
    for table in ("items", "refunds", "holders", "entries", "votes", "proposals", "datasets",
                  "synced_blocks", "sync_state"):
        op.drop_table(table)
