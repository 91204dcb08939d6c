"""Data-OOB finds flipped labels on digits; basic bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from databright.valuation import DataOOB


def test_data_oob_detects_flipped_labels() -> None:
    digits = load_digits()
    x, y = digits.data[:600], digits.target[:600].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(600, 60, replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, 10, 60)) % 10
    result = DataOOB(n_estimators=60, seed=0).fit(x, y).result
    noisy = np.zeros(600, dtype=bool)
    noisy[flipped] = True
    assert roc_auc_score(noisy, -result.values) > 0.9
    assert result.counts.min() > 5 and result.method == "data_oob"
    again = DataOOB(n_estimators=60, seed=0).fit(x, y).result
    assert np.array_equal(result.values, again.values)


def test_data_oob_custom_model_and_regression() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3))
    y = x @ np.array([1.0, -2.0, 0.5])
    y[:5] += 20  # gross outliers
    r = DataOOB(n_estimators=40, task="regression", seed=0).fit(x, y).result
    assert r.values[:5].mean() < np.median(r.values[5:])
    c = DataOOB(KNeighborsClassifier(3), n_estimators=10, seed=0).fit(x, y > 0).result
    assert c.params["model"] == "KNeighborsClassifier"
    with pytest.raises(ValueError):
        DataOOB(n_estimators=0)
