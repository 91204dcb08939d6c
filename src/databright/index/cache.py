"""The chain-event cache: tables derived from DataMarket, ShareToken and ModelRegistry logs alone.

Every row here can be dropped and rebuilt from the chain (``databright index rebuild``) and the
manifests in the blob store (the ``items`` table). Amounts of wei and shares can pass 2**63, so
they are exact decimals (:class:`Uint`): ``NUMERIC(78)`` on PostgreSQL, decimal text on SQLite
(whose NUMERIC would round them to a float).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Dialect, Index, Integer, Numeric, String, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from databright.index.models import Base


class Uint(TypeDecorator[int]):
    """An unsigned 256-bit integer, stored exactly."""

    impl = String(78)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0))
        return dialect.type_descriptor(String(78))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return Decimal(int(value)) if dialect.name == "postgresql" else str(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class SyncState(Base):
    """How far the cache has read the chain: the last block applied and its hash."""

    __tablename__ = "sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    chain_id: Mapped[int] = mapped_column(BigInteger)
    market: Mapped[str] = mapped_column(String(42))
    #: the ModelRegistry synced beside the market (``None``: the home names none)
    model_registry: Mapped[str | None] = mapped_column(String(42), nullable=True)
    last_block: Mapped[int] = mapped_column(BigInteger)
    last_block_hash: Mapped[str] = mapped_column(String(66))


class SyncedBlock(Base):
    """Hashes of the most recent synced blocks, to find where a reorganised chain forked."""

    __tablename__ = "synced_blocks"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    block_hash: Mapped[str] = mapped_column(String(66))


class DatasetRow(Base):
    """A dataset: its rules (fixed at creation), share token, size and dividend totals."""

    __tablename__ = "datasets"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    share_token: Mapped[str] = mapped_column(String(42), unique=True)
    initiator: Mapped[str] = mapped_column(String(42))
    card_cid: Mapped[str] = mapped_column(String(100))
    quorum_bps: Mapped[int] = mapped_column(Integer)
    approval_bps: Mapped[int] = mapped_column(Integer)
    voting_period: Mapped[int] = mapped_column(Uint)
    stake: Mapped[int] = mapped_column(Uint)
    reward_r0: Mapped[int] = mapped_column(Uint)
    reward_n0: Mapped[int] = mapped_column(Uint)
    evaluator: Mapped[str] = mapped_column(String(42))
    training_fee: Mapped[int] = mapped_column(Uint, default=0)
    min_royalty_bps: Mapped[int] = mapped_column(Integer, default=0)
    item_count: Mapped[int] = mapped_column(Uint, default=0)
    entry_count: Mapped[int] = mapped_column(Integer, default=0)
    total_supply: Mapped[int] = mapped_column(Uint, default=0)
    total_distributed: Mapped[int] = mapped_column(Uint, default=0)
    total_withdrawn: Mapped[int] = mapped_column(Uint, default=0)
    dividends_held: Mapped[int] = mapped_column(Uint, default=0)
    #: the token's running dividend per share, magnified by ``ShareToken.MAG``
    per_share: Mapped[int] = mapped_column(Uint, default=0)
    validation_manifest_cid: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: False while the card or its validation manifest could not be read from the store
    items_loaded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_block: Mapped[int] = mapped_column(BigInteger)


class ProposalRow(Base):
    """A proposal with its tally and outcome (``status``: open|accepted|rejected|expired).

    ``ix_proposals_dataset_status`` serves the dataset pages' counts by status per dataset (and
    a dataset's open proposals, newest first) from the index alone.
    """

    __tablename__ = "proposals"
    __table_args__ = (Index("ix_proposals_dataset_status", "dataset_id", "status",
                            "proposal_id"),)

    proposal_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(Integer, index=True)
    proposer: Mapped[str] = mapped_column(String(42), index=True)
    manifest_cid: Mapped[str] = mapped_column(String(100))
    merkle_root: Mapped[str] = mapped_column(String(66))
    item_count: Mapped[int] = mapped_column(Uint)
    stake: Mapped[int] = mapped_column(Uint)
    snapshot: Mapped[int] = mapped_column(BigInteger)
    snapshot_supply: Mapped[int | None] = mapped_column(Uint, nullable=True)
    deadline: Mapped[int] = mapped_column(Uint)
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    yes: Mapped[int] = mapped_column(Uint, default=0)
    no: Mapped[int] = mapped_column(Uint, default=0)
    score_bps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    shares_minted: Mapped[int] = mapped_column(Uint, default=0)
    #: False while the manifest could not be read from the store (no item rows yet)
    items_loaded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_block: Mapped[int] = mapped_column(BigInteger)
    finalized_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class VoteRow(Base):
    """One account's vote on one proposal."""

    __tablename__ = "votes"

    proposal_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voter: Mapped[str] = mapped_column(String(42), primary_key=True)
    support: Mapped[bool] = mapped_column(Boolean)
    weight: Mapped[int] = mapped_column(Uint)
    block_number: Mapped[int] = mapped_column(BigInteger)


class EntryRow(Base):
    """An accepted registry entry (index 0 is the seed)."""

    __tablename__ = "entries"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest_cid: Mapped[str] = mapped_column(String(100))
    merkle_root: Mapped[str] = mapped_column(String(66))
    item_count: Mapped[int] = mapped_column(Uint)
    contributor: Mapped[str] = mapped_column(String(42), index=True)
    proposal_id: Mapped[int] = mapped_column(Integer)
    shares_minted: Mapped[int] = mapped_column(Uint)
    first_item: Mapped[int] = mapped_column(Uint)
    items_loaded: Mapped[bool] = mapped_column(Boolean, default=False)
    block_number: Mapped[int] = mapped_column(BigInteger)


class HolderRow(Base):
    """An account's shares of one token, and the dividends it has withdrawn from it.

    A row stays when the balance falls to zero: dividends earned before may still be waiting.
    """

    __tablename__ = "holders"

    share_token: Mapped[str] = mapped_column(String(42), primary_key=True)
    account: Mapped[str] = mapped_column(String(42), primary_key=True, index=True)
    dataset_id: Mapped[int] = mapped_column(Integer)
    balance: Mapped[int] = mapped_column(Uint, default=0)
    withdrawn: Mapped[int] = mapped_column(Uint, default=0)
    #: dividends settled and not withdrawn, and the per-share total at that settlement
    owed: Mapped[int] = mapped_column(Uint, default=0)
    per_share_paid: Mapped[int] = mapped_column(Uint, default=0)


class RefundRow(Base):
    """Refunded stakes an account was credited and has withdrawn."""

    __tablename__ = "refunds"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    credited: Mapped[int] = mapped_column(Uint, default=0)
    withdrawn: Mapped[int] = mapped_column(Uint, default=0)


class ItemRow(Base):
    """An item CID of a dataset: accepted, pending in an open proposal, or held for validation.

    ``proposal_id`` is 0 for the seed and ``None`` for the validation split.
    """

    __tablename__ = "items"
    __table_args__ = (Index("ix_items_dataset_cid", "dataset_id", "cid"),
                      Index("ix_items_proposal", "proposal_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(Integer)
    cid: Mapped[str] = mapped_column(String(100))
    proposal_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | accepted | validation


#: Where a dataset's dividends come from (``dividend_sources.source``, ``holder_dividends.source``).
SOURCES = ("training_fee", "prediction_royalty", "rejected_stake", "direct_payment")


class ModelRow(Base):
    """A model registered on the ModelRegistry (``ModelRegistered``) and its best checkpoint."""

    __tablename__ = "models"

    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(Integer, index=True)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    name: Mapped[str] = mapped_column(String(64))
    program_digest: Mapped[str] = mapped_column(String(66))
    price_per_prediction: Mapped[int] = mapped_column(Uint)
    royalty_bps: Mapped[int] = mapped_column(Integer)
    checkpoint_count: Mapped[int] = mapped_column(Integer, default=0)
    #: 0 until a checkpoint with an attested metric is submitted (or attested later)
    best_checkpoint: Mapped[int] = mapped_column(Integer, default=0)
    best_metric_bps: Mapped[int] = mapped_column(Integer, default=0)
    registered_block: Mapped[int] = mapped_column(BigInteger)


class CheckpointRow(Base):
    """A checkpoint of a model. ``metric_bps`` is the metric as submitted; ``attestor`` is
    ``None`` while it is only self-reported, and ``attested_metric_bps`` the metric its attestor
    signed (at submission, or later with ``attest``: the chain then stores that one)."""

    __tablename__ = "checkpoints"

    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint: Mapped[int] = mapped_column(Integer, primary_key=True)
    cid: Mapped[str] = mapped_column(String(100))
    file_sha256: Mapped[str] = mapped_column(String(66))
    #: the dataset snapshot trained on: its first ``entries`` registry entries
    entries: Mapped[int] = mapped_column(Integer)
    metric_bps: Mapped[int] = mapped_column(Integer)
    attestor: Mapped[str | None] = mapped_column(String(42), nullable=True)
    attested_metric_bps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    block_number: Mapped[int] = mapped_column(BigInteger)


class ChannelRow(Base):
    """A payment channel for a model's predictions (``status``: open|reclaiming|closed|reclaimed);
    the split of a close (``amount`` = ``royalty`` + ``payee_amount``) once settled."""

    __tablename__ = "channels"

    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, index=True)
    payer: Mapped[str] = mapped_column(String(42), index=True)
    deposit: Mapped[int] = mapped_column(Uint)
    expiry: Mapped[int] = mapped_column(Uint)
    reclaim_at: Mapped[int | None] = mapped_column(Uint, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Uint, default=0)
    royalty: Mapped[int] = mapped_column(Uint, default=0)
    payee_amount: Mapped[int] = mapped_column(Uint, default=0)
    refund: Mapped[int] = mapped_column(Uint, default=0)
    opened_block: Mapped[int] = mapped_column(BigInteger)
    settled_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DividendSourceRow(Base):
    """A dataset's dividends from one source: wei paid to its token, wei held by the payer
    because the token refused them, and the token's per-share growth those payments made.

    Summed over the sources, ``per_share`` is the dataset's ``per_share`` (each distribution's
    growth belongs to exactly one source; a release of held wei of two sources is split in
    proportion to their amounts).
    """

    __tablename__ = "dividend_sources"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(24), primary_key=True)
    distributed: Mapped[int] = mapped_column(Uint, default=0)
    held: Mapped[int] = mapped_column(Uint, default=0)
    payments: Mapped[int] = mapped_column(Integer, default=0)
    #: magnified by ``ShareToken.MAG``, like ``datasets.per_share``
    per_share: Mapped[int] = mapped_column(Uint, default=0)


class HolderDividendRow(Base):
    """What one holder of a dataset's shares has earned from one source, settled the way the
    token settles (on every balance change and withdrawal): ``settled`` wei, and the source's
    per-share total at that settlement. Summed over the sources, ``settled`` is the holder's
    withdrawn plus owed wei in ``holders`` to the wei."""

    __tablename__ = "holder_dividends"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    source: Mapped[str] = mapped_column(String(24), primary_key=True)
    settled: Mapped[int] = mapped_column(Uint, default=0)
    per_share_paid: Mapped[int] = mapped_column(Uint, default=0)


class DividendPaymentRow(Base):
    """One payment of dividends to a dataset's token, by source, with its block's time (the
    dataset page's dividends-over-time chart)."""

    __tablename__ = "dividend_payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(Uint)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


#: Dropped and rebuilt by ``index rebuild``; every other table (reports, evaluations) survives.
CHAIN_TABLES = (SyncState, SyncedBlock, DatasetRow, ProposalRow, VoteRow, EntryRow, HolderRow,
                RefundRow, ItemRow, ModelRow, CheckpointRow, ChannelRow, DividendSourceRow,
                HolderDividendRow, DividendPaymentRow)
