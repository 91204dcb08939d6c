"""Distances and neighbour orders shared by the KNN utility and KNN-Shapley.

Ties are broken by training index: every order here sorts by ``(distance, index)`` through
a stable argsort, so equal distances keep the lower index first. Distances are squared
Euclidean in float64 (``|a|² − 2ab + |b|²``, clipped at 0); squared and plain distances give
the same order. Features that are exactly representable small numbers (pixels, one-hot
columns) therefore give exactly equal distances for exact duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

#: Bytes a chunk of the (validation × training) work may use, per working array.
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024


def as_matrix(x: NDArray[np.generic] | list[list[float]], name: str) -> NDArray[np.float64]:
    """``x`` as a 2-D float64 array; a 1-D array is one feature per row."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows × features), got shape {arr.shape}")
    return arr


def sq_dists(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared Euclidean distances between the rows of ``a`` and of ``b`` (``len(a) × len(b)``)."""
    d = a @ b.T
    d *= -2.0  # in place: a fresh large array costs more than the arithmetic here
    d += np.einsum("ij,ij->i", a, a)[:, None]
    d += np.einsum("ij,ij->i", b, b)[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def chunk_rows(n_cols: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many rows of ``n_cols`` float64 values fit in ``chunk_bytes``."""
    return max(1, chunk_bytes // (8 * max(1, n_cols)))


def sorted_orders(
    x_train: NDArray[np.float64],
    x_val: NDArray[np.float64],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[tuple[slice, NDArray[np.intp]]]:
    """Yield ``(rows, order)``: for a chunk of validation rows, training indices nearest first."""
    n = x_train.shape[0]
    step = chunk_rows(n, chunk_bytes)
    for start in range(0, x_val.shape[0], step):
        rows = slice(start, min(start + step, x_val.shape[0]))
        yield rows, argsort_rows(sq_dists(x_val[rows], x_train))


def argsort_rows(d: NDArray[np.float64]) -> NDArray[np.intp]:
    """Row-wise argsort by ``(value, column index)``.

    An unstable sort is several times faster than a stable one; rows where it met equal
    values are sorted again stably, so the result is always the ``(value, index)`` order.
    """
    order = np.argsort(d, axis=1)
    if d.shape[1] > 1:
        srt = np.take_along_axis(d, order, axis=1)
        tied = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
        if tied.size:
            order[tied] = np.argsort(d[tied], axis=1, kind="stable")
    return order


def top_k(
    x_train: NDArray[np.float64],
    x_val: NDArray[np.float64],
    k: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """The ``k`` nearest training points of each validation row: ``(distances², indices)``.

    Rows with fewer than ``k`` training points are padded with ``inf`` / ``-1``.
    """
    m, n = x_val.shape[0], x_train.shape[0]
    kk = min(k, n)
    dist = np.full((m, k), np.inf)
    idx = np.full((m, k), -1, dtype=np.intp)
    if n == 0:
        return dist, idx
    step = chunk_rows(n, chunk_bytes)
    for start in range(0, m, step):
        rows = slice(start, min(start + step, m))
        d = sq_dists(x_val[rows], x_train)
        if kk < n:
            # argpartition is not tie-stable: widen to everything within the k-th distance,
            # then sort that small set by (distance, index).
            kth = np.partition(d, kk - 1, axis=1)[:, kk - 1 : kk]
            for r in range(d.shape[0]):
                cand = np.flatnonzero(d[r] <= kth[r, 0])
                best = cand[np.argsort(d[r, cand], kind="stable")[:kk]]
                dist[start + r, :kk] = d[r, best]
                idx[start + r, :kk] = best
        else:
            order = np.argsort(d, axis=1, kind="stable")
            dist[rows, :kk] = np.take_along_axis(d, order, axis=1)
            idx[rows, :kk] = order
    return dist, idx
