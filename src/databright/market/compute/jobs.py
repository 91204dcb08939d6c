"""Jobs as the chain records them: ``databright job list|show``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from databright.market.context import Deployment

__all__ = ["JobView", "get_job", "list_jobs"]


@dataclass(frozen=True)
class JobView:
    """A job with what its settlement did (wei); ``parts`` are the settled receipt parts."""

    job_id: int
    status: str
    consumer: str
    coordinator: str
    dataset_id: int
    program_digest: str
    spec_cid: str
    training_fee: int
    budget: int
    spent: int
    deadline: int
    parts: tuple[dict[str, Any], ...]
    slashed: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "status": self.status, "consumer": self.consumer,
            "coordinator": self.coordinator, "dataset_id": self.dataset_id,
            "program_digest": self.program_digest, "spec_cid": self.spec_cid,
            "training_fee_wei": str(self.training_fee), "budget_wei": str(self.budget),
            "spent_wei": str(self.spent), "deadline": self.deadline,
            "parts": list(self.parts), "slashed": list(self.slashed),
        }


def get_job(dep: Deployment, job_id: int) -> JobView:
    """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown id."""
    j = dep.compute.get_job(job_id)
    parts = tuple(
        {"part": int(log["args"]["part"]), "paid_wei": str(log["args"]["paid"]),
         "slashed_wei": str(log["args"]["slashed"]), "final": bool(log["args"]["final"]),
         "receipt_hash": "0x" + bytes(log["args"]["receipt_hash"]).hex(),
         "block": log["blockNumber"]}
        for log in dep.compute.logs("PartSettled") if int(log["args"]["job_id"]) == job_id
    )
    slashed = tuple(
        {"worker": log["args"]["worker"], "amount_wei": str(log["args"]["amount"]),
         "part": int(log["args"]["part"])}
        for log in dep.compute.logs("WorkerSlashed") if int(log["args"]["job_id"]) == job_id
    )
    return JobView(
        job_id=j.job_id, status=j.status, consumer=j.consumer, coordinator=j.coordinator,
        dataset_id=j.dataset_id, program_digest="0x" + j.program_digest.hex(),
        spec_cid=j.spec_cid, training_fee=j.training_fee, budget=j.budget, spent=j.spent,
        deadline=j.deadline, parts=parts, slashed=slashed,
    )


def list_jobs(dep: Deployment, dataset_id: int | None = None) -> list[JobView]:
    """Every job (of ``dataset_id`` when given), newest first."""
    ids = [int(log["args"]["job_id"]) for log in dep.compute.logs("JobCreated")
           if dataset_id is None or int(log["args"]["dataset_id"]) == dataset_id]
    return [get_job(dep, i) for i in sorted(ids, reverse=True)]
