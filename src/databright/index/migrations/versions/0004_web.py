"""The web app's tables: Sign-In with Ethereum nonces, sessions, the discussion, and each
dividend payment (chain-derived, for the dividends-over-time chart).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
UINT = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")


def upgrade() -> None:
    op.create_table(
        "siwe_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("account_name", sa.String(64), nullable=True),
    )
    op.create_index("ix_web_sessions_address", "web_sessions", ["address"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("comments.id"), nullable=True),
        sa.Column("author", sa.String(42), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("edited_at", TS, nullable=True),
        sa.Column("edits", sa.Integer, nullable=False),
    )
    op.create_index("ix_comments_target", "comments", ["target_kind", "target_id", "id"])
    op.create_index("ix_comments_author_created", "comments", ["author", "created_at"])
    op.create_table(
        "comment_edits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("comment_id", sa.Integer, sa.ForeignKey("comments.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("signed_at", TS, nullable=False),
    )
    op.create_index("ix_comment_edits_comment_id", "comment_edits", ["comment_id"])
    op.create_table(  # chain-derived (a cache like the tables of 0003)
        "dividend_payments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("amount", UINT, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_time", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_dividend_payments_dataset_id", "dividend_payments", ["dataset_id"])


def downgrade() -> None:
    op.drop_table("dividend_payments")
    op.drop_table("comment_edits")
    op.drop_table("comments")
    op.drop_table("web_sessions")
    op.drop_table("siwe_nonces")
