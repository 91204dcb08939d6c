"""benchmarks/predict.py runs (tiny sizes) and reports the figures the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_json_has_the_overhead_and_gas_figures():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "predict.py"), "--quick", "--json",
         "--requests", "10", "--transfers", "3"],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert {"voucher_overhead", "gas_ratio", "throughput", "gas"} <= set(result)
    cnn = result["throughput"]["small-cnn"]
    assert cnn["requests"] == 10 and cnn["predictions_per_s_free"] > 0
    assert cnn["predictions_per_s_paid"] > 0 and result["voucher_overhead"] < 1
    gas = result["gas"]
    assert gas["transfer_gas_each"] == 21_000 and gas["transfers_gas"] == 21_000_000
    assert gas["channel_gas"] == gas["open_channel_gas"] + gas["close_gas"]
    assert result["gas_ratio"] == round(gas["channel_gas"] / 21_000_000, 5)
    assert 0 < result["gas_ratio"] < 0.02
