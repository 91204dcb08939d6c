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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError
from databright.market.compute.coordinator import open_coordinator
from databright.market.compute.execute import JobSpec, execute_train, ledger_key
from databright.market.compute.executor import FAULT_MODES, LocalExecutor, VirtualClock
from databright.market.compute.identities import compute_dir
from databright.market.compute.options import JobOptions
from databright.market.compute.pool import ensure_local_pool
from databright.market.compute.receipts import ReceiptFile
from databright.market.compute.remote_worker import honest_compute
from databright.market.compute.run import LEASE_SECONDS
from databright.market.context import Deployment
from databright.market.datasets import dataset_id, entries_of
from databright.market.model_data import training_records

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.compute.scheduler import WorkerInfo

__all__ = ["JobOutcome", "run_train_job", "submit_train_job", "workers_needed"]

DEFAULT_PRICE = 10**15  # 0.001 ETH per prediction
SPARES = 3  # identities beyond the fewest a job needs, so a liar or a silent worker is replaced


def workers_needed(n_items: int, cap_bps: int = 500, replicas: int = 3) -> int:
    """The fewest fresh accounts that serve ``n_items`` under the cap: ``replicas`` answers per
    item, at most the cap's items per account, so ⌈replicas · n / cap⌉ (60 when 5 % of the
    items is a whole number); every one of them gets items."""
    from databright.compute.exposure import cap_items

    cap = cap_items(n_items, cap_bps)
    if cap == 0:
        raise UsageError(f"{n_items} items are too few for a cap of {cap_bps / 100:g}%: no "
                         "worker may see even one")
    return -(-replicas * n_items // cap)
JOB_SECONDS = 86_400  # a job's deadline on chain: a coordinator that never settles is cancelled
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
            "verification": _verification_summary(body),
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


def submit_train_job(
    dep: Deployment,
    consumer: Signer,
    dataset: str,
    family: str,
    coordinator: str,
    pool: Sequence[WorkerInfo],
    *,
    config: Mapping[str, Any] | None = None,
    cap_bps: int | None = None,
    options: JobOptions | None = None,
) -> tuple[int, int]:
    """The consumer's side: check the pool can serve the job, write its spec, escrow the
    training fee and a budget; returns ``(job id, budget)``.

    Raises:
        PoolTooSmall: the pool cannot serve the job under the cap (nothing was paid).
    """
    from databright.compute.exposure import MAX_CAP_BPS, ExposureLedger, check_cap
    from databright.compute.grad import task_program_digest
    from databright.compute.scheduler import plan
    from databright.training import get_family

    cap = check_cap(MAX_CAP_BPS if cap_bps is None else int(cap_bps))
    fam = get_family(family)
    cfg = fam.config(dict(config) if config is not None else None)
    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    train = distinct(training_records(dep, ds_id))
    ledger = ExposureLedger(compute_dir(dep.home) / "exposure.sqlite")
    options = options or JobOptions()
    the_plan = plan(ledger_key(dep, ds_id), len(train), pool, ledger, cap_bps=cap, seed=0,
                    replicas=_replicas(options))
    spec = JobSpec(ds_id, info.entry_count, fam.name, cfg.to_dict(), cap, options)
    spec_cid = dep.store.put_bytes(spec.to_bytes())
    steps = -(-len(train) // cfg.batch_size) * cfg.epochs
    bound = steps * min(len(the_plan.shards), cfg.batch_size)
    budget = _budget(bound, max(w.min_fee for w in pool))
    deadline = dep.chain.now() + JOB_SECONDS
    job_id = dep.compute.create_job(
        consumer, ds_id, coordinator, "0x" + task_program_digest(fam, cfg), spec_cid,
        deadline, info.training_fee + budget).value
    return job_id, budget


def run_train_job(
    dep: Deployment,
    consumer: Signer,
    dataset: str,
    family: str,
    *,
    config: Mapping[str, Any] | None = None,
    workers: int | None = None,
    faults: Mapping[int, str] | None = None,
    fault_accounts: Mapping[str, str] | None = None,
    cap_bps: int | None = None,
    register: bool = False,
    name: str | None = None,
    price_per_prediction: int = DEFAULT_PRICE,
    royalty_bps: int | None = None,
    progress: Progress | None = None,
    options: JobOptions | None = None,
    spot_checker: str = "coordinator",
    spot_seed: bytes | None = None,
) -> JobOutcome:
    """Train ``family`` on ``dataset`` with the local executor (``workers`` identities): the
    consumer submits, this home's coordinator runs and settles it.

    Args:
        workers: local identities (default: :func:`workers_needed` plus :data:`SPARES`).
        faults: ``{index: fault mode}``: the index-th identity the job's plan gives work lies
            that way (tests, benchmarks, the demo).
        fault_accounts: ``{address: fault mode}``: these identities lie (benchmarks).
        cap_bps: exposure cap per account (default and maximum: 500 = 5 %).
        options: splitting and verification (``spot``: one worker per shard, so the default
            pool is a third of TMR's); spot_checker, spot_seed: see :func:`execute_train`.
    """
    from databright.chain.wrapper import checksum
    from databright.compute.board import TaskBoard
    from databright.compute.exposure import MAX_CAP_BPS
    from databright.compute.grad import determinism_class_digest
    from databright.compute.scheduler import WorkerInfo
    from databright.training import get_family

    start = time.perf_counter()
    if workers is None:
        n_items = len(distinct(training_records(dep, dataset_id(dep, dataset))))
        workers = workers_needed(n_items, MAX_CAP_BPS if cap_bps is None else cap_bps,
                                 _replicas(options or JobOptions())) + SPARES
    unknown = sorted((set((faults or {}).values()) | set((fault_accounts or {}).values()))
                     - set(FAULT_MODES))
    if unknown:
        raise UsageError(f"unknown fault mode(s) {unknown}: use one of {', '.join(FAULT_MODES)}")
    if faults and not all(0 <= i < workers for i in faults):
        raise UsageError(f"a faulty worker is an index in 0..{workers - 1}")
    fam = get_family(family)
    cfg = fam.config(dict(config) if config is not None else None)
    coordinator = open_coordinator(dep, consumer)
    klass = determinism_class_digest(cfg.threads)
    identities = ensure_local_pool(dep, consumer, coordinator.address, workers, klass)
    pool = []
    for signer in identities:  # as the chain has them now (class, fee)
        w = dep.compute.get_worker(signer.address)
        pool.append(WorkerInfo(signer.address.lower(), w.determinism_class.hex(), w.min_fee))
    job_id, budget = submit_train_job(dep, consumer, dataset, family, coordinator.address, pool,
                                      config=cfg.to_dict(), cap_bps=cap_bps, options=options)
    clock = VirtualClock(LEASE_SECONDS + 1)
    holder: dict[str, Any] = {}
    board = TaskBoard(clock, spare=lambda task, account: holder["run"].spare(task, account))
    executor = LocalExecutor([w.account for w in pool], honest_compute, dep.store.get,
                             clock=clock)

    def planned(run: Any) -> None:
        holder["run"] = run
        # fault INDEX names the INDEX-th identity the plan gives work (a spare never lies)
        busy = {a for s in run.plan.shards for a in s.replicas}
        working = [w.account for w in pool if w.account in busy]
        for index, mode in (faults or {}).items():
            if index >= len(working):
                raise UsageError(f"--fault {index}: only {len(working)} identities have work")
            executor.faults[working[index]] = mode
        for account, mode in (fault_accounts or {}).items():
            executor.faults[account.lower()] = mode

    done = execute_train(dep, consumer, coordinator, job_id, pool, board, executor,
                         on_run=planned, progress=progress, spot_checker=spot_checker,
                         spot_seed=spot_seed)
    info = dep.market.get_dataset(dataset_id(dep, dataset))
    model = checkpoint = None
    if register:
        model, checkpoint = _register(dep, consumer, coordinator, info, dataset, done.result,
                                      done.cid, done.sha256, name or f"{info.name}-{fam.name}",
                                      price_per_prediction, royalty_bps)
    body = done.receipt.body
    return JobOutcome(
        job_id=job_id, receipt=done.receipt, receipt_path=done.path, cid=done.cid,
        sha256=done.sha256, accuracy_bps=done.result.accuracy_bps, liars=list(body["liars"]),
        exposure={w["account"]: w["exposure"] for w in body["workers"]},
        seconds=time.perf_counter() - start,
        fees_paid=sum(int(w["fee"]) for w in body["workers"]), trained=done.result,
        extra={"tasks": body["tasks"], "recomputed": body["recomputed"],
               "reissued": {checksum(a): n for a, n in sorted(done.run.reissued.items())},
               "training_fee": info.training_fee, "budget": budget, "model": model,
               "checkpoint": checkpoint,
               # where the job's time went (benchmarks/compute_overhead.py); the workers'
               # compute excludes the blob fetches, which the coordinator serves
               "timing": {"steps": done.timing["steps"],
                          "setup_s": done.timing["looped"] - start,
                          "steps_s": done.timing["stepped"] - done.timing["looped"],
                          "finish_s": done.timing["settled"] - done.timing["stepped"],
                          "worker_compute_s": executor.compute_seconds - executor.fetch_seconds,
                          "worker_fetch_s": executor.fetch_seconds}},
    )


def _verification_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """The receipt's verification record without its long lists (the receipt has them)."""
    v = dict(body.get("verification", {"mode": "tmr"}))
    if v.get("mode") == "spot":
        v["decided"], v["checked"] = len(v["decided"]), len(v["checked"])
        v.pop("seed", None)
    return v


def _replicas(options: JobOptions) -> int:
    """Workers per shard: three under TMR, one under spot verification."""
    return 1 if options.verification == "spot" else 3


def distinct(records: list[Any]) -> list[Any]:
    """The records with each CID once (first occurrence): exposure counts distinct items."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.cid not in seen:
            seen.add(r.cid)
            out.append(r)
    return out


def _budget(tasks: int, fee: int) -> int:
    """Escrow for ``tasks`` tasks at three replicas and a spare for each, at ``fee`` a task."""
    return tasks * 4 * fee


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
              result: Any, cid: str, sha256: str, name: str, price: int,
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
                                          sha256, info.entry_count, result.accuracy_bps)
    checkpoint = submit_checkpoint(dep, consumer, model.model_id, cid=cid,
                                   sha256=sha256, entries=info.entry_count,
                                   metric_bps=result.accuracy_bps, signature=signature)
    return get_model(dep, model.model_id), checkpoint
