"""The benchmark's functions on tiny sizes (no pyDVL), so the script cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "valuation.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_valuation", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_pieces_on_tiny_sizes() -> None:
    bench = _load()
    knn = bench.compare_knn([(200, 10), (400, 10)], python=None)
    assert [r["n"] for r in knn["rows"]] == [200, 400] and knn["knn_max_abs_diff"] is None
    det = bench.digits_detection([0], oob_estimators=5, tmc_seconds=0.2)
    assert set(det["auc"]) == {"knn_shapley", "data_oob", "tmc_shapley", "loo"}
    assert det["auc"]["knn_shapley"] > 0.95
    gain = bench.gain_check(4, base_size=100)
    assert gain["gain_max_abs_diff"] < 1e-12
    auc, f1 = bench.detection(np.array([-1.0, 2.0, 3.0, -2.0]), np.array([1, 0, 0, 1], bool))
    assert auc == 1.0 and f1 == 1.0
    doc = {
        "knn_rows": knn["rows"], "digits": det, "auc": det["auc"], "f1": det["f1"], "k": 5,
        **gain,
    }
    assert "knn_shapley" in bench.table(doc)
