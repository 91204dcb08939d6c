"""What a whole batch adds: its marginal gain, and Shapley values with batches as players."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from databright.valuation.result import ValuationResult, Valuer
from databright.valuation.sampling import (
    MaxFits,
    Progress,
    RunningMoments,
    StoppingRule,
    permutations,
)
from databright.valuation.utility import KNNUtility, ModelUtility

__all__ = ["ProposalShapley", "batch_gain"]

Batch = tuple[NDArray[Any], NDArray[Any]]


def batch_gain(
    utility: KNNUtility | ModelUtility, x_batch: NDArray[Any], y_batch: NDArray[Any]
) -> float:
    """``utility(dataset + batch) − utility(dataset)``, the dataset being the utility's training set.

    Exact without refitting for :class:`KNNUtility` (only the validation points' K nearest
    dataset points are needed, cached across calls); by refitting for :class:`ModelUtility`.
    """
    return float(utility.gain(x_batch, y_batch))


def _union(batches: Sequence[Batch], members: Sequence[int]) -> Batch:
    """The batches in ``members``, concatenated in batch order (fixes tie-breaking)."""
    chosen = sorted(members)
    if not chosen:
        first = batches[0]
        return first[0][:0], first[1][:0]
    return (
        np.concatenate([np.asarray(batches[b][0]) for b in chosen]),
        np.concatenate([np.asarray(batches[b][1]) for b in chosen]),
    )


class ProposalShapley(Valuer):
    """Shapley values of proposals (batches) joining a dataset: ``v(T) = gain(union of T)``.

    A batch's value averages its gain over every order in which the batches could have
    arrived, so two batches carrying the same information split the credit instead of the
    first one taking it all (diminishing returns, not arrival order). The values sum to the
    gain of all batches together (efficiency). Exact over all ``2^B`` coalitions for up to
    ``max_exact`` batches, otherwise Monte-Carlo over permutations under ``stop``.
    """

    method = "proposal_shapley"

    def __init__(
        self, max_exact: int = 10, stop: StoppingRule | None = None, seed: int = 0
    ) -> None:
        self.max_exact, self.seed = int(max_exact), int(seed)
        self.stop = stop if stop is not None else MaxFits(2_000)
        self._result: ValuationResult | None = None

    def fit(self, utility: KNNUtility | ModelUtility, batches: Sequence[Batch]) -> ProposalShapley:
        """Value each of ``batches`` as a player; the dataset is the utility's training set."""
        start = time.perf_counter()
        b = len(batches)
        progress = Progress()
        cache: dict[frozenset[int], float] = {}

        def v(members: frozenset[int]) -> float:
            if members not in cache:
                cache[members] = 0.0 if not members else batch_gain(
                    utility, *_union(batches, list(members))
                )
            return cache[members]

        if b == 0:
            values, stderr, counts = np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
            exact = True
        elif b <= self.max_exact:
            values = np.zeros(b)
            weights = [math.factorial(s) * math.factorial(b - s - 1) / math.factorial(b)
                       for s in range(b)]
            for i in range(b):
                others = [j for j in range(b) if j != i]
                for size in range(b):
                    for coalition in itertools.combinations(others, size):
                        c = frozenset(coalition)
                        values[i] += weights[size] * (v(c | {i}) - v(c))
            stderr, counts, exact = np.zeros(b), np.ones(b, dtype=np.int64), True
        else:
            moments = RunningMoments(b)
            for perm in permutations(b, self.seed):
                prev, members, marg = 0.0, frozenset[int](), np.zeros(b)
                for pos, player in enumerate(perm):
                    members = members | {int(player)}
                    cur = v(members)
                    marg[pos], prev = cur - prev, cur
                progress.fits += b  # evaluations asked for, cached or not: always progresses
                moments.update(perm, marg)
                progress.stderr, progress.counts = moments.stderr, moments.count
                if self.stop(progress):
                    break
            values, stderr, counts, exact = moments.mean, moments.stderr, moments.count, False
        params = {"batches": b, "exact": exact, "evaluations": len(cache), "seed": self.seed}
        self._result = ValuationResult(
            values=np.asarray(values, dtype=np.float64),
            stderr=np.asarray(stderr, dtype=np.float64),
            counts=np.asarray(counts, dtype=np.int64),
            method=self.method,
            params=params,
            runtime_s=time.perf_counter() - start,
            converged=exact or self.stop.converged(progress),
        )
        return self

