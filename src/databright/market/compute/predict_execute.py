"""The coordinator's side of a prediction job: batches, verdicts, predictions, receipt, payment.

The consumer's side (:mod:`.predict_job`) stored the inputs and the spec and escrowed the price
and a budget with ``create_prediction_job``. Here the coordinator checks the spec against the
chain (the job's program, the model's checkpoint), runs every batch to its verdict
(:class:`~.predict_run.PredictRun`), stores the predictions (JSON: per item its name, CID, label
and class probabilities) and settles with one signed receipt whose last part is a
``PredictionReceipt``: workers paid, liars slashed, royalty to the dataset, the rest of the
price to the model's owner, the undelivered price and unspent budget back to the consumer. A job
that cannot finish settles at once with nothing delivered (the whole price refunded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError
from databright.market.compute.execute import _write_atomic, receipt_path
from databright.market.compute.predict_job import model_checkpoint, read_predict_spec
from databright.market.compute.receipts import RECEIPT_VERSION, ReceiptFile, canonical
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.compute.board import TaskBoard
    from databright.compute.scheduler import WorkerInfo
    from databright.market.compute.coordinator import Coordinator
    from databright.market.compute.executor import Executor
    from databright.market.compute.predict_run import PredictRun

__all__ = ["PredictExecuted", "execute_predict", "read_predictions"]

PREDICTIONS_FORMAT = "databright-predictions 1"


@dataclass
class PredictExecuted:
    """A settled prediction job: receipt (and file), the predictions' CID and the run."""

    job_id: int
    receipt: ReceiptFile
    path: Path
    predictions_cid: str
    predictions: list[dict[str, Any]]
    run: PredictRun
    #: seconds: checks and setup, the batches to their verdicts, storing + signing + settling
    timing: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        b = self.receipt.body
        return {"job": self.job_id, "kind": "predict", "receipt": str(self.path),
                "receipt_hash": self.receipt.receipt_hash, "model_id": b["model_id"],
                "count": b["count"], "delivered": b["delivered"],
                "predictions_cid": self.predictions_cid,
                "verification": b["verification"]["mode"],
                "spot_fraction": b["spot_fraction"], "tasks": b["tasks"],
                "recomputed": b["recomputed"], "liars": b["liars"], "payment": b["payment"],
                "predictions": [{"name": p["name"], "label": p["label"]}
                                for p in self.predictions]}


def execute_predict(
    dep: Deployment, operator: Signer, coordinator: Coordinator, job_id: int,
    pool: Sequence[WorkerInfo], board: TaskBoard, executor: Executor, *,
    on_run: Callable[[PredictRun], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> PredictExecuted:
    """Run prediction job ``job_id`` (which names ``coordinator``) on ``pool`` and settle it."""
    from databright.compute.predict import PredictItem, batch_spec, predict_program_digest
    from databright.market.compute.predict_job import class_pool
    from databright.market.compute.predict_run import PredictRun
    from databright.market.compute.train_job import dataset_root
    from databright.training import get_family

    t0 = time.perf_counter()
    job = dep.compute.get_job(job_id)
    if job.coordinator.lower() != coordinator.address.lower() or job.status != "open":
        raise UsageError(f"job #{job_id} is {job.status} for {job.coordinator}, not an open "
                         f"job of {coordinator.address}")
    terms = dep.compute.get_prediction_job(job_id)
    spec = read_predict_spec(dep.store.get(job.spec_cid))
    model, best, ckpt = model_checkpoint(dep, terms.model_id)
    if spec.model_id != terms.model_id or spec.count != terms.count or \
            spec.checkpoint_sha256 != best.file_sha256.hex():
        raise UsageError(f"job #{job_id}'s spec does not match its escrow or the model's best "
                         "checkpoint")
    family = get_family(ckpt.family)
    if "0x" + predict_program_digest(family, family.config(ckpt.config)) != \
            "0x" + job.program_digest.hex():
        raise UsageError(f"job #{job_id} names program 0x{job.program_digest.hex()[:12]}…, "
                         "not this model's prediction program")
    items = json.loads(dep.store.get(spec.items_cid))
    if not isinstance(items, list) or len(items) != spec.count:
        raise UsageError(f"job #{job_id}'s item list does not hold {spec.count} items")
    fits, _ = class_pool(pool, ckpt)
    fees = {w.account: w.min_fee for w in fits}
    meta = {"dataset_id": model.dataset_id, "snapshot": best.entries,
            "dataset_root": dataset_root(dep, model.dataset_id, best.entries),
            "program_digest": "0x" + job.program_digest.hex(), "model_id": terms.model_id,
            "checkpoint_sha256": "0x" + spec.checkpoint_sha256, "count": spec.count,
            "spot_fraction": spec.options.spot_fraction
            if spec.options.verification == "spot" else None}
    run: PredictRun | None = None
    try:
        run = PredictRun([w.account for w in fits], board, dep.store.get,
                         verification=spec.options.verification, spot_ppm=spec.options.spot_ppm)
        if on_run is not None:
            on_run(run)
        b = spec.batch_size
        specs = [batch_spec(f"job-{job_id}", f"batch-{k}", ckpt, spec.checkpoint_cid,
                            spec.checkpoint_sha256,
                            tuple(PredictItem(i["cid"], i["media_type"])
                                  for i in items[k * b:(k + 1) * b]))
                 for k in range(spec.batches)]
        t1 = time.perf_counter()
        accepted = run.run(specs, executor, progress)
        t2 = time.perf_counter()
        predictions = _predictions(ckpt.labels, items, specs, accepted)
    except BaseException as exc:
        if run is not None:
            _settle(dep, operator, coordinator, _body(dep, coordinator, run, job_id, job.spec_cid,
                                                      meta, fees, terms, 0, None,
                                                      aborted=_reason(exc)))
        raise
    predictions_cid = dep.store.put_bytes(canonical(
        {"format": PREDICTIONS_FORMAT, "job_id": job_id, "model_id": terms.model_id,
         "labels": list(ckpt.labels), "predictions": predictions}))
    body = _body(dep, coordinator, run, job_id, job.spec_cid, meta, fees, terms, spec.count,
                 predictions_cid)
    receipt = _settle(dep, operator, coordinator, body)
    timing = {"setup_s": t1 - t0, "batches_s": t2 - t1, "settle_s": time.perf_counter() - t2}
    return PredictExecuted(job_id, receipt, receipt_path(dep, job_id), predictions_cid,
                           predictions, run, timing)


def _predictions(labels: Sequence[str], items: list[dict[str, Any]], specs: Sequence[Any],
                 accepted: dict[str, bytes]) -> list[dict[str, Any]]:
    from databright.compute.predict import check_predict_result

    out: list[dict[str, Any]] = []
    for spec in specs:
        probs = check_predict_result(accepted[spec.task], spec.job, _task_of(accepted, spec),
                                     len(spec.items), len(labels))
        for row in probs.tolist():
            item = items[len(out)]
            best = max(range(len(row)), key=lambda k: row[k])
            out.append({"name": item["name"], "cid": item["cid"], "label": labels[best],
                        "probabilities": [float(p) for p in row]})
    return out


def _task_of(accepted: dict[str, bytes], spec: Any) -> str:
    """The task id the accepted result's metadata names (a redone batch's own id)."""
    from databright.compute.grad import read_payload

    return str(read_payload(accepted[spec.task])[1].get("task", spec.task))


def _body(dep: Deployment, coordinator: Coordinator, run: PredictRun, job_id: int,
          spec_cid: str, meta: dict[str, Any], fees: dict[str, int], terms: Any, delivered: int,
          predictions_cid: str | None, aborted: str | None = None) -> dict[str, Any]:
    from databright.chain.compute_predictions import split_payment
    from databright.chain.wrapper import checksum

    payouts = run.payouts(fees)
    accounts = sorted(set(run.correct) | run.banned)
    workers = [{"account": checksum(a), "tasks": run.correct.get(a, 0),
                "fee": str(payouts.get(a, 0))} for a in accounts]
    split = split_payment(terms.price_per_prediction, terms.count, delivered, terms.royalty_bps)
    body = {
        "version": RECEIPT_VERSION, "chain_id": dep.compute.chain_id(),
        "market": dep.compute.address, "job_id": int(job_id), "kind": "predict",
        "coordinator": coordinator.address,
        "attestation": {"kind": coordinator.kind, "evidence_cid": coordinator.evidence_cid},
        "spec_cid": spec_cid, **meta, "model_in": meta["checkpoint_sha256"], "model_out": None,
        "delivered": int(delivered), "predictions_cid": predictions_cid,
        "tasks": run.tasks, "recomputed": run.recomputed, "verification": run.record(),
        "verdicts_head": run.chain.head,
        "verdicts_cid": dep.store.put_bytes(run.chain.to_json().encode()),
        "workers": workers, "liars": [checksum(a) for a in sorted(run.banned)],
        "payment": {"price_per_prediction": str(terms.price_per_prediction),
                    "royalty_bps": terms.royalty_bps, "owner": terms.owner,
                    **{k: str(v) for k, v in split.items()},
                    "workers": str(sum(payouts.values()))},
    }
    if aborted is not None:
        body["aborted"] = aborted
    return body


def _settle(dep: Deployment, operator: Signer, coordinator: Coordinator,
            body: dict[str, Any]) -> ReceiptFile:
    from databright.chain.compute_predictions import PredictionReceipt

    receipt = ReceiptFile.sign(dep.compute, body, coordinator.enclave)
    _write_atomic(receipt_path(dep, int(body["job_id"])), receipt.dumps())
    for part, signature in receipt.receipts():
        if isinstance(part, PredictionReceipt):
            dep.compute.settle_prediction(operator, part, signature)
        else:
            dep.compute.settle(operator, part, signature)
    return receipt


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def read_predictions(dep: Deployment, job_id: int, receipt: Path | None = None
                     ) -> dict[str, Any]:
    """A settled prediction job's receipt summary and predictions (from this home's receipt
    of the job, or the file given), the predictions read from the store by their CID."""
    path = receipt or receipt_path(dep, job_id)
    if not path.is_file():
        raise UsageError(f"no receipt of job #{job_id} in this home (pass --receipt FILE, the "
                         "file its coordinator wrote)")
    r = ReceiptFile.loads(path.read_text())
    if r.body.get("kind") != "predict" or int(r.body["job_id"]) != int(job_id):
        raise UsageError(f"{path} is not the receipt of prediction job #{job_id}")
    cid = r.body.get("predictions_cid")
    if not cid:
        raise UsageError(f"job #{job_id} delivered no predictions "
                         f"({r.body.get('aborted', 'aborted')})")
    data = json.loads(dep.store.get(cid))
    return {"job_id": int(job_id), "receipt": str(path), "receipt_hash": r.receipt_hash,
            "model_id": r.body["model_id"], "delivered": r.body["delivered"],
            "verification": r.body["verification"]["mode"], "predictions_cid": cid,
            "labels": data["labels"], "predictions": data["predictions"]}
