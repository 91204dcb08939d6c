"""P(accept a wrong result) under collusion: the hypergeometric and its Monte Carlo."""

from __future__ import annotations

from fractions import Fraction

import pytest

from databright.compute.collusion import (
    colluders,
    monte_carlo,
    p_accept_wrong,
    wilson,
)


def test_the_hypergeometric_values() -> None:
    assert p_accept_wrong(30, 10) == Fraction(120, 4060)  # C(10,3) / C(30,3)
    assert p_accept_wrong(60, 3) == Fraction(1, 34_220)
    assert p_accept_wrong(30, 2) == 0 and p_accept_wrong(5, 5) == 1
    assert colluders(30, 1 / 3) == 10 and colluders(30, 0.05) == 1 and colluders(300, 0.2) == 60
    with pytest.raises(ValueError):
        p_accept_wrong(30, 31)


def test_the_wilson_interval() -> None:
    lo, hi = wilson(0, 100_000)
    assert lo == 0 and 3.8e-5 < hi < 3.9e-5  # the "rule of three" region: about 3.84 / n
    lo, hi = wilson(500, 1000)
    assert lo < 0.5 < hi and abs((hi - lo) / 2 - 1.96 * (0.25 / 1000) ** 0.5) < 1e-3


def test_monte_carlo_through_the_verdict_matches_the_hypergeometric() -> None:
    # 6 of 10 colluding: p = 20/120 = 1/6, so 12,000 tasks pin it to about ±0.01.
    mc = monte_carlo(10, 6, 12_000, seed=3)
    assert mc.ci[0] <= mc.estimate <= mc.ci[1] and mc.ci[1] - mc.ci[0] < 0.015
    lo, hi = wilson(mc.hits, mc.trials, z=3.29)  # 99.9 %: a test, not a benchmark row
    assert lo <= p_accept_wrong(10, 6) <= hi
    assert not lo <= p_accept_wrong(10, 5) <= hi  # and it tells a different pool apart


def test_no_wrong_result_accepted_with_fewer_than_three_colluders() -> None:
    assert monte_carlo(30, 2, 20_000, seed=1).hits == 0
    assert monte_carlo(3, 3, 100, seed=1).hits == 100


def test_per_job_inclusion_exclusion_against_enumeration() -> None:
    from itertools import combinations

    from databright.compute.collusion import p_job_accept_wrong

    # 9 accounts in 3 disjoint triples, 5 colluders placed every possible way.
    triples = [{0, 1, 2}, {3, 4, 5}, {6, 7, 8}]
    placements = list(combinations(range(9), 5))
    bad = sum(any(t <= set(c) for t in triples) for c in placements)
    assert p_job_accept_wrong(9, 5, 3) == Fraction(bad, len(placements))
    assert p_job_accept_wrong(9, 9, 3) == 1 and p_job_accept_wrong(9, 2, 3) == 0
    assert p_job_accept_wrong(60, 20, 1) == p_accept_wrong(60, 20)


def test_jobs_planned_by_the_scheduler_match_the_per_job_probability() -> None:
    from databright.compute.collusion import job_monte_carlo, p_job_accept_wrong

    hits, shards, _ = job_monte_carlo(60, 20, 1000, 300, seed=2)
    assert shards == 20  # 60 accounts, 50 items each: 20 disjoint triples
    lo, hi = wilson(hits, 300, z=3.29)  # 99.9 %: a test, not a benchmark row
    assert lo <= float(p_job_accept_wrong(60, 20, 20)) <= hi  # ≈ 0.53
    assert hi - lo < 0.2
