"""benchmarks/evaluation.py on tiny sizes, so the script cannot rot: the --json document's keys
(per featurizer and method: precision, recall, auc; the same for cleanlab) and its table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "evaluation.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_evaluation", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluation_benchmark_on_tiny_sizes(tmp_path) -> None:
    bench = _load()
    labels, flipped = bench.flip(np.arange(10) % 10, 0.2, np.random.default_rng(0))
    assert flipped.sum() == 2 and (labels[flipped] != (np.arange(10) % 10)[flipped]).all()
    doc = json.loads(json.dumps(bench.run([0], {"base": 60, "validation": 20, "batch": 20},
                                          ["knn"], cache_dir=tmp_path)))
    assert set(doc["detection"]) == {"pixels", "efficientnet-lite0"}
    for per in doc["detection"].values():
        assert set(per) == {"knn", "cleanlab"}
        for figures in per.values():
            assert {"precision", "recall", "auc"} <= set(figures)
            assert all(0.0 <= figures[k] <= 1.0 for k in ("precision", "recall", "auc"))
    assert {"clean_gain_bps", "random_gain_bps", "base_bps"} <= set(doc["gain"]["fine_tune"])
    assert {"pixels_utility_gain", "pixels_knn_gain", "fine_tune"} <= set(doc["gain_signs"])
    assert doc["gain_signs"]["fine_tune"]["seeds"] == 1
    assert set(doc["pass"]) == {f"{f}/{m}/{k}" for f in doc["detection"]
                                for m in ("knn", "cleanlab") for k in bench.TARGETS}
    assert "efficientnet-lite0" in bench.table(doc) and "cleanlab" in bench.table(doc)
    assert any(tmp_path.rglob("*")), "embeddings are cached by CID in the given folder"
