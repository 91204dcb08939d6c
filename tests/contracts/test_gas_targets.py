"""The gas targets of issue 2 hold (benchmarks/gas.py on py-evm; slow: ~15 s of web3 calls)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

GAS_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gas.py"


@pytest.mark.slow
def test_gas_targets():
    spec = importlib.util.spec_from_file_location("databright_gas_benchmark", GAS_SCRIPT)
    assert spec and spec.loader
    gas = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gas)
    figures = gas.measure(holders_large=30)
    results = {name: ok for name, _, ok in gas.targets(figures)}
    # the snapshot-and-dividend transfer is reported, not a target (see docs/contracts.md)
    results.pop("share_transfer_snapshot_and_dividend")
    assert all(results.values()), (results, figures)
