"""Exact KNN-Shapley against brute force over all subsets of the KNN utility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.valuation import KNNShapley, KNNUtility
from tests.valuation.games import shapley, tiny_knn_data


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 3), (5, 2), (7, 3), (8, 1), (6, 10), (9, 4)])
def test_matches_brute_force(task: str, n: int, k: int) -> None:
    x, y, xv, yv = tiny_knn_data(n * 10 + k, n, task=task[0])
    utility = KNNUtility(x, y, xv, yv, k=k, task=task)  # type: ignore[arg-type]
    ours = KNNShapley(k=k, task=task).fit(x, y, xv, yv).result  # type: ignore[arg-type]
    np.testing.assert_allclose(ours.values, shapley(utility, n), rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 7),
    k=st.integers(1, 8),
    task=st.sampled_from(["classification", "regression"]),
    ties=st.booleans(),
)
def test_axioms(seed: int, n: int, k: int, task: str, ties: bool) -> None:
    """Efficiency (sum = U(all) − U(∅)), and exactness also with exact distance ties."""
    x, y, xv, yv = tiny_knn_data(seed, n, task=task[0])
    if ties:  # integer grid: many equal distances, broken by index
        x, xv = np.round(x), np.round(xv)
    utility = KNNUtility(x, y, xv, yv, k=k, task=task)  # type: ignore[arg-type]
    values = KNNShapley(k=k, task=task).fit(x, y, xv, yv).result.values  # type: ignore[arg-type]
    total = utility(np.arange(n)) - utility(np.zeros(0, dtype=np.intp))
    assert values.sum() == pytest.approx(total, abs=1e-12)
    np.testing.assert_allclose(values, shapley(utility, n), atol=1e-12)


def test_symmetry_and_null_players() -> None:
    # Points mirrored around the validation point with the same label are symmetric.
    x = np.array([[-1.0], [1.0], [5.0]])
    y = np.array([0, 0, 1])
    xv, yv = np.array([[0.0]]), np.array([0])
    v = KNNShapley(k=1).fit(x, y, xv, yv).result.values
    assert v[0] == pytest.approx(v[1], abs=1e-15)
    np.testing.assert_allclose(v, shapley(KNNUtility(x, y, xv, yv, k=1), 3), atol=1e-12)
    # No label matches: every coalition scores 0, so every point is a null player.
    z = KNNShapley(k=2).fit(x, np.array([1, 1, 1]), xv, yv).result.values
    assert np.array_equal(z, np.zeros(3))


def test_tie_breaking_is_by_index_and_deterministic() -> None:
    # Two points at the same distance with different labels: with K=1 the lower index wins.
    x = np.array([[1.0], [-1.0]])
    y = np.array([1, 0])
    xv, yv = np.array([[0.0]]), np.array([0])
    v = KNNShapley(k=1).fit(x, y, xv, yv).result.values
    # order (0, 1): U({0}) = 0, U({1}) = 1, U({0,1}) = 0 (index 0 is "nearer")
    np.testing.assert_allclose(v, [-0.5, 0.5])
    assert np.array_equal(v, KNNShapley(k=1).fit(x, y, xv, yv).result.values)


def test_chunking_does_not_change_values() -> None:
    x, y, xv, yv = tiny_knn_data(3, 300, m=37, classes=4, d=3)
    big = KNNShapley(k=5).fit(x, y, xv, yv).result.values
    small = KNNShapley(k=5, chunk_bytes=1).fit(x, y, xv, yv).result.values
    np.testing.assert_allclose(big, small, atol=1e-15)


def test_result_metadata_and_stderr() -> None:
    x, y, xv, yv = tiny_knn_data(4, 50, m=20)
    result = KNNShapley(k=3).fit(x, y, xv, yv).result
    assert result.method == "knn_shapley"
    assert result.params["k"] == 3 and result.params["n_train"] == 50
    assert (result.stderr >= 0).all() and result.stderr.max() > 0
    assert sorted(result.ranks.tolist()) == list(range(50))
    d = result.to_dict()
    assert len(d["values"]) == 50 and d["method"] == "knn_shapley"


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        KNNShapley(k=0)
    with pytest.raises(ValueError):
        KNNShapley().fit(np.zeros((3, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1))
    with pytest.raises(RuntimeError):
        _ = KNNShapley().result


@pytest.mark.slow
def test_scale_100k_points_efficiency_holds() -> None:
    """100k training points: values still sum to U(all) − U(∅) (cumulative sums stay exact)."""
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(100_000, 10)), rng.normal(size=(100, 10))
    y, yv = rng.integers(0, 3, 100_000), rng.integers(0, 3, 100)
    result = KNNShapley(k=5).fit(x, y, xv, yv).result
    total = KNNUtility(x, y, xv, yv, k=5).full_score()
    assert result.values.sum() == pytest.approx(total, abs=1e-9)
    assert result.runtime_s < 60  # ~1 s on an idle 2-core machine
