"""The layer order of DESIGN.md and the type checker, enforced by the test suite (so by CI).

`lint-imports` checks the import contracts in pyproject.toml; `mypy src/` the whole package. A
failure prints the tool's own report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str, src: Path = ROOT / "src") -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    if not exe.exists():
        pytest.fail(f"{tool} is not installed: `pip install -e '.[test]'` installs it")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(exe), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_import_contracts_are_kept():
    proc = _run("lint-imports", "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", proc.stdout)
    assert kept and int(kept.group(1)) >= 3, proc.stdout
    for contract in ("Layers: interfaces -> market", "Only the chain layer talks to Ethereum",
                     "Only training and compute import torch"):
        assert contract in proc.stdout, contract


def test_import_contracts_catch_a_market_module_importing_web3_and_storage_importing_market(
        tmp_path):
    # The contracts must be able to fail: plant two violations in a copy of the package.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "databright", src / "databright",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (src / "databright" / "market" / "money.py").open("a") as fh:
        fh.write("\nimport web3  # noqa\n")
    with (src / "databright" / "storage" / "cid.py").open("a") as fh:
        fh.write("\nimport databright.market.money  # noqa\n")
    proc = _run("lint-imports", "--no-cache", src=src)
    assert proc.returncode != 0
    assert "databright.market is not allowed to import web3" in proc.stdout, proc.stdout
    assert "databright.storage.cid -> databright.market.money" in proc.stdout, proc.stdout


def test_mypy_is_clean_on_src():
    proc = _run("mypy", "src/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
