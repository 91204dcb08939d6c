"""The single-process reference of data-parallel training: the same program, every task run here.

:func:`fit_decomposed` drives a :class:`~databright.compute.trainer.Trainer` with
:func:`~databright.compute.grad.run_task` called in this process, so a job whose workers all
answered honestly ends with exactly the checkpoint bits this function gives (tested with the
tasks run in another process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from databright.compute.grad import run_task
from databright.compute.trainer import ShardOf, Trainer
from databright.training.checkpoint import Checkpoint, CheckpointStore
from databright.training.config import TrainConfig
from databright.training.embed import EmbeddingCache
from databright.training.families import Family, Progress, TrainResult
from databright.training.records import Record

__all__ = ["fit_decomposed"]


def fit_decomposed(
    family: Family | str,
    config: TrainConfig | Mapping[str, Any] | None,
    train: Sequence[Record],
    val: Sequence[Record],
    shard_of: ShardOf,
    *,
    store: CheckpointStore,
    init: Checkpoint | None = None,
    snapshot: int | None = None,
    job: str = "job",
    progress: Progress | None = None,
    cache: EmbeddingCache | None = None,
) -> TrainResult:
    """Train ``family`` data-parallel over ``shard_of``'s shards, running each task here.

    Args are the :class:`Trainer`'s; ``store`` (a blob store: ``put_bytes``, ``get``) holds
    each step's weights, which tasks fetch by CID as a worker would. Items are read through
    their records' loaders.
    """
    trainer = Trainer(family, config, train, val, shard_of, init=init, snapshot=snapshot,
                      job=job, progress=progress, cache=cache)
    items = {r.cid: r for r in train}
    for step in trainer.steps():
        weights_cid = store.put_bytes(step.weights)

        def fetch(cid: str, weights_cid: str = weights_cid) -> bytes:
            return store.get(cid) if cid == weights_cid else items[cid].load()

        results = {shard: run_task(spec, fetch, cache=cache)
                   for shard, spec in step.tasks(weights_cid).items()}
        trainer.apply(step, results)
    return trainer.finish()
