"""The compute market's part of the index sync: ComputeMarket events into ``index/compute.py``.

The handlers are mixed into the sync's applier (``market.sync._Applier``), which dispatches a
log of the ComputeMarket to ``on_compute_<Event>`` (its ``DividendPaid``, ``HeldReleased`` and
``Withdrawn`` share their names with the ModelRegistry's). What a user relies on:

- a worker's ``earned`` is the sum of its ``WorkerPaid`` fees, ``slashed`` the stake its
  ``WorkerSlashed`` took; ``compute_accounts.credited - withdrawn`` is the contract's
  ``owed_of`` (fees to workers; slashed stakes and refunds to the job's consumer);
- a training fee the token accepted is counted once, by the token's ``DividendsDistributed``
  whose payer is the ComputeMarket (``sync.py``); the ComputeMarket's ``DividendPaid`` only marks
  the job, and a refused (held) fee is added to the dataset's ``training_fee`` source as held
  until ``HeldReleased``;
- a prediction job's ``PredictionSettled`` credits the model's owner its share and the consumer
  the undelivered price; the royalty the token then accepts (its ``DividendsDistributed`` from
  the ComputeMarket, in the same transaction) is a ``prediction_royalty``. A royalty the token
  refuses joins the compute market's held training fees (the contract holds one pot per
  dataset, released as one), so once released it is counted as a training fee.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from databright.errors import IntegrityError
from databright.index.cache import DividendSourceRow
from databright.index.compute import (
    COORDINATOR_KINDS,
    ComputeAccountRow,
    ComputeCoordinatorRow,
    ComputeJobRow,
    ComputePayoutRow,
    ComputeWorkerRow,
)
from databright.market.sync_models import as_hex


class ComputeMarketEvents:
    """ComputeMarket handlers of the sync's applier."""

    s: Session
    #: a settle_prediction whose royalty distribution comes next (job id), else None
    _compute_royalty: int | None = None
    #: the dataset's per-source dividend account (``ModelMarketEvents._source``)
    _source: Callable[[int, str], DividendSourceRow]

    def on_compute_WorkerRegistered(self, ev: Any, a: dict[str, Any]) -> None:
        row = self.s.get(ComputeWorkerRow, a["worker"])
        if row is None:
            row = ComputeWorkerRow(account=a["worker"], jobs=0, earned=0, slashed=0)
            self.s.add(row)
        row.coordinator, row.stake = a["coordinator"], int(a["stake"])
        row.min_fee = int(a["min_fee"])
        row.determinism_class = as_hex(a["determinism_class"])
        row.status, row.release_at, row.registered_block = "active", None, ev.block_number

    def on_compute_WorkerUnregistered(self, ev: Any, a: dict[str, Any]) -> None:
        row = self._worker(a["worker"])
        row.status, row.release_at = "leaving", int(a["release_at"])

    def on_compute_StakeWithdrawn(self, ev: Any, a: dict[str, Any]) -> None:
        row = self._worker(a["worker"])
        if int(a["amount"]) != row.stake:
            raise IntegrityError(f"worker {row.account} withdrew {a['amount']} wei of stake; "
                                 f"the index knows {row.stake}")
        row.stake, row.status = 0, "withdrawn"

    def on_compute_CoordinatorRegistered(self, ev: Any, a: dict[str, Any]) -> None:
        kind = int(a["kind"])
        self.s.add(ComputeCoordinatorRow(
            enclave=a["enclave"], operator=a["operator"],
            kind=COORDINATOR_KINDS.get(kind, str(kind)), evidence_cid=a["evidence_cid"],
            registered_block=ev.block_number))

    def on_compute_JobCreated(self, ev: Any, a: dict[str, Any]) -> None:
        fee = int(a["training_fee"])
        self.s.add(ComputeJobRow(
            job_id=int(a["job_id"]), dataset_id=int(a["dataset_id"]), consumer=a["consumer"],
            coordinator=a["coordinator"], program_digest=as_hex(a["program_digest"]),
            spec_cid=a["spec_cid"], training_fee=fee, budget=int(a["budget"]), spent=0,
            refund=0, slashed=0, deadline=int(a["deadline"]), status="open", parts=0,
            workers=0, liars=0, receipt_hash=None, fee_status="escrowed" if fee else "none",
            created_block=ev.block_number, closed_block=None))

    def on_compute_WorkerSlashed(self, ev: Any, a: dict[str, Any]) -> None:
        job, worker, amount = self._job(int(a["job_id"])), self._worker(a["worker"]), \
            int(a["amount"])
        worker.stake, worker.status = 0, "banned"
        worker.slashed += amount
        job.liars += 1
        self._credit(job.consumer, amount)
        self._payout(ev, job.job_id, worker.account, int(a["part"]), "slashed", amount)

    def on_compute_WorkerPaid(self, ev: Any, a: dict[str, Any]) -> None:
        job, worker, fee, part = self._job(int(a["job_id"])), self._worker(a["worker"]), \
            int(a["fee"]), int(a["part"])
        first = part == 0 or self.s.execute(
            select(ComputePayoutRow.id).where(
                ComputePayoutRow.worker == worker.account, ComputePayoutRow.job_id == job.job_id,
                ComputePayoutRow.kind == "paid").limit(1)).first() is None
        if first:
            worker.jobs += 1
            job.workers += 1
        worker.earned += fee
        if fee:
            self._credit(worker.account, fee)
        self._payout(ev, job.job_id, worker.account, part, "paid", fee)

    def on_compute_PartSettled(self, ev: Any, a: dict[str, Any]) -> None:
        job = self._job(int(a["job_id"]))
        job.parts = int(a["part"]) + 1
        job.spent += int(a["paid"])
        job.slashed += int(a["slashed"])
        job.receipt_hash = as_hex(a["receipt_hash"])

    def on_compute_JobFinalized(self, ev: Any, a: dict[str, Any]) -> None:
        job = self._job(int(a["job_id"]))
        if int(a["spent"]) != job.spent:
            raise IntegrityError(f"job #{job.job_id} finalized having spent {a['spent']} wei; "
                                 f"its parts add up to {job.spent}")
        job.status, job.refund, job.closed_block = "final", int(a["refund"]), ev.block_number
        self._credit(job.consumer, job.refund)

    def on_compute_JobCancelled(self, ev: Any, a: dict[str, Any]) -> None:
        job = self._job(int(a["job_id"]))
        job.status, job.refund, job.closed_block = "cancelled", int(a["refund"]), ev.block_number
        if job.fee_status == "escrowed":
            job.fee_status = "refunded"
        self._credit(job.consumer, job.refund)

    def on_compute_PredictionSettled(self, ev: Any, a: dict[str, Any]) -> None:
        job = self._job(int(a["job_id"]))
        self._credit(a["owner"], int(a["owner_amount"]))
        self._credit(job.consumer, int(a["refund"]))
        self._compute_royalty = job.job_id if int(a["royalty"]) else None

    def compute_source(self) -> str:
        """The source of a distribution the ComputeMarket pays now (``sync.py`` asks)."""
        return "training_fee" if self._compute_royalty is None else "prediction_royalty"

    def on_compute_DividendPaid(self, ev: Any, a: dict[str, Any]) -> None:
        """Marks the job only: an accepted fee is counted by the token's distribution."""
        if self._compute_royalty == int(a["job_id"]):
            self._compute_royalty = None
            if a["held"]:
                self._source(int(a["dataset_id"]), "training_fee").held += int(a["amount"])
            return  # a prediction job's royalty: its fee status (none) stays
        job = self._job(int(a["job_id"]))
        if a["held"]:
            job.fee_status = "held"
            self._source(int(a["dataset_id"]), "training_fee").held += int(a["amount"])
        else:
            job.fee_status = "paid"

    def on_compute_HeldReleased(self, ev: Any, a: dict[str, Any]) -> None:
        ds_id, amount = int(a["dataset_id"]), int(a["amount"])
        self._source(ds_id, "training_fee").held -= amount
        self.s.execute(update(ComputeJobRow).where(
            ComputeJobRow.dataset_id == ds_id, ComputeJobRow.fee_status == "held")
            .values(fee_status="released"))

    def on_compute_Withdrawn(self, ev: Any, a: dict[str, Any]) -> None:
        row = self._account(a["account"])
        row.withdrawn += int(a["amount"])
        if row.withdrawn > row.credited:
            raise IntegrityError(f"{row.account} withdrew more from the ComputeMarket than the "
                                 "index saw credited")

    # -- rows --------------------------------------------------------------------------------------
    def _payout(self, ev: Any, job_id: int, worker: str, part: int, kind: str,
                amount: int) -> None:
        self.s.add(ComputePayoutRow(job_id=job_id, worker=worker, part=part, kind=kind,
                                    amount=amount, block_number=ev.block_number))

    def _credit(self, account: str, amount: int) -> None:
        if amount:
            self._account(account).credited += amount

    def _account(self, account: str) -> ComputeAccountRow:
        row = self.s.get(ComputeAccountRow, account)
        if row is None:
            row = ComputeAccountRow(account=account, credited=0, withdrawn=0)
            self.s.add(row)
        return row

    def _worker(self, account: str) -> ComputeWorkerRow:
        row = self.s.get(ComputeWorkerRow, account)
        if row is None:
            raise IntegrityError(f"the chain names compute worker {account} before registering it")
        return row

    def _job(self, job_id: int) -> ComputeJobRow:
        row = self.s.get(ComputeJobRow, job_id)
        if row is None:
            raise IntegrityError(f"the chain names compute job #{job_id} before creating it")
        return row
