"""A training job run by this home's coordinator under triple modular redundancy.

One job, from escrow to settlement:

1. the coordinator (enclave key, evidence) is registered; the pool is the workers registered for
   it in one determinism class (the local executor registers and stakes its identities first);
2. the scheduler cuts the dataset's items into shards under the exposure cap and gives each shard
   three distinct accounts (sticky across jobs); a pool too small is refused with how many more
   workers it needs, before any money moves;
3. ``create_job`` escrows the dataset's training fee plus a compute budget;
4. every optimiser step becomes one task per shard the batch touches; each task goes to its
   three accounts through the lease board; equal result digests are accepted, otherwise the
   coordinator recomputes the task and names every account whose result differs a liar (banned
   from the job, replaced by a spare, slashed at settlement); the coordinator sums the accepted
   gradients and steps, so the checkpoint is the program's own bits;
5. the receipt (program, dataset root and snapshot, model digests, the verdict chain, per-worker
   exposure and payout, the liars) is signed by the enclave key and settled in parts.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError
from databright.market.compute.coordinator import open_coordinator
from databright.market.compute.executor import FAULT_MODES, LocalExecutor
from databright.market.compute.identities import compute_dir
from databright.market.compute.pool import ensure_local_pool
from databright.market.compute.receipts import ReceiptFile
from databright.market.compute.run import _Run
from databright.market.context import Deployment
from databright.market.datasets import dataset_id, entries_of
from databright.market.model_data import training_records, validation_records

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

__all__ = ["DEFAULT_WORKERS", "JobOutcome", "run_train_job"]

DEFAULT_PRICE = 10**15  # 0.001 ETH per prediction
DEFAULT_WORKERS = 60  # 20 shards of at most 5% each, 3 replicas per shard
JOB_SECONDS = 86_400  # a job's deadline on chain: a coordinator that never settles is cancelled
LEASE_SECONDS = 60.0
Progress = Callable[[str, int, int], None]


@dataclass
class JobOutcome:
    """A finished job: its id, receipt (and file), checkpoint and what each worker did."""

    job_id: int
    receipt: ReceiptFile
    receipt_path: Path
    cid: str
    sha256: str
    accuracy_bps: int
    liars: list[str]
    exposure: dict[str, float]
    seconds: float
    fees_paid: int
    trained: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``train --compute local --json``."""
        body = self.receipt.body
        t = self.trained
        return {
            "job": self.job_id, "receipt": str(self.receipt_path),
            "receipt_hash": self.receipt.receipt_hash, "coordinator": body["coordinator"],
            "family": t.checkpoint.family if t else None,
            "program_digest": body["program_digest"], "snapshot": body["snapshot"],
            "cid": self.cid, "sha256": self.sha256, "accuracy_bps": self.accuracy_bps,
            "accuracy": self.accuracy_bps / 10_000, "validation_items":
                t.evaluation.total if t else None,
            "tasks": body["tasks"], "recomputed": body["recomputed"],
            "reissued": self.extra.get("reissued", {}),
            "workers": len(body["workers"]), "liars": self.liars,
            "exposure": self.exposure, "max_exposure": max(self.exposure.values(), default=0.0),
            "cap": body["cap_bps"] / 10_000,
            "fees_paid_wei": str(self.fees_paid),
            "training_fee_wei": str(self.extra.get("training_fee", 0)),
            "seconds": round(self.seconds, 3),
            "model": self.extra.get("model"), "checkpoint": self.extra.get("checkpoint"),
        }


def dataset_root(dep: Deployment, ds_id: int, snapshot: int) -> str:
    """sha256 over the Merkle roots of the dataset's first ``snapshot`` entries, in order."""
    h = hashlib.sha256()
    for entry in entries_of(dep, ds_id, upto=snapshot):
        h.update(bytes(entry.merkle_root))
    return "0x" + h.hexdigest()


def run_train_job(
    dep: Deployment,
    consumer: Signer,
    dataset: str,
    family: str,
    *,
    config: Mapping[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
    faults: Mapping[int, str] | None = None,
    cap_bps: int | None = None,
    register: bool = False,
    name: str | None = None,
    price_per_prediction: int = DEFAULT_PRICE,
    royalty_bps: int | None = None,
    progress: Progress | None = None,
) -> JobOutcome:
    """Train ``family`` on ``dataset`` with the local executor (``workers`` identities).

    Args:
        faults: ``{identity index: fault mode}``: identities that lie (tests and benchmarks).
        cap_bps: exposure cap per account (default and maximum: 500 = 5 %).
    """
    from databright.chain.wrapper import checksum
    from databright.compute.exposure import MAX_CAP_BPS, ExposureLedger
    from databright.compute.grad import determinism_class_digest
    from databright.compute.scheduler import WorkerInfo, plan
    from databright.compute.trainer import Trainer
    from databright.training import get_family, save_checkpoint

    start = time.perf_counter()
    unknown = sorted(set((faults or {}).values()) - set(FAULT_MODES))
    if unknown:
        raise UsageError(f"unknown fault mode(s) {unknown}: use one of {', '.join(FAULT_MODES)}")
    if faults and not all(0 <= i < workers for i in faults):
        raise UsageError(f"a faulty worker is an index in 0..{workers - 1}")
    cap = MAX_CAP_BPS if cap_bps is None else int(cap_bps)
    fam = get_family(family)
    cfg = fam.config(dict(config) if config is not None else None)
    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    train = _distinct(training_records(dep, ds_id))
    val = validation_records(dep, ds_id)
    snapshot = info.entry_count
    coordinator = open_coordinator(dep, consumer)
    klass = determinism_class_digest(cfg.threads)
    identities = ensure_local_pool(dep, consumer, coordinator.address, workers, klass)
    mine = {s.address.lower() for s in identities}
    pool = []
    for signer in identities:  # as the chain has them now (class, fee)
        w = dep.compute.get_worker(signer.address)
        pool.append(WorkerInfo(signer.address.lower(), w.determinism_class.hex(), w.min_fee))
    ledger = ExposureLedger(compute_dir(dep.home) / "exposure.sqlite")
    ledger_key = f"{dep.market.address.lower()}:{ds_id}"
    # the seed that pairs accounts into triples is the coordinator's secret until the job is
    # planned: nobody can arrange to land with accomplices (docs/compute-market.md)
    the_plan = plan(ledger_key, len(train), pool, ledger, cap_bps=cap,
                    seed=secrets.token_hex(16))
    shard_of = {train[i].cid: s.index for s in the_plan.shards for i in s.items}
    namespace = f"job-{secrets.token_hex(8)}"
    trainer = Trainer(fam, cfg, train, val, shard_of, snapshot=snapshot, job=namespace,
                      progress=progress)
    fee_of = {w.account: w.min_fee for w in pool}
    spec = {"kind": "train", "namespace": namespace, "dataset_id": ds_id, "snapshot": snapshot,
            "dataset_root": dataset_root(dep, ds_id, snapshot), "family": fam.name,
            "config": trainer.cfg.to_dict(), "program_digest": "0x" + trainer.program_digest,
            "plan": the_plan.as_dict()}
    spec_cid = dep.store.put_bytes(_canonical(spec))
    bound = trainer.total_steps * min(len(the_plan.shards), trainer.cfg.batch_size)
    budget = _budget(bound, max(fee_of.values()))
    deadline = dep.chain.now() + JOB_SECONDS
    job_id = dep.compute.create_job(
        consumer, ds_id, coordinator.address, "0x" + trainer.program_digest, spec_cid, deadline,
        info.training_fee + budget).value
    run = _Run(dep, coordinator, the_plan, ledger, ledger_key, len(train), cap, train)
    executor = LocalExecutor(sorted(mine), _honest, dep.store.get,
                             {identities[i].address: m for i, m in (faults or {}).items()})
    looped = time.perf_counter()
    try:
        for step in trainer.steps():
            weights_cid = dep.store.put_bytes(step.weights)
            specs = step.tasks(weights_cid)
            accepted = run.step(specs, executor)
            trainer.apply(step, accepted)
        stepped = time.perf_counter()
        result = trainer.finish()
        stored = save_checkpoint(dep.store, result.checkpoint)
    except BaseException as exc:
        _abort(dep, consumer, run, job_id, spec_cid, spec, fee_of, exc)
        raise
    body = run.body(job_id=job_id, kind="train", spec_cid=spec_cid, spec=spec,
                    model_in=None, model_out="0x" + stored.sha256,
                    metric_bps=result.accuracy_bps, fees=fee_of)
    body["verdicts_cid"] = dep.store.put_bytes(run.chain.to_json().encode())
    receipt = ReceiptFile.sign(dep.compute, body, coordinator.enclave)
    path = receipt_path(dep, job_id)
    _write_atomic(path, receipt.dumps())
    for part, signature in receipt.receipts():
        dep.compute.settle(consumer, part, signature)
    settled = time.perf_counter()
    model = checkpoint = None
    if register:
        model, checkpoint = _register(dep, consumer, coordinator, info, dataset, result, stored,
                                      name or f"{info.name}-{fam.name}", price_per_prediction,
                                      royalty_bps)
    exposure = {w["account"]: w["exposure"] for w in body["workers"]}
    return JobOutcome(
        job_id=job_id, receipt=receipt, receipt_path=path, cid=stored.cid,
        sha256=stored.sha256, accuracy_bps=result.accuracy_bps, liars=list(body["liars"]),
        exposure=exposure, seconds=time.perf_counter() - start,
        fees_paid=sum(int(w["fee"]) for w in body["workers"]), trained=result,
        extra={"tasks": body["tasks"], "recomputed": run.recomputed,
               "reissued": {checksum(a): n for a, n in sorted(run.reissued.items())},
               "training_fee": info.training_fee, "budget": budget, "model": model,
               "checkpoint": checkpoint,
               # where the job's time went (benchmarks/compute_overhead.py); the workers'
               # compute excludes the blob fetches, which the coordinator serves
               "timing": {"steps": trainer.total_steps, "setup_s": looped - start,
                          "steps_s": stepped - looped, "finish_s": settled - stepped,
                          "worker_compute_s": executor.compute_seconds - executor.fetch_seconds,
                          "worker_fetch_s": executor.fetch_seconds}},
    )


def trust_on_dev_chain(dep: Deployment, enclave: str) -> bool:
    """On the embedded chain, make the registry trust this home's coordinator (the embedded
    deployer owns the registry); elsewhere the registry's owner decides. Returns whether the
    enclave's attestations count."""
    from databright.chain.embedded import faucet_account

    if dep.registry.is_trusted_attestor(enclave):
        return True
    if not dep.chain.is_embedded:
        return False
    dep.registry.set_attestor(faucet_account(), enclave, True)
    return True


def _register(dep: Deployment, consumer: Signer, coordinator: Any, info: Any, dataset: str,
              result: Any, stored: Any, name: str, price: int,
              royalty_bps: int | None) -> tuple[Any, Any]:
    """Register the job's model and submit its checkpoint with the coordinator's attestation
    (self-reported when the registry does not trust the coordinator)."""
    from databright.market.models import (
        attestation_signature,
        get_model,
        register_model,
        submit_checkpoint,
        trusted_signer,
    )

    ckpt = result.checkpoint
    model = register_model(dep, consumer, dataset, name=name, program_digest=ckpt.program_digest,
                           price_per_prediction=price, royalty_bps=royalty_bps)
    trust_on_dev_chain(dep, coordinator.address)
    signature = b""
    if trusted_signer(dep, model.model_id, coordinator.address):
        signature = attestation_signature(dep, coordinator.enclave, model.model_id,
                                          stored.sha256, info.entry_count, result.accuracy_bps)
    checkpoint = submit_checkpoint(dep, consumer, model.model_id, cid=stored.cid,
                                   sha256=stored.sha256, entries=info.entry_count,
                                   metric_bps=result.accuracy_bps, signature=signature)
    return get_model(dep, model.model_id), checkpoint


def receipt_path(dep: Deployment, job_id: int) -> Path:
    """Where this home keeps the receipt of ``job_id``."""
    return compute_dir(dep.home) / "receipts" / f"job-{job_id}.json"


def _abort(dep: Deployment, consumer: Signer, run: _Run, job_id: int, spec_cid: str,
           spec: Mapping[str, Any], fees: Mapping[str, int], exc: BaseException) -> None:
    """A job that cannot finish settles at once instead of locking the escrow until its
    deadline: workers are paid for the tasks they answered right, liars are slashed, the rest
    is refunded. The receipt says why (``aborted``); it names no model."""
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    try:
        body = run.body(job_id=job_id, kind="train", spec_cid=spec_cid, spec=spec,
                        model_in=None, model_out=None, metric_bps=0, fees=fees)
        body["aborted"] = reason
        body["verdicts_cid"] = dep.store.put_bytes(run.chain.to_json().encode())
        receipt = ReceiptFile.sign(dep.compute, body, run.coordinator.enclave)
        _write_atomic(receipt_path(dep, job_id), receipt.dumps())
        for part, signature in receipt.receipts():
            dep.compute.settle(consumer, part, signature)
    except Exception as settle_exc:  # noqa: BLE001 - the original error is what the user sees
        exc.add_note(f"job #{job_id} could not be settled ({settle_exc}); its consumer can "
                     f"cancel it after its deadline with `databright job cancel {job_id}`")


def _honest(spec_bytes: bytes, fetch: Callable[[str], bytes]) -> bytes:
    from databright.compute.grad import run_task
    from databright.compute.spec import TaskSpec

    return run_task(TaskSpec.from_bytes(spec_bytes), fetch)


def _distinct(records: list[Any]) -> list[Any]:
    """The records with each CID once (first occurrence): exposure counts distinct items."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.cid not in seen:
            seen.add(r.cid)
            out.append(r)
    return out


def _write_atomic(path: Path, text: str) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _canonical(value: Any) -> bytes:
    from databright.market.compute.receipts import canonical

    return canonical(value)


def _budget(tasks: int, fee: int) -> int:
    """Escrow for ``tasks`` tasks at three replicas and a spare for each, at ``fee`` a task."""
    return tasks * 4 * fee
