"""The entry point the market layer calls: train a family on a dataset, store the checkpoint."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from databright.training.checkpoint import Checkpoint, CheckpointStore, save_checkpoint
from databright.training.config import TrainConfig
from databright.training.embed import EmbeddingCache
from databright.training.families import Evaluation, Progress, TrainResult, get_family
from databright.training.records import Record

__all__ = ["FineTuneGain", "fine_tune_gain", "train_dataset"]


def train_dataset(
    train: Sequence[Record],
    val: Sequence[Record],
    family: str,
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    store: CheckpointStore | None = None,
    init: Checkpoint | None = None,
    snapshot: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``family`` on ``train`` (a dataset's accepted entries), measure it on ``val`` (the
    card's validation items), and write the checkpoint to ``store`` when one is given.

    Args:
        train: training records; their order does not matter (training sorts them).
        val: validation records; never trained on.
        family: a registered family name (``efficientnet-head``, ``small-cnn``, ``logreg``, ``mlp``).
        config: the family's config or its JSON fields (defaults when None).
        store: a blob store; the result's ``cid`` and ``sha256`` name the stored checkpoint.
        init: fine-tune this checkpoint instead of starting from scratch.
        snapshot: the dataset entry count to record (default ``len(train)``).
        cache_dir: folder of the embedding cache (default: in memory only).
        progress: ``progress(stage, done, total)`` for a progress bar.

    Raises:
        UsageError: unknown family or bad config. TrainingError: unusable records.
    """
    cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
    result = get_family(family).fit(train, val, config, init=init, snapshot=snapshot,
                                    progress=progress, cache=cache)
    if store is None:
        return result
    stored = save_checkpoint(store, result.checkpoint)
    return dataclasses.replace(result, cid=stored.cid, sha256=stored.sha256)


@dataclass(frozen=True)
class FineTuneGain:
    """A proposal's batch measured against a stored checkpoint (paper Figure 3): the
    checkpoint's validation accuracy before and after fine-tuning it on the batch."""

    before: Evaluation
    after: TrainResult

    @property
    def gain_bps(self) -> int:
        """Accuracy change in basis points (negative: the batch makes the model worse)."""
        return self.after.accuracy_bps - self.before.accuracy_bps

    def to_dict(self) -> dict[str, Any]:
        return {"before_bps": self.before.accuracy_bps, "after_bps": self.after.accuracy_bps,
                "gain_bps": self.gain_bps, "validation_items": self.before.total}


def fine_tune_gain(
    checkpoint: Checkpoint,
    batch: Sequence[Record],
    val: Sequence[Record],
    config: Mapping[str, Any] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> FineTuneGain:
    """Fine-tune ``checkpoint`` on a proposal's ``batch`` and compare validation accuracy.

    Args:
        checkpoint: the dataset's best checkpoint (loaded with :func:`load_checkpoint`).
        batch: the proposal's items, with their proposed labels.
        val: the validation records the checkpoint was measured on.
        config: fields overriding the checkpoint's config (e.g. ``{"epochs": 5}``).
    """
    family = get_family(checkpoint.family)
    cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
    before = family.evaluate(checkpoint, val, cache=cache)
    after = family.fit(batch, val, dict(config or {}), init=checkpoint, snapshot=checkpoint.snapshot
                       + len(batch), progress=progress, cache=cache)
    return FineTuneGain(before, after)
