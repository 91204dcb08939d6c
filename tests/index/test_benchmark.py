"""benchmarks/index.py end to end on tiny sizes, so the script cannot rot: one JSON object,
timings under ``*_s``, ratios under ``*ratio*``, and a duplicate check that reads no manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_on_tiny_sizes(tmp_path):
    out = tmp_path / "index.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "index.py"), "--json", "--datasets", "2",
         "--proposals", "12", "--rows", "3000", "--batch", "40", "--repeats", "1",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert json.loads(out.read_text()) == result
    assert (result["datasets"], result["proposals"]) == (2, 12)
    timings = [k for k in result if k.endswith("_s")]
    assert {"proposals_index_s", "proposals_scan_s", "shares_index_s", "shares_scan_s",
            "dup_check_1m_s", "setup_s"} <= set(timings)
    assert all(isinstance(result[k], float) and result[k] > 0 for k in timings)
    assert {k for k in result if "ratio" in k} == {"proposals_ratio", "shares_ratio"}
    assert result["dup_check_manifest_reads"] == result["dup_check_blob_reads"] == 0
    assert result["propose_1m_manifest_reads"] == 0 and result["propose_1m_new_items"] == 20
