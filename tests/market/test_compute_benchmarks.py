"""The compute benchmarks run and their correctness figures hold (the timings are reported by
the scripts, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--json", *args],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_the_fault_matrix_catches_a_liar_and_keeps_the_honest_bits():
    out = _run("compute_faults.py", "--modes", "1ulp")
    s = out["summary"]
    assert s["detection"] == 1.0 and s["lied_tasks"] >= 1
    assert s["liars_slashed"] == s["liars"] == 1
    assert s["checkpoints_equal"] == s["jobs"] and s["references_equal"] == s["jobs"]
    assert s["false_alarms_honest_jobs"] == 0 and s["honest_disagreements"] == 0


def test_the_overhead_benchmark_trains_the_reference_bits():
    out = _run("compute_overhead.py", "--quick")
    assert out["same_bits"] is True and out["median"]["steps"] == 10
    assert out["median"]["overhead_ms"] > 0 and "met" in out


def test_the_spot_benchmark_costs_about_one_plus_p_and_catches_every_checked_lie():
    out = _run("spot.py", "--quick")
    s = out["summary"]
    assert s["tmr_per_task"] >= 3.0  # three replicas, plus audits and disagreements
    for key, per_task in s["spot_per_task"].items():  # 1 + the checked fraction (± sampling)
        p = float(key.split("/")[0])
        assert 1.0 <= per_task < 1.0 + 3 * p, key
    assert s["all_honest_bits"] and s["false_accusations"] == 0
    assert s["checked_lies_caught"] and s["caught_jobs_honest_bits"]
    assert s["max_detection_error"] < 0.08  # 1000 fresh seeds a cell: ≥ 5 standard errors
    assert len(out["detection"]) == 16 and s["fault_jobs"] == 7


def test_the_prediction_jobs_benchmark_gives_the_model_servers_labels():
    out = _run("predict_jobs.py", "--quick", "--items", "4", "--batch", "2")
    assert out["same_labels"] is True and out["model_server"]["predictions_per_s"] > 0
    runs = {(r["verification"], r["processes"]): r for r in out["compute_market"]}
    assert set(runs) == {("tmr", 1), ("tmr", 2), ("spot", 1), ("spot", 2)}
    assert all(r["predictions_per_s"] > 0 and r["liars"] == 0 for r in runs.values())
    assert runs["tmr", 1]["tasks"] == 2
    g = out["gas"]
    assert g["per_job"] == g["create_prediction_job"] + g["settle_prediction"] > 0
    assert g["channel_gas_per_1000"] > 0
