"""How likely TMR is to accept a wrong result when part of the worker pool colludes.

A wrong result is accepted only when all three replicas of a task return the same wrong digest
(any disagreement makes the coordinator recompute, :func:`databright.compute.tmr.decide`). If
``m`` of the ``N`` accounts of a class collude and the three replicas are three distinct
accounts nobody chose (the scheduler orders accounts by a seeded hash, so any three positions
are a uniformly random 3-subset), that happens with the hypergeometric probability
``C(m, 3) / C(N, 3)``.

:func:`monte_carlo` estimates the same probability by drawing replica triples and running each
through the real verdict (colluders agree on one wrong digest, honest accounts return the right
one, the recompute returns the right one), with a Wilson score interval for the estimate.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from fractions import Fraction

from databright.compute.tmr import decide

_RIGHT = hashlib.sha256(b"the right result").hexdigest()
_WRONG = hashlib.sha256(b"the colluders' result").hexdigest()
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def colluders(n: int, fraction: float | Fraction) -> int:
    """The number of colluding accounts, ⌊f·N⌋ (f read as the nearest simple fraction)."""
    f = Fraction(fraction).limit_denominator(10**6)  # 1/3 as a float means one third
    if not 0 <= f <= 1:
        raise ValueError(f"a colluding fraction is in [0, 1]: {fraction}")
    return math.floor(f * n)


def p_accept_wrong(n: int, m: int, replicas: int = 3) -> Fraction:
    """``C(m, r) / C(N, r)``: all ``r`` replicas drawn without replacement are colluders."""
    if not 0 <= m <= n or n < replicas:
        raise ValueError(f"need 0 <= m <= N and N >= {replicas}: m={m}, N={n}")
    return Fraction(math.comb(m, replicas), math.comb(n, replicas))


def wilson(hits: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion."""
    if trials <= 0:
        raise ValueError("no trials")
    p = hits / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (0.0 if hits == 0 else max(0.0, centre - half),
            1.0 if hits == trials else min(1.0, centre + half))


@dataclass(frozen=True)
class MonteCarlo:
    """A Monte Carlo estimate of P(accept a wrong result) and its 95 % interval."""

    n: int
    m: int
    trials: int
    hits: int
    ci: tuple[float, float]

    @property
    def estimate(self) -> float:
        return self.hits / self.trials

    def contains(self, p: float | Fraction) -> bool:
        return self.ci[0] <= float(p) <= self.ci[1]


def monte_carlo(n: int, m: int, trials: int, *, seed: int = 0, replicas: int = 3) -> MonteCarlo:
    """Draw ``trials`` replica sets of ``replicas`` distinct accounts out of ``n`` (the first
    ``m`` collude) and count the tasks whose verdict accepts the colluders' wrong digest."""
    if not 0 <= m <= n or n < replicas:
        raise ValueError(f"need 0 <= m <= N and N >= {replicas}: m={m}, N={n}")
    rng = random.Random(seed)
    accounts = ["0x" + f"{k:040x}" for k in range(n)]
    answer = [_WRONG if k < m else _RIGHT for k in range(n)]
    hits = 0
    for t in range(trials):
        drawn = rng.sample(range(n), replicas)
        verdict = decide(f"trial{t}", {accounts[k]: answer[k] for k in drawn}, lambda: _RIGHT,
                         replicas=replicas)
        hits += verdict.accepted != _RIGHT
    return MonteCarlo(n, m, trials, hits, wilson(hits, trials))


def p_job_accept_wrong(n: int, m: int, shards: int, replicas: int = 3) -> Fraction:
    """P(at least one of ``shards`` disjoint replica sets is all colluders), by inclusion and
    exclusion: ``Σₖ (−1)ᵏ⁺¹ C(S, k) · m^(3k) / N^(3k)`` with falling factorials.

    A job's shards keep their replicas for every step (and, sticky, for later jobs on the same
    dataset), so this is the chance that some of its tasks are accepted wrong at every step.
    """
    if shards * replicas > n:
        raise ValueError(f"{shards} disjoint sets of {replicas} need {shards * replicas} accounts")
    total = Fraction(0)
    for k in range(1, shards + 1):
        j = replicas * k
        if j > m:
            break
        total += (-1) ** (k + 1) * math.comb(shards, k) * Fraction(math.perm(m, j),
                                                                   math.perm(n, j))
    return total


def job_monte_carlo(n: int, m: int, n_items: int, jobs: int, *, seed: int = 0,
                    cap_bps: int = 500) -> tuple[int, int, tuple[float, float]]:
    """Plan ``jobs`` fresh jobs with the real scheduler (random seeds) over ``n`` accounts, the
    first ``m`` colluding; returns (jobs with an all-colluder shard, shards a job, interval)."""
    from databright.compute.exposure import ExposureLedger
    from databright.compute.scheduler import WorkerInfo, plan

    pool = [WorkerInfo("0x" + f"{k:040x}", "c") for k in range(n)]
    bad = {w.account for w in pool[:m]}
    ledger = ExposureLedger(":memory:")
    rng = random.Random(seed)
    hits, shards = 0, 0
    for _ in range(jobs):
        p = plan("d", n_items, pool, ledger, cap_bps=cap_bps, seed=rng.getrandbits(128))
        shards = len(p.shards)
        hits += any(set(s.replicas) <= bad for s in p.shards)
    ledger.close()
    return hits, shards, wilson(hits, jobs)
