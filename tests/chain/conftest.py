"""One chain fixture, two providers: the embedded chain and an anvil node.

Every test that takes ``chain`` runs twice, swapping only the provider. anvil is one process per
test session on a free 127.0.0.1 port; if its binary is missing the anvil half is skipped, unless
``DATABRIGHT_REQUIRE_ANVIL=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from databright.chain.provider import Chain, connect_url, open_chain
from databright.home import Config, Home

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
PROBE = Path(__file__).resolve().parent / "contracts" / "Probe.vy"
FUNDING = 10**21  # 1,000 ether


def anvil_binary() -> str | None:
    """The anvil installed by ``npm install``, else one on PATH."""
    if ANVIL.is_file():
        return str(ANVIL)
    return shutil.which("anvil")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"anvil exited with {proc.returncode}")
        try:
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"anvil did not answer at {url} within {timeout} s")


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """URL of an anvil node started for this test session (killed after)."""
    binary = anvil_binary()
    if binary is None:
        if os.environ.get("DATABRIGHT_REQUIRE_ANVIL") == "1":
            pytest.fail("anvil is required (DATABRIGHT_REQUIRE_ANVIL=1) but not installed")
        pytest.skip("anvil not installed (run scripts/setup.sh)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    """An open chain: a fresh embedded chain in a temp home, or the session's anvil."""
    if request.param == "embedded":
        opened = open_chain(Home(tmp_path / "home"), Config())
    else:
        opened = connect_url(request.getfixturevalue("anvil_url"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def new_account(chain: Chain) -> Callable[..., LocalAccount]:
    """Make a fresh account funded with 1,000 ether (or ``wei``)."""

    def make(wei: int = FUNDING) -> LocalAccount:
        account: LocalAccount = Account.create()
        if wei:
            chain.fund(account.address, wei)
        return account

    return make


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compile cache shared by the session's tests."""
    return tmp_path_factory.mktemp("vyper-cache")
