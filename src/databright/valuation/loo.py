"""Leave-one-out values: ``U(all) − U(all without i)``. A negative control for noisy labels."""

from __future__ import annotations

import time

import numpy as np

from databright.valuation.result import ValuationResult, Valuer
from databright.valuation.utility import Utility

__all__ = ["LOO"]


class LOO(Valuer):
    """Exact leave-one-out values over any utility (``n + 1`` evaluations).

    The KNN utility has a closed form (only points among a validation point's K nearest
    matter, and the (K+1)-th takes their place), used when the utility offers ``loo()``.
    """

    method = "loo"

    def __init__(self) -> None:
        self._result: ValuationResult | None = None

    def fit(self, utility: Utility) -> LOO:
        """Compute every training point's leave-one-out value."""
        start = time.perf_counter()
        n = utility.n
        if hasattr(utility, "loo"):
            values = np.asarray(utility.loo(), dtype=np.float64)
            closed = True
        else:
            everything = np.arange(n)
            full = utility(everything)
            values = np.array([full - utility(np.delete(everything, i)) for i in range(n)])
            closed = False
        self._result = ValuationResult.exact(
            values, self.method, {"closed_form": closed}, time.perf_counter() - start
        )
        return self

