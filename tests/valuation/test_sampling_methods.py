"""TMC-Shapley, MSR-Banzhaf and LOO against brute-force values of small games."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.naive_bayes import GaussianNB

from databright.valuation import (
    LOO,
    KNNShapley,
    KNNUtility,
    MaxFits,
    MaxSeconds,
    ModelUtility,
    MSRBanzhaf,
    StandardErrorBelow,
    TMCShapley,
)
from databright.valuation.sampling import Progress, RunningMoments
from tests.valuation.games import banzhaf, loo, shapley, tiny_knn_data


def _within(est, exact, z: float = 4.5, floor: float = 1e-9) -> None:
    """Every estimate within ``z`` standard errors of the exact value."""
    err = np.abs(est.values - exact)
    assert (err <= z * est.stderr + floor).all(), (err, est.stderr)


def test_tmc_fast_path_within_stderr_of_exact_knn_shapley() -> None:
    x, y, xv, yv = tiny_knn_data(1, 8, m=6)
    utility = KNNUtility(x, y, xv, yv, k=3)
    est = TMCShapley(stop=MaxFits(8 * 400), seed=1).fit(utility).result
    exact = KNNShapley(k=3).fit(x, y, xv, yv).result.values
    _within(est, exact)
    assert est.params["permutations"] >= 300 and not est.converged


def test_tmc_generic_path_within_stderr_of_brute_force() -> None:
    x, y, xv, yv = tiny_knn_data(2, 6, m=30, classes=2)
    utility = ModelUtility(GaussianNB(), x, y, xv, yv)
    exact = shapley(utility, 6)
    est = TMCShapley(stop=MaxFits(2000), seed=0, truncation_tol=0.0).fit(utility).result
    _within(est, exact)


def test_tmc_converges_under_stderr_rule() -> None:
    x, y, xv, yv = tiny_knn_data(5, 5, m=5)
    rule = StandardErrorBelow(0.02, min_count=20) | MaxFits(200_000)
    est = TMCShapley(stop=rule, seed=3).fit(KNNUtility(x, y, xv, yv, k=2)).result
    assert est.converged and est.stderr.max() <= 0.02


def test_msr_banzhaf_within_stderr_of_brute_force() -> None:
    x, y, xv, yv = tiny_knn_data(7, 7, m=8)
    utility = KNNUtility(x, y, xv, yv, k=2)
    est = MSRBanzhaf(stop=MaxFits(6000), seed=2).fit(utility).result
    _within(est, banzhaf(utility, 7))
    assert est.params["subsets"] == 6000


def test_loo_closed_form_equals_refit() -> None:
    for task, k in [("classification", 1), ("classification", 3), ("regression", 2)]:
        x, y, xv, yv = tiny_knn_data(11, 9, m=5, task=task[0])
        utility = KNNUtility(x, y, xv, yv, k=k, task=task)  # type: ignore[arg-type]
        np.testing.assert_allclose(LOO().fit(utility).result.values, loo(utility, 9), atol=1e-12)
    # generic path (refit) on a model utility
    x, y, xv, yv = tiny_knn_data(12, 8, m=20, classes=2)
    mu = ModelUtility(GaussianNB(), x, y, xv, yv)
    np.testing.assert_allclose(LOO().fit(mu).result.values, loo(mu, 8), atol=1e-12)


def test_prefix_scores_equal_direct_evaluation() -> None:
    for task in ("classification", "regression"):
        x, y, xv, yv = tiny_knn_data(13, 10, m=4, task=task[0])
        u = KNNUtility(x, y, xv, yv, k=3, task=task)  # type: ignore[arg-type]
        perm = np.random.default_rng(0).permutation(10)
        direct = [u(perm[:t]) for t in range(11)]
        np.testing.assert_allclose(u.prefix_scores(perm), direct, atol=1e-12)


def test_budget_in_seconds_and_running_moments() -> None:
    x, y, xv, yv = tiny_knn_data(1, 30, m=10)
    est = TMCShapley(stop=MaxSeconds(0.2), seed=0).fit(KNNUtility(x, y, xv, yv)).result
    assert est.runtime_s < 2.0 and "MaxSeconds" in est.params["stop"]
    rm = RunningMoments(2)
    for s in [1.0, 2.0, 4.0]:
        rm.update(np.array([0, 1]), np.array([s, -s]))
    assert rm.mean == pytest.approx([7 / 3, -7 / 3])
    assert rm.variance == pytest.approx([np.var([1, 2, 4], ddof=1)] * 2)
    assert not StandardErrorBelow(1.0).check(Progress())
