"""The compute market's part of the chain-event cache: workers, coordinators, jobs, and each
worker's payout or slash per job part, all from ComputeMarket logs alone.

Rows here are dropped and rebuilt by ``index rebuild`` like the rest of the cache
(``CHAIN_TABLES``). ``compute_receipt_checks`` caches the verification of a job's receipt file
(signature, chain, attestation), which reads the chain: it is computed once per job and
receipt hash, and dropped with the cache because a rebuilt chain may judge it otherwise.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from databright.index.cache import Uint
from databright.index.models import Base

#: ``CoordinatorRegistered.kind``
COORDINATOR_KINDS = {1: "software", 2: "sgx-dcap"}


class ComputeWorkerRow(Base):
    """A worker account: its current registration (``status``: active|leaving|banned|withdrawn)
    and what it has earned and lost over all its registrations.

    ``stake`` is the wei locked now (0 once banned or withdrawn); ``earned`` the fees receipts
    credited it; ``slashed`` the stake it lost; ``jobs`` the jobs whose receipts paid it.
    """

    __tablename__ = "compute_workers"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    coordinator: Mapped[str] = mapped_column(String(42), index=True)
    stake: Mapped[int] = mapped_column(Uint, default=0)
    min_fee: Mapped[int] = mapped_column(Uint, default=0)
    determinism_class: Mapped[str] = mapped_column(String(66), index=True)
    status: Mapped[str] = mapped_column(String(16))
    release_at: Mapped[int | None] = mapped_column(Uint, nullable=True)
    jobs: Mapped[int] = mapped_column(Integer, default=0)
    earned: Mapped[int] = mapped_column(Uint, default=0)
    slashed: Mapped[int] = mapped_column(Uint, default=0)
    registered_block: Mapped[int] = mapped_column(BigInteger)


class ComputeCoordinatorRow(Base):
    """A coordinator's enclave key, its operator and attestation evidence (``kind``:
    software|sgx-dcap)."""

    __tablename__ = "compute_coordinators"

    enclave: Mapped[str] = mapped_column(String(42), primary_key=True)
    operator: Mapped[str] = mapped_column(String(42))
    kind: Mapped[str] = mapped_column(String(16))
    evidence_cid: Mapped[str] = mapped_column(String(100))
    registered_block: Mapped[int] = mapped_column(BigInteger)


class ComputeJobRow(Base):
    """A job (``status``: open|final|cancelled) with its escrow and outcome.

    ``spent`` is the fees credited to workers; ``refund`` what the consumer got back when it
    closed; ``slashed`` the liars' stakes credited to the consumer; ``receipt_hash`` the last
    settled part's; ``fee_status`` what happened to the training fee (escrowed|paid|held|
    released|refunded).
    """

    __tablename__ = "compute_jobs"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(Integer, index=True)
    consumer: Mapped[str] = mapped_column(String(42), index=True)
    coordinator: Mapped[str] = mapped_column(String(42))
    program_digest: Mapped[str] = mapped_column(String(66))
    spec_cid: Mapped[str] = mapped_column(String(100))
    training_fee: Mapped[int] = mapped_column(Uint)
    budget: Mapped[int] = mapped_column(Uint)
    spent: Mapped[int] = mapped_column(Uint, default=0)
    refund: Mapped[int] = mapped_column(Uint, default=0)
    slashed: Mapped[int] = mapped_column(Uint, default=0)
    deadline: Mapped[int] = mapped_column(Uint)
    status: Mapped[str] = mapped_column(String(16), index=True)
    parts: Mapped[int] = mapped_column(Integer, default=0)
    workers: Mapped[int] = mapped_column(Integer, default=0)
    liars: Mapped[int] = mapped_column(Integer, default=0)
    receipt_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    fee_status: Mapped[str] = mapped_column(String(16))
    created_block: Mapped[int] = mapped_column(BigInteger)
    closed_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ComputePayoutRow(Base):
    """One worker named in one settled part of a job: ``kind`` paid (``amount`` its fee) or
    slashed (``amount`` its stake, credited to the consumer)."""

    __tablename__ = "compute_payouts"
    __table_args__ = (Index("ix_compute_payouts_job", "job_id", "part"),
                      Index("ix_compute_payouts_worker", "worker", "job_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(42))
    part: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(Uint)
    block_number: Mapped[int] = mapped_column(BigInteger)


class ComputeAccountRow(Base):
    """Wei the ComputeMarket credited an account (worker fees, job refunds, slashed stakes of
    liars in its jobs) and what it withdrew: ``credited - withdrawn`` is its ``owed_of``."""

    __tablename__ = "compute_accounts"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    credited: Mapped[int] = mapped_column(Uint, default=0)
    withdrawn: Mapped[int] = mapped_column(Uint, default=0)


class ComputeReceiptCheckRow(Base):
    """The verification of a job's receipt file (``market.compute.verify``), cached: ``checks``
    is its list of ``{"check", "ok", "detail"}`` for the receipt whose hash is named."""

    __tablename__ = "compute_receipt_checks"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_hash: Mapped[str] = mapped_column(String(66))
    #: the indexed job when it was checked (``status:parts``): a job settled since is rechecked
    job_state: Mapped[str] = mapped_column(String(32))
    ok: Mapped[bool] = mapped_column(Boolean)
    policy: Mapped[str] = mapped_column(String(200))
    checks: Mapped[list] = mapped_column(JSON)
    checked_block: Mapped[int] = mapped_column(BigInteger)


#: The compute tables, in the order they are created (``index rebuild`` drops them too).
COMPUTE_TABLES = (ComputeWorkerRow, ComputeCoordinatorRow, ComputeJobRow, ComputePayoutRow,
                  ComputeAccountRow, ComputeReceiptCheckRow)
