"""The result every valuation method leaves in ``.result``: values with their uncertainty."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ValuationResult"]


def _json_safe(value: Any) -> Any:
    """Turn numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; None reads as "not measured"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


@dataclass
class ValuationResult:
    """Values of ``n`` players (training points or batches) and how they were obtained.

    Attributes:
        values: the estimated value of each player, in input order.
        stderr: standard error of each value (0 for exact methods, NaN when unknown).
        counts: number of samples (marginals, bags, subsets) behind each value.
        method: short method name, e.g. ``"knn_shapley"``.
        params: the method's parameters (JSON-safe).
        runtime_s: wall time of ``fit``.
        converged: whether the stopping rule's convergence criterion was met (exact: True).
    """

    values: NDArray[np.float64]
    stderr: NDArray[np.float64]
    counts: NDArray[np.int64]
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    runtime_s: float = 0.0
    converged: bool = True

    @classmethod
    def exact(
        cls, values: NDArray[np.float64], method: str, params: dict[str, Any], runtime_s: float
    ) -> ValuationResult:
        """A result without sampling error."""
        values = np.asarray(values, dtype=np.float64)
        return cls(
            values=values,
            stderr=np.zeros_like(values),
            counts=np.ones(values.shape, dtype=np.int64),
            method=method,
            params=params,
            runtime_s=runtime_s,
        )

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def ranks(self) -> NDArray[np.int64]:
        """Rank of each player, 0 = most valuable; ties broken by index (stable)."""
        order = np.argsort(-self.values, kind="stable")
        ranks = np.empty_like(order)
        ranks[order] = np.arange(order.shape[0])
        return ranks

    def lowest(self, n: int) -> NDArray[np.int64]:
        """Indices of the ``n`` lowest-valued players, lowest first."""
        return np.argsort(self.values, kind="stable")[:n]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (NaN and inf become None)."""
        return _json_safe(
            {
                "method": self.method,
                "params": self.params,
                "runtime_s": self.runtime_s,
                "converged": self.converged,
                "values": self.values,
                "stderr": self.stderr,
                "counts": self.counts,
                "ranks": self.ranks,
            }
        )


class Valuer:
    """Base of every method: ``fit(...)`` stores a :class:`ValuationResult`, ``.result`` reads it."""

    _result: ValuationResult | None = None

    @property
    def result(self) -> ValuationResult:
        """The values of the last ``fit``."""
        if self._result is None:
            raise RuntimeError("call fit() first")
        return self._result
