"""SQLAlchemy models of the index: off-chain facts that the chain does not hold.

The index is a cache and an annotation store, never the source of truth for money or votes:
everything on chain is read from the chain, everything here can be rebuilt from the chain and
the blob store (ingestion and evaluation reports are also stored by CID).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every index table."""


class DatasetMeta(Base):
    """A dataset's card, label set and validation split, as read from its card blob."""

    __tablename__ = "dataset_meta"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    card_cid: Mapped[str] = mapped_column(String(100))
    labels: Mapped[list] = mapped_column(JSON)
    validation_manifest_cid: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class IngestReport(Base):
    """What ingestion found in a proposal's input: keyed by the manifest it produced."""

    __tablename__ = "ingest_reports"

    manifest_cid: Mapped[str] = mapped_column(String(100), primary_key=True)
    dataset_name: Mapped[str] = mapped_column(String(64), index=True)
    report_cid: Mapped[str] = mapped_column(String(100))
    report: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Evaluation(Base):
    """The automated evaluation report of a proposal."""

    __tablename__ = "evaluations"

    proposal_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest_cid: Mapped[str] = mapped_column(String(100), index=True)
    report_cid: Mapped[str] = mapped_column(String(100))
    report: Mapped[dict] = mapped_column(JSON)
    score_bps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
