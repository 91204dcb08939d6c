"""Every revert reason in the contracts is hit by a test, and every assert carries a reason."""

from __future__ import annotations

import re
from pathlib import Path

CONTRACTS = Path(__file__).resolve().parents[2] / "src" / "databright" / "contracts"
TESTS = Path(__file__).resolve().parent
REASON = re.compile(r'"((?:market|shares|registry|compute): [^"]+)"')


def _sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(CONTRACTS.glob("*.vy"))}


def _test_text() -> str:
    own = Path(__file__).name
    return "\n".join(p.read_text() for p in sorted(TESTS.glob("test_*.py")) if p.name != own)


def reasons() -> dict[str, set[str]]:
    """Reason strings by contract file."""
    return {name: set(REASON.findall(src)) for name, src in _sources().items()}


def test_every_assert_has_a_prefixed_reason():
    prefix = {
        "DataMarket.vy": "market: ",
        "ShareToken.vy": "shares: ",
        "ModelRegistry.vy": "registry: ",
        "ComputeMarket.vy": "compute: ",
    }
    for name, src in _sources().items():
        lines = src.splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("assert "):
                # a long assert puts its reason on the next line, inside parentheses
                statement = stripped + (lines[i + 1].strip() if stripped.endswith("(") else "")
                match = REASON.search(statement)
                assert match, f"{name}: assert without a reason: {stripped}"
                assert match.group(1).startswith(prefix[name]), f"{name}: {stripped}"
            assert "raise" not in stripped.split("#")[0].split(), f"{name}: bare raise: {stripped}"


def test_every_reason_is_tested():
    tests = _test_text()
    found = reasons()
    assert found["DataMarket.vy"] and found["ShareToken.vy"]
    missing = sorted(r for rs in found.values() for r in rs if f'"{r}"' not in tests)
    assert not missing, f"revert reasons without a test: {missing}"


def test_reasons_are_documented():
    docs = CONTRACTS.parents[2] / "docs"
    doc = "".join(
        (docs / name).read_text()
        for name in ("contracts.md", "model-market.md", "compute-market.md")
    )
    missing = sorted(r for rs in reasons().values() for r in rs if f"`{r}`" not in doc)
    assert not missing, (
        f"revert reasons missing from docs/contracts.md, model-market.md, compute-market.md: "
        f"{missing}"
    )
