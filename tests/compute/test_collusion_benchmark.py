"""benchmarks/collusion.py end to end on tiny sizes, so the script cannot rot: one JSON object,
every pool and fraction, the analytic anchor beside the Monte Carlo and its interval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from databright.compute.collusion import p_accept_wrong

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_on_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "collusion.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "collusion.py"), "--json", "--trials", "3000",
         "--jobs", "10", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert json.loads(out.read_text()) == result
    rows = result["rows"]
    assert {(r["N"], r["colluders"]) for r in rows} == {
        (30, 1), (30, 3), (30, 6), (30, 10), (60, 3), (60, 6), (60, 12), (60, 20),
        (300, 15), (300, 30), (300, 60), (300, 100)}
    for r in rows:
        assert Fraction(r["analytic_exact"]) == p_accept_wrong(r["N"], r["colluders"])
        assert r["trials"] == 3000 and r["mc"] == r["hits"] / 3000
        assert r["ci95"][0] <= r["mc"] <= r["ci95"][1]
        assert r["within"] == (r["ci95"][0] <= r["analytic"] <= r["ci95"][1])
        assert (r["ratio"] is None) == (r["analytic"] == 0)
    assert result["within_ci95"] == sum(r["within"] for r in rows)
    assert len(result["per_job"]) == 8 and all(r["shards"] == 20 for r in result["per_job"])
