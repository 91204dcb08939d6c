"""Batch gain (closed form vs refit) and Shapley values with batches as players."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.naive_bayes import GaussianNB

from databright.valuation import (
    KNNUtility,
    MaxFits,
    ModelUtility,
    ProposalShapley,
    batch_gain,
)
from tests.valuation.games import tiny_knn_data


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 12),
    b=st.integers(0, 6),
    k=st.integers(1, 6),
    task=st.sampled_from(["classification", "regression"]),
    ties=st.booleans(),
)
def test_knn_batch_gain_equals_refit(seed, n, b, k, task, ties) -> None:
    x, y, xv, yv = tiny_knn_data(seed, n + b, m=5, task=task[0])
    if ties:
        x, xv = np.round(x), np.round(xv)
    base = KNNUtility(x[:n], y[:n], xv, yv, k=k, task=task)
    refit = KNNUtility(x, y, xv, yv, k=k, task=task)
    expected = refit(np.arange(n + b)) - base(np.arange(n))
    assert batch_gain(base, x[n:], y[n:]) == pytest.approx(expected, abs=1e-12)


def test_model_batch_gain_is_refit() -> None:
    x, y, xv, yv = tiny_knn_data(1, 40, m=30, classes=2)
    u = ModelUtility(GaussianNB(), x[:30], y[:30], xv, yv)
    full = ModelUtility(GaussianNB(), x, y, xv, yv)
    assert batch_gain(u, x[30:], y[30:]) == pytest.approx(full(np.arange(40)) - u(np.arange(30)))


def _batches(seed: int, count: int, size: int = 3, k: int = 3):
    x, y, xv, yv = tiny_knn_data(seed, 20 + count * size, m=8)
    batches = [
        (x[20 + i * size : 20 + (i + 1) * size], y[20 + i * size : 20 + (i + 1) * size])
        for i in range(count)
    ]
    return KNNUtility(x[:20], y[:20], xv, yv, k=k), batches


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 5))
def test_proposal_shapley_efficiency(seed: int, count: int) -> None:
    utility, batches = _batches(seed, count)
    values = ProposalShapley().fit(utility, batches).result.values
    grand = batch_gain(utility, np.concatenate([b[0] for b in batches]),
                       np.concatenate([b[1] for b in batches]))
    assert values.sum() == pytest.approx(grand, abs=1e-12)  # v(all) − v(∅), v(∅) = 0


def test_proposal_shapley_symmetry_diminishing_returns_and_null() -> None:
    utility, batches = _batches(4, 2, k=1)
    # The same points proposed twice (with K=1 a copy adds nothing once the original is in):
    copy = (batches[0][0] + 1e-9, batches[0][1])
    nothing = (batches[0][0][:0], batches[0][1][:0])
    result = ProposalShapley().fit(utility, [batches[0], copy, nothing]).result
    v = result.values
    alone = batch_gain(utility, *batches[0])
    assert v[0] == pytest.approx(v[1], abs=1e-9)  # symmetric: they split the credit
    assert v[0] + v[1] == pytest.approx(alone, abs=1e-9)  # not alone-gain each
    assert v[2] == 0.0  # null player


def test_proposal_shapley_monte_carlo_matches_exact() -> None:
    utility, batches = _batches(9, 6, size=2)
    exact = ProposalShapley().fit(utility, batches).result
    mc = ProposalShapley(max_exact=3, stop=MaxFits(64), seed=1).fit(utility, batches).result
    assert not mc.params["exact"] and exact.params["exact"]
    err = np.abs(mc.values - exact.values)
    assert (err <= 5 * mc.stderr + 1e-9).all()
    assert ProposalShapley().fit(utility, []).result.values.size == 0


def test_full_score_equals_call_on_everything() -> None:
    for task in ("classification", "regression"):
        x, y, xv, yv = tiny_knn_data(21, 30, m=7, task=task[0])
        u = KNNUtility(x, y, xv, yv, k=4, task=task)  # type: ignore[arg-type]
        assert u.full_score() == pytest.approx(u(np.arange(30)), abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 4))
def test_proposal_shapley_null_batch_changes_nothing(seed: int, count: int) -> None:
    utility, batches = _batches(seed, count)
    empty = (batches[0][0][:0], batches[0][1][:0])
    before = ProposalShapley().fit(utility, batches).result.values
    after = ProposalShapley().fit(utility, [*batches, empty]).result.values
    assert after[-1] == 0.0
    np.testing.assert_allclose(after[:-1], before, atol=1e-12)
