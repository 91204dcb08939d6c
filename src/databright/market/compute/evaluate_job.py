"""An evaluation job: a proposal's evaluation run by the coordinator, its score posted on chain
by the coordinator's enclave key as the dataset's evaluator, paid and receipted like any job.

The validation split never leaves the coordinator: the evaluation (KNN utility, per-item
values, suspects, accuracy gain) runs in its process; no worker is involved, so the job's budget
is 0 and its receipt names no workers. The consumer pays the dataset's training fee (the data
is used). To let the coordinator post scores, create the dataset with
``--evaluator <the coordinator's enclave address>`` (``databright coordinator show``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import PermissionDenied
from databright.market.compute.coordinator import open_coordinator
from databright.market.compute.execute import _settle, receipt_path
from databright.market.compute.receipts import RECEIPT_VERSION, canonical
from databright.market.compute.train_job import JOB_SECONDS, dataset_root
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

__all__ = ["EvaluationJob", "run_evaluate_job"]

_GAS_FUNDS = 10**17  # wei the enclave key gets on a dev chain to post scores


@dataclass(frozen=True)
class EvaluationJob:
    job_id: int
    receipt: str
    evaluation: Any
    score_bps: int
    posted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job_id, "receipt": self.receipt, "score_bps": self.score_bps,
                "posted": self.posted, "evaluation": self.evaluation}


def run_evaluate_job(dep: Deployment, consumer: Signer, proposal_id: int, *,
                     post: bool = False, k: int = 5,
                     featurizer: str = "auto") -> EvaluationJob:
    """Evaluate ``proposal_id`` on this home's coordinator (paid and receipted as a job); with
    ``post``, the enclave key posts the score as the dataset's evaluator.

    Raises:
        PermissionDenied: ``post`` and the dataset's evaluator is not the coordinator.
    """
    from databright.market import evaluation
    from databright.market.proposals import get_proposal

    p = get_proposal(dep, proposal_id)
    info = dep.market.get_dataset(p.dataset_id)
    coordinator = open_coordinator(dep, consumer)
    if post and info.evaluator.lower() != coordinator.address.lower():
        raise PermissionDenied(
            "market: only evaluator",
            f"the evaluator of {info.name} is {info.evaluator}, not this coordinator "
            f"({coordinator.address}): create the dataset with --evaluator set to it")
    params = {"kind": "evaluate", "proposal_id": proposal_id, "method": "knn", "k": int(k),
              "featurizer": featurizer}
    spec_cid = dep.store.put_bytes(canonical(params))
    digest = "0x" + hashlib.sha256(canonical({"program": "databright-evaluate-v1",
                                               "params": params})).hexdigest()
    job_id = dep.compute.create_job(consumer, p.dataset_id, coordinator.address, digest,
                                    spec_cid, dep.chain.now() + JOB_SECONDS,
                                    info.training_fee).value
    evaluated = evaluation.evaluate(dep, proposal_id, refresh=True, k=k, featurizer=featurizer)
    score = int(evaluated.report.score_bps)
    posted = False
    if post:
        enclave = coordinator.enclave
        if dep.chain.supports_time_travel and dep.chain.balance(enclave.address) < _GAS_FUNDS:
            dep.chain.fund(enclave.address, _GAS_FUNDS)
        evaluation.post_score(dep, enclave, proposal_id, score)
        posted = True
    body = {
        "version": RECEIPT_VERSION, "chain_id": dep.compute.chain_id(),
        "market": dep.compute.address, "job_id": job_id, "kind": "evaluate",
        "coordinator": coordinator.address,
        "attestation": {"kind": coordinator.kind, "evidence_cid": coordinator.evidence_cid},
        "program_digest": digest, "spec_cid": spec_cid, "dataset_id": p.dataset_id,
        "dataset_root": dataset_root(dep, p.dataset_id, info.entry_count),
        "snapshot": info.entry_count, "proposal_id": proposal_id,
        "report_cid": evaluated.report_cid, "metric_bps": score, "score_posted": posted,
        "model_in": None, "model_out": None, "tasks": 0, "recomputed": 0,
        "verdicts_head": hashlib.sha256(b"databright: tmr verdict chain v1").hexdigest(),
        "items": 0, "cap_bps": 0, "workers": [], "liars": [],
    }
    _settle(dep, consumer, coordinator, body)
    return EvaluationJob(job_id, str(receipt_path(dep, job_id)), evaluated, score, posted)
