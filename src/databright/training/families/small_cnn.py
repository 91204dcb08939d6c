"""``small-cnn``: two convolution blocks and a linear layer, trained from scratch on small
grayscale or RGB images (28 × 28 by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from databright.training.config import SmallCnnConfig, TrainConfig
from databright.training.families.base import Context, Family, Prep
from databright.training.images import image_batch
from databright.training.records import Record, load_all

__all__ = ["SmallCnn"]


def _cfg(cfg: TrainConfig) -> SmallCnnConfig:
    assert isinstance(cfg, SmallCnnConfig)  # Family.config guarantees the type
    return cfg


class SmallCnn(Family):
    name = "small-cnn"
    config_type = SmallCnnConfig
    media = "image"

    def fit_inputs(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[torch.Tensor, Prep, dict[str, Any]]:
        return self.inputs(cfg, records, {}, {}, ctx), {}, {}

    def fit_prep(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[Prep, dict[str, Any]]:
        return {}, {}  # nothing is learnt from the records: no need to decode them

    def inputs(
        self, cfg: TrainConfig, records: Sequence[Record], prep: Prep, extra: dict[str, Any],
        ctx: Context,
    ) -> torch.Tensor:
        c = _cfg(cfg)
        data = load_all(records)  # every item is read (and so verified) on every call
        decoded = ctx.extra.get("decoded")  # (cid, mode, size) → row, for repeated items
        if decoded is None:
            return image_batch([(r.cid, d) for r, d in zip(records, data)], c.mode, c.size)
        rows: dict[str, torch.Tensor] = {}
        for r, d in zip(records, data):
            row = rows.get(r.cid)
            if row is None:
                row = decoded.get((r.cid, c.mode, c.size))
            if row is None:  # decoded once per CID
                row = image_batch([(r.cid, d)], c.mode, c.size)[0]
                decoded[(r.cid, c.mode, c.size)] = row
            rows[r.cid] = row
        return torch.stack([rows[r.cid] for r in records])

    def network(self, cfg: TrainConfig, extra: dict[str, Any], classes: int) -> nn.Module:
        c = _cfg(cfg)
        channels, w = (3 if c.mode == "RGB" else 1), c.width
        return nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * w * (c.size // 4) ** 2, classes),
        )
