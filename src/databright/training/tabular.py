"""Table rows (JSON objects, one-line CSV with a header, one-row Parquet) as standardised
numeric features. The columns and their mean and standard deviation are learnt on the training
rows and stored in the checkpoint, so a prediction sees exactly the training transformation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from databright import rows
from databright.training.errors import TrainingError

__all__ = ["Standardiser", "numeric_columns", "parse_row", "row_matrix"]

MAX_COLUMNS = 4096


def parse_row(data: bytes, media_type: str, name: str) -> dict[str, Any]:
    """One row as a dict. Raises TrainingError naming the item when it is not one row."""
    try:
        return rows.parse_row(data, media_type)
    except rows.RowFormatError as exc:
        raise TrainingError(f"cannot read {name} as a table row: {exc}") from exc


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def numeric_columns(rows: Sequence[dict[str, Any]], exclude: Sequence[str] = ("label",)) -> list[str]:
    """Sorted columns whose every present value is a number (the label column excluded)."""
    keys = sorted({k for r in rows for k in r} - set(exclude))
    cols = [k for k in keys if all(_number(r[k]) is not None for r in rows if r.get(k) not in
                                   (None, "")) and any(_number(r.get(k)) is not None for r in rows)]
    if not cols:
        raise TrainingError("the training rows have no numeric column to learn from")
    if len(cols) > MAX_COLUMNS:
        raise TrainingError(f"{len(cols)} numeric columns exceed the limit of {MAX_COLUMNS}")
    return cols


def row_matrix(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """float64 (n, len(columns)); a missing or non-numeric cell is NaN."""
    out = np.full((len(rows), len(columns)), np.nan)
    for i, r in enumerate(rows):
        for j, key in enumerate(columns):
            x = _number(r.get(key))
            if x is not None:
                out[i, j] = x
    return out


class Standardiser:
    """``(x − mean) / sd`` per column; a missing cell becomes 0 (the mean)."""

    def __init__(self, mean: torch.Tensor, sd: torch.Tensor) -> None:
        self.mean, self.sd = mean, sd

    @classmethod
    def fit(cls, raw: np.ndarray) -> Standardiser:
        """Column means and standard deviations of ``raw`` (sd 0 → 1)."""
        mean = np.nan_to_num(np.nanmean(raw, axis=0)) if raw.shape[0] else np.zeros(raw.shape[1])
        sd = np.where(np.isnan(raw), mean, raw).std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        return cls(torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(sd.astype(np.float32)))

    def __call__(self, raw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(raw.astype(np.float32))
        x = torch.where(torch.isnan(x), self.mean, x)
        return (x - self.mean) / self.sd
