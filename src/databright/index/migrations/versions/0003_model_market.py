"""The model market in the chain-event cache: dataset terms, models, checkpoints, channels, and
dividends by source per dataset and per holder.

The chain-derived rows of revision 0002 are deleted: they lack the registry's events and the
per-source split of dividends, and the next sync rebuilds them from block 0 (the off-chain
tables are kept).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# exact 256-bit integers: NUMERIC(78) on PostgreSQL, decimal text elsewhere
UINT = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
ADDR = sa.String(42)
BLOCK = sa.BigInteger
CACHE_0002 = ("items", "refunds", "holders", "entries", "votes", "proposals", "datasets",
              "synced_blocks", "sync_state")


def _col(name: str, type_: object, **kw: object) -> sa.Column:
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    for table in CACHE_0002:  # a cache: rebuilt from the chain by the next sync
        op.execute(sa.text(f"DELETE FROM {table}"))
    op.add_column("sync_state", _col("model_registry", ADDR, nullable=True))
    op.add_column("datasets", _col("training_fee", UINT, server_default="0"))
    op.add_column("datasets", _col("min_royalty_bps", sa.Integer, server_default="0"))
    op.create_table(
        "models",
        _col("model_id", sa.Integer, primary_key=True),
        _col("dataset_id", sa.Integer, index=True),
        _col("owner", ADDR, index=True),
        _col("name", sa.String(64)),
        _col("program_digest", sa.String(66)),
        _col("price_per_prediction", UINT),
        _col("royalty_bps", sa.Integer),
        _col("checkpoint_count", sa.Integer),
        _col("best_checkpoint", sa.Integer),
        _col("best_metric_bps", sa.Integer),
        _col("registered_block", BLOCK),
    )
    op.create_table(
        "checkpoints",
        _col("model_id", sa.Integer, primary_key=True),
        _col("checkpoint", sa.Integer, primary_key=True),
        _col("cid", sa.String(100)),
        _col("file_sha256", sa.String(66)),
        _col("entries", sa.Integer),
        _col("metric_bps", sa.Integer),
        _col("attestor", ADDR, nullable=True),
        _col("attested_metric_bps", sa.Integer, nullable=True),
        _col("block_number", BLOCK),
    )
    op.create_table(
        "channels",
        _col("channel_id", sa.Integer, primary_key=True),
        _col("model_id", sa.Integer, index=True),
        _col("payer", ADDR, index=True),
        _col("deposit", UINT),
        _col("expiry", UINT),
        _col("reclaim_at", UINT, nullable=True),
        _col("status", sa.String(16)),
        _col("amount", UINT),
        _col("royalty", UINT),
        _col("payee_amount", UINT),
        _col("refund", UINT),
        _col("opened_block", BLOCK),
        _col("settled_block", BLOCK, nullable=True),
    )
    op.create_table(
        "dividend_sources",
        _col("dataset_id", sa.Integer, primary_key=True),
        _col("source", sa.String(24), primary_key=True),
        _col("distributed", UINT),
        _col("held", UINT),
        _col("payments", sa.Integer),
        _col("per_share", UINT),
    )
    op.create_table(
        "holder_dividends",
        _col("dataset_id", sa.Integer, primary_key=True),
        _col("account", ADDR, primary_key=True),
        _col("source", sa.String(24), primary_key=True),
        _col("settled", UINT),
        _col("per_share_paid", UINT),
    )


def downgrade() -> None:
    for table in ("holder_dividends", "dividend_sources", "channels", "checkpoints", "models"):
        op.drop_table(table)
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("min_royalty_bps")
        batch.drop_column("training_fee")
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("model_registry")
