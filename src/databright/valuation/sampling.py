"""Shared pieces of the Monte-Carlo methods: samplers, running statistics, stopping rules.

A stopping rule sees the progress of a method (utility evaluations so far, seconds elapsed,
per-player standard errors and sample counts) and says whether to stop. Rules combine with
``|`` (stop when either says so), e.g. ``StandardErrorBelow(0.001) | MaxFits(20_000)``.
A method reports ``converged=True`` only when a convergence rule (not a budget) stopped it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MaxFits",
    "MaxSeconds",
    "Progress",
    "RunningMoments",
    "StandardErrorBelow",
    "StoppingRule",
    "bernoulli_subsets",
    "permutations",
]


@dataclass
class Progress:
    """What a stopping rule may look at."""

    fits: int = 0
    started: float = field(default_factory=time.perf_counter)
    stderr: NDArray[np.float64] | None = None
    counts: NDArray[np.int64] | None = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class StoppingRule:
    """Base class; subclasses implement ``check``. ``converges`` marks convergence criteria."""

    converges = False

    def check(self, progress: Progress) -> bool:
        raise NotImplementedError

    def converged(self, progress: Progress) -> bool:
        """True when a convergence criterion (not only a budget) is met."""
        return self.converges and self.check(progress)

    def __call__(self, progress: Progress) -> bool:
        return self.check(progress)

    def __or__(self, other: StoppingRule) -> StoppingRule:
        return _Either(self, other)

    def describe(self) -> str:
        return type(self).__name__


class _Either(StoppingRule):
    def __init__(self, a: StoppingRule, b: StoppingRule) -> None:
        self.a, self.b = a, b

    def check(self, progress: Progress) -> bool:
        return self.a.check(progress) or self.b.check(progress)

    def converged(self, progress: Progress) -> bool:
        return self.a.converged(progress) or self.b.converged(progress)

    def describe(self) -> str:
        return f"{self.a.describe()} | {self.b.describe()}"


class MaxFits(StoppingRule):
    """Budget: stop after ``n`` utility evaluations (model fits)."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def check(self, progress: Progress) -> bool:
        return progress.fits >= self.n

    def describe(self) -> str:
        return f"MaxFits({self.n})"


class MaxSeconds(StoppingRule):
    """Budget: stop once ``seconds`` of wall time have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def check(self, progress: Progress) -> bool:
        return progress.elapsed >= self.seconds

    def describe(self) -> str:
        return f"MaxSeconds({self.seconds:g})"


class StandardErrorBelow(StoppingRule):
    """Convergence: every player's standard error ≤ ``atol`` with at least ``min_count`` samples."""

    converges = True

    def __init__(self, atol: float, min_count: int = 5) -> None:
        self.atol, self.min_count = float(atol), int(min_count)

    def check(self, progress: Progress) -> bool:
        if progress.stderr is None or progress.counts is None or progress.counts.size == 0:
            return False
        if progress.counts.min() < self.min_count:
            return False
        return bool(np.nanmax(progress.stderr) <= self.atol)

    def describe(self) -> str:
        return f"StandardErrorBelow({self.atol:g}, min_count={self.min_count})"


class RunningMoments:
    """Per-player running mean and variance (Welford), updated for a subset at a time."""

    def __init__(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n)
        self._m2 = np.zeros(n)

    def update(
        self,
        players: NDArray[np.intp] | NDArray[np.bool_] | slice,
        samples: NDArray[np.float64] | float,
    ) -> None:
        """Add one sample for each of ``players`` (``samples`` broadcast to them)."""
        self.count[players] += 1
        c = self.count[players]
        delta = samples - self.mean[players]
        self.mean[players] += delta / c
        self._m2[players] += delta * (samples - self.mean[players])

    @property
    def variance(self) -> NDArray[np.float64]:
        """Sample variance (NaN below two samples)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 1, self._m2 / np.maximum(self.count - 1, 1), np.nan)

    @property
    def stderr(self) -> NDArray[np.float64]:
        """Standard error of each mean (inf below two samples)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            se = np.sqrt(self.variance / self.count)
        return np.where(self.count > 1, se, np.inf)


def permutations(n: int, seed: int, antithetic: bool = False) -> Iterator[NDArray[np.intp]]:
    """Endless uniform permutations of ``range(n)``; ``antithetic`` also yields each reversed."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        yield perm
        if antithetic:
            yield perm[::-1].copy()


def bernoulli_subsets(n: int, seed: int, p: float = 0.5) -> Iterator[NDArray[np.bool_]]:
    """Endless masks where every player is in independently with probability ``p``."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.random(n) < p
