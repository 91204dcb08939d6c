"""Exact KNN-Shapley (Jia, Dao et al. 2019): all values in O(m·n log n), no model fits.

For one validation point, sort the ``N`` training points nearest first (ties by index) and let
``a_i`` be point i's match indicator (classification) or target (regression). Classification
uses the paper's recursion

    s_N = a_N / N,     s_i = s_{i+1} + (a_i − a_{i+1}) · min(K, i) / (K · i).

Regression values ``U(S) = −(Σ_{K nearest in S} y / K − t)²``. Write ``P_i = Σ_{j<i} y_j``,
``c_i = m(m−1) / (2i(i−1))`` with ``m = min(K, i)`` (``c_1 = 0``) and
``w_j = m(m−1) / (2(j−1)(j−2))`` with ``m = min(K, j−1)``. Then, with ``δ = y_{i+1} − y_i``,

    s_i − s_{i+1} = δ/K · [ ((y_i + y_{i+1})/K − 2t) · min(K, i)/i
                            + (2/K) · (c_i · P_i + Σ_{j ≥ i+2} w_j y_j) ]
    s_N = −y_N/K · [ (y_N/K − 2t) · min(K, N)/N + (2/K) · c'_N · P_N ],
    c'_N = m(m−1) / (2N(N−1)),  m = min(K, N).

(Derivation in docs/valuation.md; both are checked against brute force over all subsets.)
Values are averaged over validation points, so they sum to ``U(all) − U(∅)`` of
:class:`~databright.valuation.utility.KNNUtility`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from databright.valuation._neighbours import (
    DEFAULT_CHUNK_BYTES,
    argsort_rows,
    as_matrix,
    chunk_rows,
    sq_dists,
)
from databright.valuation.result import ValuationResult, Valuer
from databright.valuation.utility import KNNUtility, Task

__all__ = ["KNNShapley", "knn_shapley_sorted"]


def knn_shapley_sorted(
    a: NDArray[np.float64], k: int, task: Task = "classification", t: NDArray | None = None
) -> NDArray[np.float64]:
    """Shapley values of points already sorted nearest first, one row per validation point.

    Args:
        a: ``m × N`` match indicators (classification) or targets (regression), sorted.
        k: number of neighbours.
        task: ``"classification"`` or ``"regression"``.
        t: the ``m`` validation targets (regression only).
    """
    _m, n = a.shape
    if n == 0:
        return a.copy()
    i = np.arange(1, n, dtype=np.float64)  # 1-based positions of the pairs (i, i+1)
    frac = np.minimum(k, i) / i  # P(point i is among the K nearest of a random coalition)
    s = np.empty_like(a)
    diffs = s[:, :-1]  # written in place: large fresh arrays are slow to allocate here
    if task == "classification":
        np.subtract(a[:, :-1], a[:, 1:], out=diffs)
        diffs *= frac / k
        last = a[:, -1] * (min(k, n) / (k * n))  # = a_N / N whenever K <= N
    else:
        if t is None:
            raise ValueError("regression needs the validation targets t")
        tt = np.asarray(t, dtype=np.float64)[:, None]
        mi = np.minimum(k, i)
        c = np.where(i > 1, mi * (mi - 1) / (2 * i * np.maximum(i - 1, 1)), 0.0)
        j = np.arange(1, n + 1, dtype=np.float64)
        mj = np.minimum(k, j - 1)
        w = np.where(j >= 3, mj * (mj - 1) / (2 * np.maximum((j - 1) * (j - 2), 1)), 0.0)
        prefix = np.cumsum(a, axis=1) - a  # P_i = sum_{j<i} y_j, for i = 1..N
        tail = np.cumsum((a * w)[:, ::-1], axis=1)[:, ::-1]  # sum_{j>=i} w_j y_j
        tail2 = np.zeros_like(a)
        tail2[:, : n - 2] = tail[:, 2:]  # sum_{j>=i+2} w_j y_j, for i = 1..N
        yi, yn = a[:, :-1], a[:, 1:]
        diffs[...] = (yn - yi) / k * (
            ((yi + yn) / k - 2 * tt) * frac + (2 / k) * (c * prefix[:, :-1] + tail2[:, :-1])
        )
        mn = min(k, n)
        cn = mn * (mn - 1) / (2 * n * (n - 1)) if n > 1 else 0.0
        y_last = a[:, -1]
        last = -y_last / k * ((y_last / k - 2 * tt[:, 0]) * (mn / n) + (2 / k) * cn * prefix[:, -1])
    rev = diffs[:, ::-1]
    np.cumsum(rev, axis=1, out=rev)  # suffix sums: s_i - s_N
    diffs += last[:, None]
    s[:, -1] = last
    return s


class KNNShapley(Valuer):
    """Exact Shapley values of the KNN utility, vectorised and chunked to bound memory.

    The values are exact for the given validation set; ``result.stderr`` is their standard
    error over validation points (how much they would move with another validation sample of
    the same size), which the report uses to call a negative value significant.

    Args:
        k: number of neighbours.
        task: ``"classification"`` (soft KNN accuracy) or ``"regression"`` (negative squared
            error of the neighbours' mean).
        chunk_bytes: memory budget per working array; validation points are processed in
            chunks of ``chunk_bytes / (8 n)`` rows.

    Example:
        >>> KNNShapley(k=5).fit(x_train, y_train, x_val, y_val).result.values
    """

    method = "knn_shapley"

    def __init__(
        self,
        k: int = 5,
        task: Task = "classification",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k, self.task, self.chunk_bytes = int(k), task, int(chunk_bytes)
        self._result: ValuationResult | None = None

    @classmethod
    def from_utility(cls, utility: KNNUtility) -> KNNShapley:
        """A valuation of the same K and task as ``utility`` (fit with its data)."""
        return cls(k=utility.k, task=utility.task)

    def fit(
        self,
        x_train: NDArray[Any],
        y_train: NDArray[Any],
        x_val: NDArray[Any],
        y_val: NDArray[Any],
    ) -> KNNShapley:
        """Compute the values of every training point; read them from ``.result``."""
        start = time.perf_counter()
        xt, xv = as_matrix(x_train, "x_train"), as_matrix(x_val, "x_val")
        yt, yv = np.asarray(y_train), np.asarray(y_val)
        if xt.shape[0] != yt.shape[0] or xv.shape[0] != yv.shape[0]:
            raise ValueError("features and labels differ in length")
        n, m = xt.shape[0], xv.shape[0]
        values, squares, stderr = np.zeros(n), np.zeros(n), np.zeros(n)
        if n and m:
            yt_f = yt.astype(np.float64) if self.task == "regression" else yt
            if self.task == "classification":
                # small integer codes make the per-chunk gather cheap
                classes, codes_all = np.unique(np.concatenate([yt, yv]), return_inverse=True)
                dt = np.int16 if classes.size < 2**15 else np.int64
                codes, codes_v = codes_all[:n].astype(dt), codes_all[n:].astype(dt)
            def chunk(rows: slice) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
                order = argsort_rows(sq_dists(xv[rows], xt))
                if self.task == "classification":
                    a = np.empty(order.shape)
                    np.equal(codes[order], codes_v[rows, None], out=a, casting="unsafe")
                    s = knn_shapley_sorted(a, self.k, self.task)
                else:
                    s = knn_shapley_sorted(yt_f[order], self.k, self.task, yv[rows])
                flat = order.ravel()
                part = np.bincount(flat, weights=s.ravel(), minlength=n).astype(np.float64, copy=False)
                np.square(s, out=s)
                sq = np.bincount(flat, weights=s.ravel(), minlength=n).astype(np.float64, copy=False)
                return part, sq

            step = chunk_rows(n, self.chunk_bytes)
            chunks = [slice(i, min(i + step, m)) for i in range(0, m, step)]
            # One thread: two threads over chunks measured slower here (allocation-bound).
            for rows in chunks:
                part, sq = chunk(rows)
                values += part
                squares += sq
            values /= m
            if m > 1:
                var = np.maximum(squares / m - values**2, 0.0) * (m / (m - 1))
                stderr = np.sqrt(var / m)
        params = {"k": self.k, "task": self.task, "n_train": n, "n_val": m}
        self._result = ValuationResult.exact(
            values, self.method, params, time.perf_counter() - start
        )
        self._result.stderr = stderr
        return self

