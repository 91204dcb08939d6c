"""Sampling estimators over any utility: TMC-Shapley and MSR-Banzhaf.

Both run until their stopping rule says so (a budget of utility evaluations or seconds, or
standard errors below a tolerance) and report per-player standard errors and sample counts.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from databright.valuation.result import ValuationResult, Valuer
from databright.valuation.sampling import (
    MaxFits,
    Progress,
    RunningMoments,
    StoppingRule,
    bernoulli_subsets,
    permutations,
)
from databright.valuation.utility import Utility

__all__ = ["MSRBanzhaf", "TMCShapley"]


class _Sampled(Valuer):
    method = ""

    def __init__(self, stop: StoppingRule | None = None, seed: int = 0) -> None:
        self.stop = stop if stop is not None else MaxFits(10_000)
        self.seed = int(seed)
        self._result: ValuationResult | None = None


    def _finish(self, moments: Any, values: Any, progress: Progress, extra: dict[str, Any]) -> None:
        params = {"stop": self.stop.describe(), "seed": self.seed, "fits": progress.fits, **extra}
        self._result = ValuationResult(
            values=np.asarray(values, dtype=np.float64),
            stderr=np.asarray(progress.stderr, dtype=np.float64),
            counts=np.asarray(progress.counts, dtype=np.int64),
            method=self.method,
            params=params,
            runtime_s=time.perf_counter() - progress.started,
            converged=self.stop.converged(progress),
        )


class TMCShapley(_Sampled):
    """Truncated Monte-Carlo Shapley (Ghorbani & Zou 2019): mean marginals over permutations.

    Along a permutation, once the prefix's utility is within ``truncation_tol`` of the full
    set's, the remaining marginals are taken as 0 (saves fits, adds a small bias). Utilities
    with ``prefix_scores`` (the KNN utility) evaluate a whole permutation in one pass; there
    nothing is truncated and the estimate is unbiased. A permutation cut short by the
    stopping rule is discarded.
    """

    method = "tmc_shapley"

    def __init__(
        self, stop: StoppingRule | None = None, seed: int = 0, truncation_tol: float = 1e-3
    ) -> None:
        super().__init__(stop, seed)
        self.truncation_tol = float(truncation_tol)

    def fit(self, utility: Utility) -> TMCShapley:
        """Estimate the Shapley value of every training point of ``utility``."""
        n = utility.n
        progress = Progress()
        moments = RunningMoments(n)
        fast = hasattr(utility, "prefix_scores")
        empty = utility(np.zeros(0, dtype=np.intp))
        full = utility(np.arange(n))
        progress.fits += 2
        for perm in permutations(n, self.seed):
            if fast:
                scores = utility.prefix_scores(perm)  # type: ignore[attr-defined]
                progress.fits += n
                marginals = np.diff(scores)
            else:
                marginals = np.zeros(n)
                prev, aborted = empty, False
                for t in range(n):
                    if abs(full - prev) < self.truncation_tol:
                        break  # truncation: the rest of the permutation adds ~nothing
                    cur = utility(perm[: t + 1])
                    progress.fits += 1
                    marginals[t], prev = cur - prev, cur
                    if progress.fits % 32 == 0 and self.stop(progress):
                        aborted = True
                        break
                if aborted:
                    break
            moments.update(perm, marginals)
            progress.stderr, progress.counts = moments.stderr, moments.count
            if self.stop(progress):
                break
        progress.stderr, progress.counts = moments.stderr, moments.count
        extra = {"truncation_tol": self.truncation_tol, "permutations": int(moments.count.max(initial=0))}
        self._finish(moments, moments.mean, progress, extra)
        return self


class MSRBanzhaf(_Sampled):
    """Maximum-sample-reuse Banzhaf values (Wang & Jia 2023).

    Every sampled subset ``S`` (each point in with probability 1/2) is used for all players:
    ``value_i = mean U(S | i ∈ S) − mean U(S | i ∉ S)``, standard error from both groups.
    """

    method = "msr_banzhaf"

    def fit(self, utility: Utility) -> MSRBanzhaf:
        """Estimate the Banzhaf value of every training point of ``utility``."""
        n = utility.n
        progress = Progress()
        inside, outside = RunningMoments(n), RunningMoments(n)
        for mask in bernoulli_subsets(n, self.seed):
            score = utility(np.flatnonzero(mask))
            progress.fits += 1
            inside.update(mask, score)
            outside.update(~mask, score)
            progress.counts = np.minimum(inside.count, outside.count)
            progress.stderr = np.sqrt(
                np.where(inside.count > 1, inside.variance / np.maximum(inside.count, 1), np.inf)
                + np.where(outside.count > 1, outside.variance / np.maximum(outside.count, 1), np.inf)
            )
            if self.stop(progress):
                break
        values = inside.mean - outside.mean
        self._finish(None, values, progress, {"subsets": progress.fits})
        return self
