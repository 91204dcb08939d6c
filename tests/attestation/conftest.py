"""The sample SGX DCAP quote and its collateral, and a software coordinator's evidence."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from databright.attestation import software
from databright.attestation.evidence import Evidence
from databright.home import Home

# The real quote lives beside the repository (../shared/fixtures/sgx-dcap), as CI lays it out.
SGX_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sgx-dcap"

ADDRESS = "0x" + "5e" * 20
NONCE = bytes(range(32))


@pytest.fixture(scope="session")
def sgx_quote() -> bytes:
    path = SGX_FIXTURES / "sgx_quote"
    if not path.is_file():
        pytest.fail(f"the sample DCAP quote is missing: {path}")
    return path.read_bytes()


@pytest.fixture(scope="session")
def sgx_collateral() -> str:
    return (SGX_FIXTURES / "sgx_quote_collateral.json").read_text()


@pytest.fixture(scope="session")
def collateral_time(sgx_collateral: str) -> int:
    """A minute after the TCB info was issued: inside the collateral's validity."""
    issued = json.loads(json.loads(sgx_collateral)["tcb_info"])["issueDate"]
    return int(datetime.fromisoformat(issued).timestamp()) + 60


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
def soft_evidence(home: Home) -> Evidence:
    return software.produce(ADDRESS, NONCE, {"workers": 3, "cap": 0.05}, home=home)
