"""Utilities: what a subset of the training data is worth (model + validation data + metric).

A utility is bound to one training set of ``n`` points and maps a subset, given as an array of
training indices, to a score on the validation data. Methods only ever call ``utility(indices)``
(and count the calls as *fits*); a utility may offer faster paths such as ``prefix_scores``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from databright.valuation._neighbours import as_matrix, sorted_orders, sq_dists, top_k

__all__ = ["KNNUtility", "ModelUtility", "Task", "Utility", "knn_predict"]

Task = Literal["classification", "regression"]


@runtime_checkable
class Utility(Protocol):
    """Score of a model trained on a subset of the ``n`` training points."""

    n: int
    fits: int

    def __call__(self, indices: NDArray[np.intp]) -> float: ...


class ModelUtility:
    """Refit an sklearn-style model on each subset and score it on the validation data.

    Args:
        model: an unfitted estimator with ``fit``/``predict``; cloned for every fit.
        x_train, y_train: the training points the subsets index into.
        x_val, y_val: validation data, never trained on.
        metric: ``"accuracy"``, ``"neg_mse"`` or ``callable(y_true, y_pred) -> float``.
        empty_score: the score of a subset the model cannot be fitted on (empty, one class).
    """

    def __init__(
        self,
        model: Any,
        x_train: NDArray[Any],
        y_train: NDArray[Any],
        x_val: NDArray[Any],
        y_val: NDArray[Any],
        metric: str | Callable[[NDArray[Any], NDArray[Any]], float] = "accuracy",
        empty_score: float | None = None,
    ) -> None:
        self.model = model
        self.x_train, self.y_train = as_matrix(x_train, "x_train"), np.asarray(y_train)
        self.x_val, self.y_val = as_matrix(x_val, "x_val"), np.asarray(y_val)
        self.metric = metric
        self.n = int(self.x_train.shape[0])
        self.fits = 0
        self._base_score: float | None = None
        if empty_score is None:
            empty_score = self._empty_default()
        self.empty_score = float(empty_score)

    def _empty_default(self) -> float:
        if self.metric == "accuracy":
            # Predicting the majority validation class is what no data buys you at best.
            _, counts = np.unique(self.y_val, return_counts=True)
            return float(counts.max() / counts.sum()) if counts.size else 0.0
        if self.metric == "neg_mse":
            return float(-np.mean((self.y_val - self.y_val.mean()) ** 2))
        return 0.0

    def score(self, y_pred: NDArray[Any]) -> float:
        """The metric of predictions on the validation data."""
        if self.metric == "accuracy":
            return float(np.mean(y_pred == self.y_val))
        if self.metric == "neg_mse":
            return float(-np.mean((np.asarray(y_pred, dtype=float) - self.y_val) ** 2))
        if callable(self.metric):
            return float(self.metric(self.y_val, y_pred))
        raise ValueError(f"unknown metric {self.metric!r}")

    def fit_predict(self, x: NDArray[Any], y: NDArray[Any]) -> NDArray[Any] | None:
        """Fit a clone on ``(x, y)`` and predict the validation data; None if it cannot fit."""
        if x.shape[0] == 0 or (self.metric == "accuracy" and np.unique(y).size < 2):
            return None
        model = clone(self.model)
        self.fits += 1
        model.fit(x, y)
        return np.asarray(model.predict(self.x_val))

    def __call__(self, indices: NDArray[np.intp]) -> float:
        idx = np.asarray(indices, dtype=np.intp)
        pred = self.fit_predict(self.x_train[idx], self.y_train[idx])
        return self.empty_score if pred is None else self.score(pred)

    def gain(self, x_batch: NDArray[Any], y_batch: NDArray[Any]) -> float:
        """``U(train ∪ batch) − U(train)`` by refitting on the union (the base score is cached)."""
        if self._base_score is None:
            self._base_score = self(np.arange(self.n))
        xb, yb = as_matrix(x_batch, "x_batch"), np.asarray(y_batch)
        if xb.shape[0] == 0:
            return 0.0
        pred = self.fit_predict(
            np.concatenate([self.x_train, xb]), np.concatenate([self.y_train, yb])
        )
        return (self.empty_score if pred is None else self.score(pred)) - self._base_score


class KNNUtility:
    """The K-nearest-neighbour utility of Jia, Dao et al. (2019), averaged over validation points.

    For one validation point ``(x, t)`` and the ``K`` nearest points of ``S`` (fewer if
    ``|S| < K``; ties by index), classification scores ``(1/K)·#{neighbours with label t}``
    (a soft KNN accuracy, 0 for the empty set) and regression scores ``−(Σ y_nbr / K − t)²``
    (``−t²`` for the empty set). The utility is the mean over validation points. This is the
    quantity exact KNN-Shapley values, and so sum (efficiency) to ``U(all) − U(∅)``.
    """

    def __init__(
        self,
        x_train: NDArray[Any],
        y_train: NDArray[Any],
        x_val: NDArray[Any],
        y_val: NDArray[Any],
        k: int = 5,
        task: Task = "classification",
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        if task not in ("classification", "regression"):
            raise ValueError(f"unknown task {task!r}")
        self.x_train, self.y_train = as_matrix(x_train, "x_train"), np.asarray(y_train)
        self.x_val, self.y_val = as_matrix(x_val, "x_val"), np.asarray(y_val)
        self.k, self.task = int(k), task
        self.n = int(self.x_train.shape[0])
        self.fits = 0
        self._order: NDArray[np.intp] | None = None
        self._rank: NDArray[np.intp] | None = None
        self._base_topk: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    # -- per-pair quantities -------------------------------------------------------------
    def _pair_values(self, train_idx: NDArray[np.intp]) -> NDArray[np.float64]:
        """``a[v, j]`` for a ``m × r`` index array: match (classification) or target."""
        if self.task == "classification":
            return (self.y_train[train_idx] == self.y_val[:, None]).astype(np.float64)
        return self.y_train[train_idx].astype(np.float64)

    def _per_point(self, sums: NDArray[np.float64]) -> NDArray[np.float64]:
        """Utility of each validation point from the sums of its K neighbours' ``a``."""
        if self.task == "classification":
            return sums / self.k
        return -((sums / self.k - self.y_val.astype(np.float64)) ** 2)

    def _finish(self, sums: NDArray[np.float64]) -> float:
        """Mean utility over validation points."""
        return float(np.mean(self._per_point(sums))) if sums.size else 0.0

    def loo(self) -> NDArray[np.float64]:
        """Exact leave-one-out values: removing a point lets the (K+1)-th nearest move up."""
        m, n, k = self.x_val.shape[0], self.n, self.k
        values = np.zeros(n)
        if m == 0 or n == 0:
            return values
        top = self.order[:, : k + 1]
        a_top = self._pair_values(top)
        kk = min(k, n)
        full = a_top[:, :kk].sum(axis=1)
        u_full = self._per_point(full)
        repl = a_top[:, k] if n > k else np.zeros(m)
        for p in range(kk):
            delta = u_full - self._per_point(full - a_top[:, p] + repl)
            values += np.bincount(top[:, p], weights=delta, minlength=n)
        return values / m

    @property
    def order(self) -> NDArray[np.intp]:
        """Training indices nearest first, one row per validation point (cached, ``m × n``)."""
        if self._order is None:
            self._order = np.concatenate(
                [o for _, o in sorted_orders(self.x_train, self.x_val)], axis=0
            ) if self.x_val.shape[0] else np.zeros((0, self.n), dtype=np.intp)
        return self._order

    @property
    def rank(self) -> NDArray[np.intp]:
        """``rank[v, j]``: position of training point j in validation point v's order."""
        if self._rank is None:
            order = self.order
            self._rank = np.empty_like(order)
            np.put_along_axis(self._rank, order, np.arange(self.n)[None, :], axis=1)
        return self._rank

    def __call__(self, indices: NDArray[np.intp]) -> float:
        self.fits += 1
        member = np.zeros(self.n, dtype=bool)
        member[np.asarray(indices, dtype=np.intp)] = True
        in_s = member[self.order]
        take = in_s & (np.cumsum(in_s, axis=1) <= self.k)
        sums = (self._pair_values(self.order) * take).sum(axis=1)
        return self._finish(sums)

    def prefix_scores(self, permutation: NDArray[np.intp]) -> NDArray[np.float64]:
        """``U(∅), U(perm[:1]), …, U(perm)`` in one incremental pass (counts as one fit)."""
        self.fits += 1
        m, k = self.x_val.shape[0], self.k
        rank = self.rank
        best = np.full((m, k), np.iinfo(np.intp).max, dtype=np.intp)
        vals = np.zeros((m, k))
        sums = np.zeros(m)
        out = np.empty(len(permutation) + 1)
        out[0] = self._finish(sums)
        rows = np.arange(m)
        for t, j in enumerate(np.asarray(permutation, dtype=np.intp), start=1):
            r = rank[:, j]
            hit = r < best[:, -1]
            if hit.any():
                h = rows[hit]
                if self.task == "classification":
                    a = (self.y_val[hit] == self.y_train[j]).astype(np.float64)
                else:
                    a = np.full(h.size, float(self.y_train[j]))
                sums[h] += a - vals[h, -1]
                best[h, -1], vals[h, -1] = r[hit], a
                srt = np.argsort(best[h], axis=1)
                best[h] = np.take_along_axis(best[h], srt, axis=1)
                vals[h] = np.take_along_axis(vals[h], srt, axis=1)
            out[t] = self._finish(sums)
        return out

    # -- batch gain without refitting ----------------------------------------------------
    def _topk_base(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Cached distances and ``a`` values of each validation point's K nearest (chunked)."""
        if self._base_topk is None:
            d_base, i_base = top_k(self.x_train, self.x_val, self.k)
            if self.n:
                a_base = np.where(i_base >= 0, self._pair_values(np.maximum(i_base, 0)), 0.0)
            else:
                a_base = np.zeros(i_base.shape)
            self._base_topk = (d_base, a_base)
        return self._base_topk

    def full_score(self) -> float:
        """``U(all training points)`` without the ``m × n`` order matrix of ``__call__``."""
        d_base, a_base = self._topk_base()
        return self._finish((a_base * np.isfinite(d_base)).sum(axis=1))

    def gain(self, x_batch: NDArray[Any], y_batch: NDArray[Any]) -> float:
        """``U(train ∪ batch) − U(train)`` from the cached K nearest training points.

        Batch points rank after training points at equal distance (they get indices
        ``n, n+1, …``), exactly as if the batch were appended and the model refitted.
        """
        xb, yb = as_matrix(x_batch, "x_batch"), np.asarray(y_batch)
        d_base, a_base = self._topk_base()
        d_b = sq_dists(self.x_val, xb) if xb.shape[0] else np.zeros((self.x_val.shape[0], 0))
        if self.task == "classification":
            a_b = (yb[None, :] == self.y_val[:, None]).astype(np.float64)
        else:
            a_b = np.broadcast_to(yb.astype(np.float64)[None, :], d_b.shape)
        d_all = np.concatenate([d_base, d_b], axis=1)
        a_all = np.concatenate([a_base, a_b], axis=1)
        # Stable sort: base candidates come first, so equal distances keep base before batch.
        srt = np.argsort(d_all, axis=1, kind="stable")[:, : self.k]
        d_top = np.take_along_axis(d_all, srt, axis=1)
        after = (np.take_along_axis(a_all, srt, axis=1) * np.isfinite(d_top)).sum(axis=1)
        before = (a_base * np.isfinite(d_base)).sum(axis=1)
        return self._finish(after) - self._finish(before)


def knn_predict(
    x_train: NDArray[Any], y_train: NDArray[Any], x_query: NDArray[Any], k: int = 5
) -> NDArray[Any]:
    """Majority vote of the ``k`` nearest training points (ties by index), deterministic.

    A tied vote goes to the tied class whose member is nearest. The KNN classifier whose
    soft accuracy :class:`KNNUtility` measures; used for the report's model accuracy.
    """
    xt, xq, yt = as_matrix(x_train, "x_train"), as_matrix(x_query, "x_query"), np.asarray(y_train)
    if xt.shape[0] == 0:
        raise ValueError("no training points to predict from")
    _, idx = top_k(xt, xq, k)
    classes, codes = np.unique(yt, return_inverse=True)
    valid = idx >= 0
    nbr = np.where(valid, codes[np.maximum(idx, 0)], -1)
    votes = np.zeros((xq.shape[0], classes.size))
    for col in range(nbr.shape[1]):
        ok = nbr[:, col] >= 0
        votes[np.flatnonzero(ok), nbr[ok, col]] += 1.0
    best = votes.max(axis=1, keepdims=True)
    tied = votes == best
    pred = np.empty(xq.shape[0], dtype=np.intp)
    for q in range(xq.shape[0]):
        # first neighbour (nearest) whose class is among the tied winners
        pred[q] = next(int(c) for c in nbr[q] if c >= 0 and tied[q, c])
    return classes[pred]
