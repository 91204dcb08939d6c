"""Brute-force reference values over all subsets, for small games."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

Game = Callable[[np.ndarray], float]


def all_subsets(game: Game, n: int) -> dict[frozenset[int], float]:
    return {
        frozenset(s): game(np.array(s, dtype=np.intp))
        for r in range(n + 1)
        for s in itertools.combinations(range(n), r)
    }


def shapley(game: Game, n: int) -> np.ndarray:
    v = all_subsets(game, n)
    phi = np.zeros(n)
    for i in range(n):
        for s, value in v.items():
            if i not in s:
                w = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                phi[i] += w * (v[s | {i}] - value)
    return phi


def banzhaf(game: Game, n: int) -> np.ndarray:
    v = all_subsets(game, n)
    beta = np.zeros(n)
    for i in range(n):
        for s, value in v.items():
            if i not in s:
                beta[i] += v[s | {i}] - value
    return beta / 2 ** (n - 1)


def loo(game: Game, n: int) -> np.ndarray:
    everything = np.arange(n)
    full = game(everything)
    return np.array([full - game(np.delete(everything, i)) for i in range(n)])


def tiny_knn_data(seed: int, n: int, m: int = 4, classes: int = 3, d: int = 2, task: str = "c"):
    rng = np.random.default_rng(seed)
    x, xv = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    if task == "c":
        return x, rng.integers(0, classes, n), xv, rng.integers(0, classes, m)
    return x, rng.normal(size=n), xv, rng.normal(size=m)
