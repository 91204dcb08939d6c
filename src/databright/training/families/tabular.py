"""``logreg`` and ``mlp``: classifiers on the standardised numeric columns of table rows.

The columns (sorted names), their means and standard deviations are learnt on the training rows
and stored in the checkpoint (``extra.columns``, ``prep.mean``, ``prep.sd``); a fine-tune and a
prediction reuse them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from databright.training.config import LogRegConfig, MlpConfig, TrainConfig
from databright.training.errors import MalformedCheckpointError
from databright.training.families.base import Context, Family, Prep
from databright.training.records import Record, load_all
from databright.training.tabular import (
    MAX_COLUMNS,
    Standardiser,
    numeric_columns,
    parse_row,
    row_matrix,
)

__all__ = ["LogReg", "Mlp"]


class _Tabular(Family):
    media = "table"

    @staticmethod
    def _rows(records: Sequence[Record]) -> list[dict[str, Any]]:
        data = load_all(records, "row")
        return [parse_row(d, r.media_type, r.cid) for r, d in zip(records, data)]

    def fit_inputs(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[torch.Tensor, Prep, dict[str, Any]]:
        rows = self._rows(records)
        columns = numeric_columns(rows)
        raw = row_matrix(rows, columns)
        std = Standardiser.fit(raw)
        return std(raw), {"mean": std.mean, "sd": std.sd}, {"columns": columns}

    def inputs(
        self, cfg: TrainConfig, records: Sequence[Record], prep: Prep, extra: dict[str, Any],
        ctx: Context,
    ) -> torch.Tensor:
        raw = row_matrix(self._rows(records), extra["columns"])
        return Standardiser(prep["mean"], prep["sd"])(raw)

    def prep_shapes(self, cfg: TrainConfig, extra: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        d = len(extra["columns"])
        return {"mean": (d,), "sd": (d,)}

    def check_extra(self, cfg: TrainConfig, extra: dict[str, Any]) -> None:
        cols = extra.get("columns")
        if (not isinstance(cols, list) or not 0 < len(cols) <= MAX_COLUMNS
                or not all(isinstance(c, str) for c in cols) or len(set(cols)) != len(cols)):
            raise MalformedCheckpointError(f"{self.name} checkpoint has no valid column list")


class LogReg(_Tabular):
    name = "logreg"
    config_type = LogRegConfig

    def network(self, cfg: TrainConfig, extra: dict[str, Any], classes: int) -> nn.Module:
        return nn.Linear(len(extra["columns"]), classes)


class Mlp(_Tabular):
    name = "mlp"
    config_type = MlpConfig

    def network(self, cfg: TrainConfig, extra: dict[str, Any], classes: int) -> nn.Module:
        assert isinstance(cfg, MlpConfig)  # Family.config guarantees the type
        return nn.Sequential(nn.Linear(len(extra["columns"]), cfg.hidden), nn.ReLU(),
                             nn.Linear(cfg.hidden, classes))
