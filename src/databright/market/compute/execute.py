"""The coordinator's side of a training job: plan it, run it under TMR, sign and settle it.

The consumer's side (:mod:`.train_job`) wrote the job's spec to the store and escrowed the money
with ``create_job``; everything here is what the coordinator does with that job, whichever
executor brings the workers (in-process identities or HTTP-pull workers).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError
from databright.market.compute.identities import compute_dir
from databright.market.compute.options import JobOptions
from databright.market.compute.receipts import ReceiptFile, canonical
from databright.market.compute.run import _Run
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.compute.board import TaskBoard
    from databright.compute.scheduler import WorkerInfo
    from databright.market.compute.coordinator import Coordinator
    from databright.market.compute.executor import Executor

__all__ = ["Executed", "JobSpec", "execute_train", "ledger_key", "read_spec", "receipt_path"]

Progress = Callable[[str, int, int], None]
_MAX_SPEC = 1 << 20


@dataclass(frozen=True)
class JobSpec:
    """What a consumer asks for (stored by CID, named by the job on chain)."""

    dataset_id: int
    snapshot: int
    family: str
    config: dict[str, Any]
    cap_bps: int
    options: JobOptions = field(default_factory=JobOptions)

    def to_bytes(self) -> bytes:
        from databright.market.compute.receipts import canonical

        return canonical({"kind": "train", "dataset_id": self.dataset_id,
                          "snapshot": self.snapshot, "family": self.family,
                          "config": self.config, "cap_bps": self.cap_bps,
                          **self.options.to_fields()})


def read_spec(raw: bytes) -> JobSpec:
    """A job spec from (untrusted) bytes of the store.

    Raises:
        UsageError: not a training job spec.
    """
    if len(raw) > _MAX_SPEC:
        raise UsageError("a job spec is at most 1 MiB")
    try:
        d = json.loads(raw)
        if d.get("kind") != "train" or not isinstance(d.get("config"), dict):
            raise ValueError("not a training job")
        spec = JobSpec(int(d["dataset_id"]), int(d["snapshot"]), str(d["family"]),
                       dict(d["config"]), int(d["cap_bps"]), JobOptions.from_fields(d))
    except UsageError as exc:
        raise UsageError(f"not a job spec: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"not a job spec: {exc}") from None
    return spec


@dataclass
class Executed:
    """A settled job: its receipt (and file), checkpoint and run."""

    job_id: int
    receipt: ReceiptFile
    path: Path
    result: Any
    cid: str
    sha256: str
    run: _Run
    #: perf_counter marks: the step loop's start and end, settlement's end; and the steps
    timing: dict[str, float] = field(default_factory=dict)


def ledger_key(dep: Deployment, ds_id: int) -> str:
    """The exposure ledger's name for a dataset: market address and id."""
    return f"{dep.market.address.lower()}:{ds_id}"


def receipt_path(dep: Deployment, job_id: int) -> Path:
    """Where this home keeps the receipt of ``job_id``."""
    return compute_dir(dep.home) / "receipts" / f"job-{job_id}.json"


def execute_train(
    dep: Deployment,
    operator: Signer,
    coordinator: Coordinator,
    job_id: int,
    pool: Sequence[WorkerInfo],
    board: TaskBoard,
    executor: Executor,
    *,
    on_run: Callable[[_Run], None] | None = None,
    progress: Progress | None = None,
    spot_checker: str = "coordinator",
    spot_seed: bytes | None = None,
) -> Executed:
    """Run job ``job_id`` (which names ``coordinator``) on ``pool`` and settle it.

    A job whose options ask for ``spot`` verification runs one worker per shard
    (:mod:`.spot_run`); ``spot_checker`` says who re-runs its checked segments (the coordinator
    or a second worker), ``spot_seed`` fixes its secret seed (tests only).

    Raises whatever stops the job, after settling what was done (see :func:`_abort`).
    """
    from databright.compute.exposure import ExposureLedger
    from databright.compute.grad import task_program_digest
    from databright.compute.scheduler import plan
    from databright.compute.trainer import Trainer
    from databright.market.compute.spot_run import SpotRun
    from databright.market.compute.train_job import dataset_root, distinct
    from databright.market.model_data import training_records, validation_records
    from databright.training import get_family, save_checkpoint

    job = dep.compute.get_job(job_id)
    if job.coordinator.lower() != coordinator.address.lower() or job.status != "open":
        raise UsageError(f"job #{job_id} is {job.status} for {job.coordinator}, not an open "
                         f"job of {coordinator.address}")
    spec = read_spec(dep.store.get(job.spec_cid))
    if spec.options.split != 1:  # filled in by the splitting work
        raise UsageError(f"job #{job_id} asks for {spec.options}, which this coordinator "
                         "does not run yet")
    fam = get_family(spec.family)
    cfg = fam.config(spec.config)
    key = ledger_key(dep, spec.dataset_id)
    train = distinct(training_records(dep, spec.dataset_id, spec.snapshot))
    val = validation_records(dep, spec.dataset_id)
    ledger = ExposureLedger(compute_dir(dep.home) / "exposure.sqlite")
    fees = {w.account: w.min_fee for w in pool}
    meta = {"dataset_id": spec.dataset_id, "snapshot": spec.snapshot,
            "dataset_root": dataset_root(dep, spec.dataset_id, spec.snapshot),
            "program_digest": "0x" + task_program_digest(fam, cfg)}
    if meta["program_digest"] != "0x" + job.program_digest.hex():
        raise UsageError(f"job #{job_id} names program 0x{job.program_digest.hex()[:12]}…, "
                         "not the one its spec describes")
    run: _Run | None = None
    try:
        # the seed pairing accounts into triples is the coordinator's secret: nobody can
        # arrange to land beside accomplices (docs/compute-market.md)
        spot = spec.options.verification == "spot"
        the_plan = plan(key, len(train), pool, ledger, cap_bps=spec.cap_bps,
                        seed=secrets.token_hex(16), replicas=1 if spot else 3)
        args = (dep, coordinator, the_plan, ledger, key, len(train), spec.cap_bps, train, board)
        if spot:
            run = SpotRun(*args, job=f"job-{job_id}", ppm=spec.options.spot_ppm,
                          checker=spot_checker, seed=spot_seed)
        else:
            run = _Run(*args)
        if on_run is not None:
            on_run(run)
        shard_of = {train[i].cid: s.index for s in the_plan.shards for i in s.items}

        def make_trainer() -> Trainer:
            return Trainer(fam, cfg, train, val, shard_of, snapshot=spec.snapshot,
                           job=f"job-{job_id}", progress=progress)

        looped = time.perf_counter()
        if isinstance(run, SpotRun):  # replays from the start after each caught liar
            trainer = run.train(make_trainer, executor)
        else:
            trainer = make_trainer()
            for step in trainer.steps():
                weights_cid = dep.store.put_bytes(step.weights)
                trainer.apply(step, run.step(step.tasks(weights_cid), executor))
        stepped = time.perf_counter()
        result = trainer.finish()
        stored = save_checkpoint(dep.store, result.checkpoint)
    except BaseException as exc:
        _abort(dep, operator, coordinator, run, job_id, job.spec_cid, meta, fees, exc)
        raise
    body = run.body(job_id=job_id, kind="train", spec_cid=job.spec_cid, spec=meta,
                    model_in=None, model_out="0x" + stored.sha256,
                    metric_bps=result.accuracy_bps, fees=fees)
    body["checkpoint_program_digest"] = "0x" + result.checkpoint.program_digest
    body["verdicts_cid"] = dep.store.put_bytes(run.chain.to_json().encode())
    body["plan_cid"] = dep.store.put_bytes(canonical(the_plan.as_dict()))
    receipt = _settle(dep, operator, coordinator, body)
    timing = {"steps": trainer.total_steps, "looped": looped, "stepped": stepped,
              "settled": time.perf_counter()}
    return Executed(job_id, receipt, receipt_path(dep, job_id), result, stored.cid,
                    stored.sha256, run, timing)


def _settle(dep: Deployment, operator: Signer, coordinator: Coordinator,
            body: Mapping[str, Any]) -> ReceiptFile:
    receipt = ReceiptFile.sign(dep.compute, body, coordinator.enclave)
    _write_atomic(receipt_path(dep, int(body["job_id"])), receipt.dumps())
    for part, signature in receipt.receipts():
        dep.compute.settle(operator, part, signature)
    return receipt


def _abort(dep: Deployment, operator: Signer, coordinator: Coordinator, run: _Run | None,
           job_id: int, spec_cid: str, meta: Mapping[str, Any], fees: Mapping[str, int],
           exc: BaseException) -> None:
    """A job that cannot finish settles at once instead of locking the escrow until its
    deadline: workers are paid for the tasks they answered right, liars are slashed, the rest
    is refunded. The receipt says why (``aborted``); it names no model."""
    from databright.compute.board import TaskBoard
    from databright.compute.exposure import ExposureLedger
    from databright.compute.scheduler import Plan

    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    try:
        if run is None:  # refused before anything ran (e.g. the pool is too small)
            ledger = ExposureLedger(":memory:")
            empty = Plan(dataset="-", n_items=1, cap_bps=500, determinism_class="-", seed=0,
                         shards=[], candidates=[], ledger=ledger)
            run = _Run(dep, coordinator, empty, ledger, "-", 1, 500, [], TaskBoard())
        body = run.body(job_id=job_id, kind="train", spec_cid=spec_cid, spec=meta,
                        model_in=None, model_out=None, metric_bps=0, fees=fees)
        body["aborted"] = reason
        body["verdicts_cid"] = dep.store.put_bytes(run.chain.to_json().encode())
        _settle(dep, operator, coordinator, body)
    except Exception as settle_exc:  # noqa: BLE001 - the original error is what the user sees
        exc.add_note(f"job #{job_id} could not be settled ({settle_exc}); its consumer can "
                     f"cancel it after its deadline with `databright job cancel {job_id}`")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
