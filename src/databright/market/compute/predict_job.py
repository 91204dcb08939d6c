"""A batch-prediction job on the compute market: the consumer's side and the local path.

1. The consumer names a registered model and files. The model's best (attested) checkpoint is
   read from the chain and its bytes from the store (sha256 checked); the files become stored
   items (:mod:`.predict_inputs`), listed in a JSON blob; the job's spec (model, checkpoint,
   items, batch size, verification) is stored by CID.
2. ``create_prediction_job`` escrows the model's price × the item count (the registry's terms:
   the consumer cannot choose them) plus a compute budget for the workers.
3. The coordinator (:mod:`.predict_execute`) cuts the items into batches, runs each batch as a
   ``predict`` task under TMR or spot checks, stores the predictions, signs the receipt and
   settles in one ``settle_prediction``: workers, royalty, model owner, refund.

``run_predict_job`` does all of it with this home's coordinator and local worker identities
(``job submit predict MODEL FILES… --local``); ``submit_predict_job`` alone escrows a job for a
remote coordinator (``--coordinator ADDR``), whose service runs it on HTTP-pull workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import NotFoundError, UsageError
from databright.market.compute.options import JobOptions
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.compute.scheduler import WorkerInfo

__all__ = ["DEFAULT_BATCH", "PredictJobSpec", "is_prediction_spec", "read_predict_spec",
           "run_predict_job", "submit_predict_job"]

DEFAULT_BATCH = 32
MAX_BATCH = 1024
JOB_SECONDS = 86_400
_MAX_SPEC = 1 << 20
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PredictJobSpec:
    """What a prediction job's consumer asked for (stored by CID, named by the job on chain)."""

    model_id: int
    checkpoint: int
    checkpoint_cid: str
    checkpoint_sha256: str
    items_cid: str
    count: int
    batch_size: int = DEFAULT_BATCH
    options: JobOptions = field(default_factory=JobOptions)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UsageError(f"the batch size is 1..{MAX_BATCH}, not {self.batch_size}")
        if self.options.split != 1:
            raise UsageError("a prediction job is not split (--split 1)")

    def to_bytes(self) -> bytes:
        from databright.market.compute.receipts import canonical

        return canonical({"kind": "predict", "model_id": self.model_id,
                          "checkpoint": {"number": self.checkpoint, "cid": self.checkpoint_cid,
                                         "sha256": self.checkpoint_sha256},
                          "items_cid": self.items_cid, "count": self.count,
                          "batch_size": self.batch_size, **self.options.to_fields()})

    @property
    def batches(self) -> int:
        return -(-self.count // self.batch_size)


def is_prediction_spec(raw: bytes) -> bool:
    """Whether stored job-spec bytes are a prediction job's (anything unreadable: no)."""
    try:
        return bool(json.loads(raw).get("kind") == "predict")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False


def read_predict_spec(raw: bytes) -> PredictJobSpec:
    """A prediction job's spec from (untrusted) store bytes. Raises UsageError."""
    if len(raw) > _MAX_SPEC:
        raise UsageError("a job spec is at most 1 MiB")
    try:
        d = json.loads(raw)
        if d.get("kind") != "predict":
            raise ValueError("not a prediction job")
        ck = d["checkpoint"]
        return PredictJobSpec(int(d["model_id"]), int(ck["number"]), str(ck["cid"]),
                              str(ck["sha256"]), str(d["items_cid"]), int(d["count"]),
                              int(d["batch_size"]), JobOptions.from_fields(d))
    except UsageError as exc:
        raise UsageError(f"not a prediction job spec: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"not a prediction job spec: {exc}") from None


def model_checkpoint(dep: Deployment, model_id: int) -> tuple[Any, Any, Any]:
    """``(model, best checkpoint, verified Checkpoint)``. Raises UsageError for an unknown
    model or one without a best (attested) checkpoint."""
    from databright.training import load_checkpoint

    try:
        model = dep.registry.get_model(int(model_id))
    except NotFoundError:
        raise UsageError(f"no model {model_id} in the registry") from None
    best = dep.registry.best_checkpoint(int(model_id))
    if best is None:
        raise UsageError(f"model {model_id} has no best (attested) checkpoint to predict with")
    return model, best, load_checkpoint(dep.store, best.cid, best.file_sha256.hex())


def class_pool(pool: Sequence[WorkerInfo], ckpt: Any) -> tuple[list[WorkerInfo], str]:
    """The workers of the checkpoint's determinism class (its config's threads)."""
    from databright.compute.grad import determinism_class_digest
    from databright.training import get_family

    threads = int(get_family(ckpt.family).config(ckpt.config).to_dict().get("threads", 1))
    klass = determinism_class_digest(threads)
    return [w for w in pool if w.determinism_class.removeprefix("0x") == klass], klass


def submit_predict_job(
    dep: Deployment, consumer: Signer, model_id: int, files: Sequence[Path], coordinator: str,
    pool: Sequence[WorkerInfo], *, batch_size: int = DEFAULT_BATCH,
    options: JobOptions | None = None,
) -> tuple[int, int, PredictJobSpec]:
    """Store the inputs and the spec, escrow price × count plus a budget; returns
    ``(job id, budget, spec)``. Raises UsageError before any money moves on bad input or a
    pool too small for the verification mode."""
    from databright.compute.predict import predict_program_digest
    from databright.market.compute.predict_inputs import read_inputs
    from databright.market.compute.receipts import canonical
    from databright.training import get_family

    options = options or JobOptions()
    model, best, ckpt = model_checkpoint(dep, model_id)
    family = get_family(ckpt.family)
    columns = list(ckpt.extra.get("columns", [])) if family.media == "table" else []
    fits, _ = class_pool(pool, ckpt)
    need = 3 if options.verification == "tmr" else 1
    if len(fits) < need:
        raise UsageError(f"{options.verification} needs {need} workers of the model's "
                         f"determinism class; coordinator {coordinator} has {len(fits)}")
    items = read_inputs(dep.store, files, family.media, columns)
    items_cid = dep.store.put_bytes(canonical([i.to_dict() for i in items]))
    spec = PredictJobSpec(int(model_id), best.checkpoint, best.cid, best.file_sha256.hex(),
                          items_cid, len(items), batch_size, options)
    spec_cid = dep.store.put_bytes(spec.to_bytes())
    per_batch = 4 if options.verification == "tmr" else 2  # replicas plus spares or redos
    budget = spec.batches * per_batch * max(w.min_fee for w in fits)
    digest = predict_program_digest(family, family.config(ckpt.config))
    job_id = dep.compute.create_prediction_job(
        consumer, int(model_id), len(items), coordinator, "0x" + digest, spec_cid,
        dep.chain.now() + JOB_SECONDS, model.price_per_prediction * len(items) + budget).value
    return job_id, budget, spec


def run_predict_job(
    dep: Deployment, consumer: Signer, model_id: int, files: Sequence[Path], *,
    workers: int | None = None, batch_size: int = DEFAULT_BATCH,
    options: JobOptions | None = None, faults: Mapping[int, str] | None = None,
    progress: Progress | None = None,
) -> Any:
    """The whole job with this home's coordinator and ``workers`` local identities (default:
    TMR's three plus two spares, or three for spot); ``faults`` = ``{index: mode}`` makes the
    index-th identity lie (tests, benchmarks). Returns the coordinator's ``PredictExecuted``."""
    from databright.compute.board import TaskBoard
    from databright.compute.scheduler import WorkerInfo
    from databright.market.compute.coordinator import open_coordinator
    from databright.market.compute.executor import LocalExecutor, VirtualClock
    from databright.market.compute.pool import ensure_local_pool
    from databright.market.compute.predict_execute import execute_predict
    from databright.market.compute.predict_run import LEASE_SECONDS
    from databright.market.compute.remote_worker import honest_compute

    options = options or JobOptions()
    _, _, ckpt = model_checkpoint(dep, model_id)
    coordinator = open_coordinator(dep, consumer)
    _, klass = class_pool([], ckpt)
    count = workers if workers is not None else 5
    identities = ensure_local_pool(dep, consumer, coordinator.address, count, klass)
    pool = []
    for s in identities:
        w = dep.compute.get_worker(s.address)
        pool.append(WorkerInfo(s.address.lower(), w.determinism_class.hex(), w.min_fee))
    job_id, _, _ = submit_predict_job(dep, consumer, model_id, files, coordinator.address, pool,
                                      batch_size=batch_size, options=options)
    clock = VirtualClock(LEASE_SECONDS + 1)
    holder: dict[str, Any] = {}
    board = TaskBoard(clock, spare=lambda task, account: holder["run"].spare(task, account))
    executor = LocalExecutor([w.account for w in pool], honest_compute, dep.store.get,
                             clock=clock)
    for index, mode in (faults or {}).items():
        executor.faults[pool[index].account] = mode
    return execute_predict(dep, consumer, coordinator, job_id, pool, board, executor,
                           on_run=lambda run: holder.__setitem__("run", run), progress=progress)
