"""Data-OOB (Kwon & Zou 2023): how well bagged models trained without a point predict it."""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from databright.valuation._neighbours import as_matrix
from databright.valuation.result import ValuationResult, Valuer
from databright.valuation.sampling import RunningMoments

__all__ = ["DataOOB"]


class DataOOB(Valuer):
    """Out-of-bag value of each training point under bagging of a cheap model.

    Each of ``n_estimators`` bootstrap samples trains a clone of ``model``; every point left
    out of a sample is scored by that model: 1/0 for a correct/incorrect label
    (classification) or ``−(ŷ − y)²`` (regression). A point's value is its mean OOB score, so a
    mislabeled point (one its neighbours' models disagree with) scores low. Needs no
    validation data.

    Args:
        model: base estimator (default: a fully grown decision tree, as in the paper).
        n_estimators: number of bootstrap models.
        max_samples: bootstrap size as a fraction of ``n``.
        task: ``"classification"`` or ``"regression"``.
        seed: seeds the bootstrap draws and the model's ``random_state`` when it has one.
    """

    method = "data_oob"

    def __init__(
        self,
        model: Any = None,
        n_estimators: int = 200,
        max_samples: float = 1.0,
        task: Literal["classification", "regression"] = "classification",
        seed: int = 0,
    ) -> None:
        if n_estimators < 1:
            raise ValueError("n_estimators must be at least 1")
        self.model = model
        self.n_estimators, self.max_samples = int(n_estimators), float(max_samples)
        self.task, self.seed = task, int(seed)
        self._result: ValuationResult | None = None

    def _base(self, rng: np.random.Generator) -> Any:
        if self.model is None:
            tree = DecisionTreeClassifier if self.task == "classification" else DecisionTreeRegressor
            return tree(random_state=int(rng.integers(2**31)))
        model = clone(self.model)
        if "random_state" in model.get_params():
            model.set_params(random_state=int(rng.integers(2**31)))
        return model

    def fit(self, x_train: NDArray[Any], y_train: NDArray[Any]) -> DataOOB:
        """Value every training point; read the values from ``.result``."""
        start = time.perf_counter()
        x, y = as_matrix(x_train, "x_train"), np.asarray(y_train)
        n = x.shape[0]
        if n < 2:
            raise ValueError("Data-OOB needs at least two training points")
        rng = np.random.default_rng(self.seed)
        size = max(1, round(self.max_samples * n))
        moments = RunningMoments(n)
        for _ in range(self.n_estimators):
            bag = rng.integers(0, n, size)
            oob = np.setdiff1d(np.arange(n), bag, assume_unique=False)
            if oob.size == 0 or (self.task == "classification" and np.unique(y[bag]).size < 2):
                continue
            model = self._base(rng).fit(x[bag], y[bag])
            pred = model.predict(x[oob])
            if self.task == "classification":
                score = (pred == y[oob]).astype(np.float64)
            else:
                score = -((np.asarray(pred, dtype=np.float64) - y[oob]) ** 2)
            moments.update(oob, score)
        # A point never out of bag (tiny n_estimators) has no evidence: value NaN.
        values = np.where(moments.count > 0, moments.mean, np.nan)
        params = {
            "n_estimators": self.n_estimators,
            "max_samples": self.max_samples,
            "model": type(self._base(np.random.default_rng(0))).__name__,
            "task": self.task,
            "seed": self.seed,
        }
        self._result = ValuationResult(
            values=values,
            stderr=moments.stderr,
            counts=moments.count.copy(),
            method=self.method,
            params=params,
            runtime_s=time.perf_counter() - start,
        )
        return self

