"""The compute market page's read model: workers, their determinism classes, coordinators,
fees, jobs, and a job's receipt with its verification result.

Everything but the verification comes from the index (``index/compute.py``). A receipt lives
in this home's ``compute/receipts/job-N.json`` (a job run from another home has none here,
and says so). Verifying it reads the chain (signatures, the job's settled parts, the
coordinator's attestation): :func:`receipt_verification` does that once per job, receipt and
indexed job state, and caches the result in the index; every later view reads the cache.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from databright.errors import NotFoundError, UsageError
from databright.index.cache import DatasetRow
from databright.index.compute import (
    ComputeCoordinatorRow,
    ComputeJobRow,
    ComputePayoutRow,
    ComputeReceiptCheckRow,
    ComputeWorkerRow,
)
from databright.market.context import Deployment

#: workers and jobs per page
PAGE_SIZE = 50
WORKER_STATUS_ORDER = ("active", "leaving", "banned", "withdrawn")


@dataclass(frozen=True)
class ClassStats:
    """Workers of one determinism class (replicas of a class agree bit for bit)."""

    determinism_class: str
    workers: int
    active: int
    stake: int


@dataclass(frozen=True)
class ComputeOverview:
    """One page of the compute market."""

    workers: tuple[ComputeWorkerRow, ...]
    worker_count: int
    classes: tuple[ClassStats, ...]
    coordinators: tuple[ComputeCoordinatorRow, ...]
    jobs: tuple[ComputeJobRow, ...]
    job_count: int
    datasets: dict[int, str]
    fees: dict[str, int | None]
    totals: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "workers": [worker_json(w) for w in self.workers], "worker_count": self.worker_count,
            "classes": [{"determinism_class": c.determinism_class, "workers": c.workers,
                         "active": c.active, "stake_wei": str(c.stake)} for c in self.classes],
            "coordinators": [coordinator_json(c) for c in self.coordinators],
            "fees": {k: None if v is None else str(v) for k, v in self.fees.items()},
            "totals": {k: str(v) for k, v in self.totals.items()},
            "jobs": [job_json(j, self.datasets) for j in self.jobs], "job_count": self.job_count,
        }


@dataclass(frozen=True)
class JobDetail:
    """A job with every payout and slash, and its receipt (if this home has it)."""

    job: ComputeJobRow
    dataset: str
    payouts: tuple[ComputePayoutRow, ...]
    receipt_path: str
    receipt: dict[str, Any] | None
    receipt_problem: str | None
    verification: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            **job_json(self.job, {self.job.dataset_id: self.dataset}),
            "payouts": [{"worker": p.worker, "part": p.part, "kind": p.kind,
                         "amount_wei": str(p.amount)} for p in self.payouts],
            "receipt": self.receipt, "receipt_problem": self.receipt_problem,
            "verification": self.verification,
        }


def overview(s: Session, *, workers_page: int = 1, jobs_page: int = 1) -> ComputeOverview:
    """The compute market: a page of workers (active first, then by earnings) and of jobs
    (newest first), every class and coordinator, and the fee range of active workers."""
    worker_count = int(s.execute(select(func.count()).select_from(ComputeWorkerRow))
                       .scalar_one())
    rows = list(s.execute(select(ComputeWorkerRow.determinism_class, ComputeWorkerRow.status,
                                 ComputeWorkerRow.stake, ComputeWorkerRow.min_fee)).all())
    by_class: dict[str, list[int]] = {}
    active_fees = []
    for cls, status, stake, min_fee in rows:
        c = by_class.setdefault(cls, [0, 0, 0])
        c[0] += 1
        if status == "active":
            c[1] += 1
            c[2] += stake
            active_fees.append(min_fee)
    classes = tuple(ClassStats(k, *v) for k, v in sorted(by_class.items(),
                                                          key=lambda kv: -kv[1][0]))
    workers = sorted(s.execute(select(ComputeWorkerRow)).scalars(),
                     key=lambda w: (_rank(w.status), -w.earned, w.account))
    start = (workers_page - 1) * PAGE_SIZE
    job_count = int(s.execute(select(func.count()).select_from(ComputeJobRow)).scalar_one())
    jobs = tuple(s.execute(select(ComputeJobRow).order_by(ComputeJobRow.job_id.desc())
                           .offset((jobs_page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).scalars())
    totals = {"fees_paid_wei": 0, "slashed_wei": 0, "training_fees_wei": 0, "escrow_open_wei": 0}
    for spent, slashed, fee, budget, status, fee_status in s.execute(select(
            ComputeJobRow.spent, ComputeJobRow.slashed, ComputeJobRow.training_fee,
            ComputeJobRow.budget, ComputeJobRow.status, ComputeJobRow.fee_status)):
        totals["fees_paid_wei"] += spent
        totals["slashed_wei"] += slashed
        if fee_status in ("paid", "released"):
            totals["training_fees_wei"] += fee
        if status == "open":
            totals["escrow_open_wei"] += fee + budget - spent
    fees: dict[str, int | None] = {
        "min_fee_low": min(active_fees) if active_fees else None,
        "min_fee_median": int(statistics.median_low(active_fees)) if active_fees else None,
        "min_fee_high": max(active_fees) if active_fees else None,
    }
    coordinators = tuple(s.execute(select(ComputeCoordinatorRow)
                                   .order_by(ComputeCoordinatorRow.registered_block)).scalars())
    return ComputeOverview(tuple(workers[start:start + PAGE_SIZE]), worker_count, classes,
                           coordinators, jobs, job_count, _dataset_names(s, jobs), fees, totals)


def job_detail(dep: Deployment, s: Session, job_id: int) -> JobDetail:
    """A job from the index, with its receipt file and the cached verification (``None``
    until :func:`receipt_verification` has run for this receipt and job state).

    Raises:
        NotFoundError: no such job in the index.
    """
    job = s.get(ComputeJobRow, job_id)
    if job is None:
        raise NotFoundError(f"no compute job #{job_id} in the index")
    payouts = tuple(s.execute(select(ComputePayoutRow).where(ComputePayoutRow.job_id == job_id)
                              .order_by(ComputePayoutRow.part, ComputePayoutRow.kind.desc(),
                                        ComputePayoutRow.worker)).scalars())
    path = receipt_file(dep, job_id)
    receipt, problem = read_receipt(path)
    verification = None
    if receipt is not None:
        row = s.get(ComputeReceiptCheckRow, job_id)
        if row is not None and row.receipt_hash == receipt.get("receipt_hash") and \
                row.job_state == job_state(job):
            verification = {"ok": row.ok, "policy": row.policy, "checks": row.checks,
                            "checked_block": row.checked_block}
    name = s.execute(select(DatasetRow.name).where(DatasetRow.dataset_id == job.dataset_id)
                     ).scalar_one_or_none() or f"#{job.dataset_id}"
    return JobDetail(job, name, payouts, str(path), receipt, problem, verification)


def receipt_verification(dep: Deployment, job_id: int, *, allow_simulated: bool
                         ) -> dict[str, Any] | None:
    """Verify the job's receipt file (reads the chain: hold the chain's lock) and cache the
    result; ``None`` when this home has no readable receipt of the job."""
    from databright.market.compute.verify import load_policy, verify_receipt

    path = receipt_file(dep, job_id)
    receipt, _ = read_receipt(path)
    if receipt is None:
        return None
    with dep.index.session() as s:
        job = s.get(ComputeJobRow, job_id)
        if job is None:
            raise NotFoundError(f"no compute job #{job_id} in the index")
        state = job_state(job)
    policy = ("any measurement and signer, TCB up to date" +
              ("; simulated (software) evidence accepted: embedded chain" if allow_simulated
               else ""))
    result = verify_receipt(dep, path, load_policy(None, allow_simulated=allow_simulated))
    row = ComputeReceiptCheckRow(job_id=job_id, receipt_hash=str(receipt.get("receipt_hash")),
                                 job_state=state, ok=result.ok, policy=policy,
                                 checks=list(result.checks), checked_block=dep.chain.block_number())
    try:
        with dep.index.session() as s:
            s.merge(row)
    except DbIntegrityError:
        pass  # another server process cached it at the same moment
    return {"ok": row.ok, "policy": row.policy, "checks": row.checks,
            "checked_block": row.checked_block}


def receipt_file(dep: Deployment, job_id: int) -> Path:
    """Where this home keeps the receipt of ``job_id``."""
    from databright.market.compute.execute import receipt_path

    return receipt_path(dep, job_id)


def read_receipt(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The receipt file as JSON (body, hash, parts), or ``None`` and why not."""
    from databright.market.compute.receipts import MAX_RECEIPT_BYTES, ReceiptFile

    try:
        if not path.is_file():
            return None, "this server has no receipt file for the job (it ran from another home)"
        if path.stat().st_size > MAX_RECEIPT_BYTES:
            return None, "the receipt file is larger than a receipt can be"
        return ReceiptFile.loads(path.read_bytes()).to_json(), None
    except OSError as exc:
        return None, f"the receipt file cannot be read: {exc.strerror}"
    except (UsageError, ValueError, KeyError, TypeError) as exc:
        return None, f"the receipt file is malformed: {exc}"


def job_state(job: ComputeJobRow) -> str:
    return f"{job.status}:{job.parts}"


def worker_json(w: ComputeWorkerRow) -> dict[str, Any]:
    return {"account": w.account, "coordinator": w.coordinator,
            "determinism_class": w.determinism_class, "stake_wei": str(w.stake),
            "min_fee_wei": str(w.min_fee), "status": w.status, "release_at": w.release_at,
            "jobs": w.jobs, "earned_wei": str(w.earned), "slashed_wei": str(w.slashed)}


def coordinator_json(c: ComputeCoordinatorRow) -> dict[str, Any]:
    return {"enclave": c.enclave, "operator": c.operator, "attestation_kind": c.kind,
            "evidence_cid": c.evidence_cid, "registered_block": c.registered_block}


def job_json(j: ComputeJobRow, datasets: dict[int, str]) -> dict[str, Any]:
    return {"job_id": j.job_id, "consumer": j.consumer, "dataset_id": j.dataset_id,
            "dataset": datasets.get(j.dataset_id), "coordinator": j.coordinator,
            "program_digest": j.program_digest, "spec_cid": j.spec_cid,
            "escrow_wei": str(j.training_fee + j.budget),
            "training_fee_wei": str(j.training_fee), "budget_wei": str(j.budget),
            "spent_wei": str(j.spent), "refund_wei": str(j.refund),
            "slashed_wei": str(j.slashed), "deadline": j.deadline, "status": j.status,
            "parts": j.parts, "workers": j.workers, "liars": j.liars,
            "receipt_hash": j.receipt_hash, "fee_status": j.fee_status}


def _dataset_names(s: Session, jobs: tuple[ComputeJobRow, ...]) -> dict[int, str]:
    ids = {j.dataset_id for j in jobs}
    if not ids:
        return {}
    return {ds: name for ds, name in s.execute(
        select(DatasetRow.dataset_id, DatasetRow.name).where(DatasetRow.dataset_id.in_(ids)))}


def _rank(status: str) -> int:
    return WORKER_STATUS_ORDER.index(status) if status in WORKER_STATUS_ORDER else 9
