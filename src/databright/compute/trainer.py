"""The coordinator's side of data-parallel training: batches split into shard tasks, gradients
summed in ascending shard order, AdamW stepped here.

The program is the model market's (:meth:`Family.fit`): the same canonical order, seed, initial
network and per-epoch permutations; step ``k`` of an epoch trains on ``perm[k·b : (k+1)·b]``.
What differs is only how a batch's gradient is computed: the batch's items are grouped by the
shard the scheduler put them in, one task per (step, shard) computes its items' share of the
batch's mean loss (:func:`~databright.compute.grad.run_task`), and the coordinator adds the
shards' gradients in ascending shard order. Floating-point addition is not associative, so the
shard map is part of the program: it is in the checkpoint's program digest, and the result is
bit-identical to :func:`~databright.compute.reference.fit_decomposed` (the same program in one
process), not to ``Family.fit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from databright.compute.grad import (
    check_result,
    code_digest,
    determinism_class_digest,
    grad_shapes,
    task_program_digest,
)
from databright.compute.spec import TaskItem, TaskSpec, WeightsRef
from databright.errors import UsageError
from databright.training.checkpoint import Checkpoint, sha256_hex
from databright.training.config import TrainConfig, canonical_json
from databright.training.determinism import determinism_class, deterministic, pinned
from databright.training.digest import program_digest
from databright.training.embed import EmbeddingCache
from databright.training.families import Family, Progress, TrainResult, get_family
from databright.training.families.base import (
    check_split,
    context,
    epoch_perms,
    evaluate_network,
    init_prep,
    network_tensors,
    optimizer,
)
from databright.training.records import Record

__all__ = ["JOB_CODE", "Step", "Trainer", "shard_map_digest"]

#: compute files whose code decides a data-parallel checkpoint's bits
JOB_CODE = ("grad.py", "spec.py", "trainer.py")
ShardOf = Mapping[str, int] | Callable[[Record], int]


def shard_map_digest(shards: Mapping[str, int]) -> str:
    """sha256 of the item → shard map (canonical JSON of the sorted ``[cid, shard]`` pairs)."""
    return sha256_hex(canonical_json(sorted(shards.items())).encode("utf-8"))


@dataclass(frozen=True)
class _Template:
    job: str
    family: str
    config: dict[str, Any]
    labels: tuple[str, ...]
    program_digest: str
    seed: int
    threads: int
    determinism_class: str


@dataclass(frozen=True)
class Step:
    """One optimiser step: the weights to compute at and, per shard, this batch's items.

    Attributes:
        epoch: 0-based epoch; batch: 0-based batch within it; index: 0-based step of the job.
        weights: checkpoint-format safetensors of the current network state (``net.*`` and
            ``prep.*``, e.g. a table's standardisation); weights_sha256: its sha256.
        shards: shard → the items of this batch in that shard, in batch order (ascending
            shards; a shard without items in this batch has no task).
        divisor: the number of items in the batch.
    """

    epoch: int
    batch: int
    index: int
    weights: bytes
    weights_sha256: str
    shards: Mapping[int, tuple[Record, ...]]
    divisor: int
    _template: _Template

    def task_id(self, shard: int) -> str:
        """The id of this step's task for ``shard``."""
        return f"step-{self.index}.shard-{shard}"

    def tasks(self, weights_cid: str) -> dict[int, TaskSpec]:
        """One TaskSpec per shard, the weights named by ``weights_cid`` (where the caller
        stored :attr:`weights`)."""
        t = self._template
        ref = WeightsRef(weights_cid, self.weights_sha256)
        return {
            shard: TaskSpec(
                job=t.job, task=self.task_id(shard), family=t.family, config=t.config,
                labels=t.labels, program_digest=t.program_digest, weights=ref,
                items=tuple(TaskItem(r.cid, r.label, r.media_type) for r in records),
                divisor=self.divisor, seed=t.seed, threads=t.threads,
                determinism_class=t.determinism_class,
            )
            for shard, records in self.shards.items()
        }


class Trainer:
    """Data-parallel training of one model-market program; the caller runs the tasks.

    Drive it as ``for step in trainer.steps(): trainer.apply(step, results)`` with ``results``
    the accepted result payload of each of ``step.shards``, then ``trainer.finish()``.

    Args:
        family: a family or its name; config: its config or JSON fields (as ``Family.fit``).
        train, val: training records and validation records (the latter never leave here).
        shard_of: the shard of each training item: a ``cid → shard`` mapping or a function of
            the record; shards are non-negative integers, fixed for the whole job.
        init: fine-tune this checkpoint; snapshot: entry count to record (default ``len(train)``).
        job: the job id the task specs carry; progress: ``progress(stage, done, total)`` with
            stage ``"step"`` after each step and ``"epoch"`` after each epoch.
        cache: embedding cache (``efficientnet-head``) for the validation items.
    """

    def __init__(
        self,
        family: Family | str,
        config: TrainConfig | Mapping[str, Any] | None,
        train: Sequence[Record],
        val: Sequence[Record],
        shard_of: ShardOf,
        *,
        init: Checkpoint | None = None,
        snapshot: int | None = None,
        job: str = "job",
        progress: Progress | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.family = get_family(family) if isinstance(family, str) else family
        fam = self.family
        self.cfg = cfg = fam.resolve_config(config, init)
        check_split(train, val)
        self._start = time.perf_counter()
        ctx = context(cache)
        with deterministic(cfg.seed, cfg.threads):  # as Family.fit: the first RNG use is the net
            self.ordered, self.labels = fam.order_and_labels(train, cfg, init)
            self.shards = _shards(self.ordered, shard_of)
            self.prep, extra = init_prep(init) if init is not None else fam.fit_prep(
                cfg, self.ordered, ctx)
            index = {label: i for i, label in enumerate(self.labels)}
            self._xv = fam.inputs(cfg, val, self.prep, extra, ctx)
            self._yv = torch.tensor([index.get(r.label, -1) for r in val], dtype=torch.int64)
            self.net = fam.initial_network(cfg, extra, self.labels, init)
        self._opt = optimizer(self.net, cfg)
        self.task_digest = task_program_digest(fam, cfg)
        self.program_digest = program_digest(fam.name, cfg, [
            *fam.digest_inputs(), f"data-parallel:{code_digest(JOB_CODE)}",
            f"shards:{shard_map_digest(self.shards)}"])
        self.extra = {**extra, "determinism": determinism_class(cfg.threads),
                      "decomposition": {"kind": "data-parallel",
                                        "shards": len(set(self.shards.values())),
                                        "shard_map": shard_map_digest(self.shards)}}
        self.snapshot = len(train) if snapshot is None else int(snapshot)
        self._template = _Template(job, fam.name, cfg.to_dict(), self.labels, self.task_digest,
                                   cfg.seed, cfg.threads, determinism_class_digest(cfg.threads))
        n = len(self.ordered)
        self.steps_per_epoch = -(-n // cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.grad_shapes = grad_shapes(self._checkpoint(0))
        self.history: list[int] = []
        self._progress = progress
        self._pending: Step | None = None
        self._done = 0

    def _checkpoint(self, metric_bps: int) -> Checkpoint:
        return Checkpoint(
            family=self.family.name, config=self.cfg.to_dict(), labels=self.labels,
            program_digest=self.program_digest, snapshot=self.snapshot, metric_bps=metric_bps,
            extra=self.extra, tensors=network_tensors(self.net, self.prep),
        )

    def steps(self) -> Iterator[Step]:
        """Every step of the job in order; apply each before asking for the next."""
        if self._done or self._pending is not None:
            raise UsageError("a trainer's steps are walked once")
        cfg, n = self.cfg, len(self.ordered)
        for epoch, perm in enumerate(epoch_perms(n, cfg)):
            for batch, s in enumerate(range(0, n, cfg.batch_size)):
                by_shard: dict[int, list[Record]] = {}
                idx = perm[s : s + cfg.batch_size].tolist()
                for i in idx:
                    record = self.ordered[i]
                    by_shard.setdefault(self.shards[record.cid], []).append(record)
                with pinned(cfg.threads):  # the coordinator's torch work: its own threads
                    weights = self._checkpoint(0).to_bytes()
                step = Step(epoch, batch, self._done, weights, sha256_hex(weights),
                            {k: tuple(by_shard[k]) for k in sorted(by_shard)}, len(idx),
                            self._template)
                self._pending = step
                yield step
                if self._pending is step:
                    raise UsageError(f"step {step.index} was not applied before the next one")

    def apply(self, step: Step, results: Mapping[int, bytes]) -> None:
        """Sum the shards' result payloads in ascending shard order and step AdamW.

        Raises:
            UsageError: not the pending step, or results for other shards than its own.
            ResultError: a payload is not a gradient of its task (it is validated here).
        """
        if step is not self._pending:
            raise UsageError("apply takes the step the trainer yielded last")
        if set(results) != set(step.shards):
            raise UsageError(f"step {step.index} needs results for shards {sorted(step.shards)}, "
                             f"got {sorted(results)}")
        job = self._template.job
        cfg = self.cfg
        with pinned(cfg.threads):  # AdamW and the evaluation draw no random numbers
            grads = [check_result(results[k], job, step.task_id(k), self.grad_shapes)
                     for k in sorted(results)]
            for name, p in self.net.named_parameters():
                total = grads[0][f"grad.{name}"]
                for g in grads[1:]:
                    total = total + g[f"grad.{name}"]
                p.grad = total.clone()
            self._opt.step()
            self._opt.zero_grad(set_to_none=True)
            self._pending = None
            self._done += 1
            if step.batch == self.steps_per_epoch - 1:
                self.history.append(evaluate_network(self.net, self._xv, self._yv).accuracy_bps)
                if self._progress is not None:
                    self._progress("epoch", step.epoch + 1, cfg.epochs)
        if self._progress is not None:
            self._progress("step", self._done, self.total_steps)

    def finish(self) -> TrainResult:
        """The trained checkpoint (``Checkpoint`` format), measured on the validation records."""
        if self._done != self.total_steps:
            raise UsageError(f"{self.total_steps - self._done} of {self.total_steps} steps "
                             "are not applied yet")
        cfg = self.cfg
        with pinned(cfg.threads):
            evaluation = evaluate_network(self.net, self._xv, self._yv)
            ckpt = self._checkpoint(evaluation.accuracy_bps)
        return TrainResult(ckpt, evaluation, cfg.epochs, time.perf_counter() - self._start,
                           tuple(self.history))


def _shards(ordered: Sequence[Record], shard_of: ShardOf) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in ordered:
        try:
            k = shard_of[r.cid] if isinstance(shard_of, Mapping) else shard_of(r)
        except KeyError:
            raise UsageError(f"item {r.cid} is in no shard") from None
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < 2**31:
            raise UsageError(f"item {r.cid} has shard {k!r:.40}, not an integer in [0, 2^31)")
        out[r.cid] = k
    return out
