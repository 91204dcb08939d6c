"""The web app's fixtures: one populated home per session (built once, copied per module), and
one real Chromium per test process (Debian's ``chromium`` driven by playwright; no browser
download). Without the binary the browser tests are skipped, unless
``DATABRIGHT_REQUIRE_CHROMIUM=1`` (scripts/test.sh sets it): then they fail. Every browser test
uses ``browser``: a second sync playwright in the same process refuses to start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.web.web_world import build_web_home, copy_home

CHROMIUM = os.environ.get("DATABRIGHT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent / "e2e" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("DATABRIGHT_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"Chromium not found at {CHROMIUM} (scripts/setup.sh installs it)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM,
                               args=["--disable-gpu", "--disable-quic", "--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the tests write a screenshot of each main page (look at them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def web_world_home(tmp_path_factory, digit_folder):
    """The home ``build_web_home`` makes, built once per test process: do not write to it."""
    cli = build_web_home(tmp_path_factory.mktemp("web-world"), digit_folder)
    return cli


@pytest.fixture(scope="module")
def web_home(web_world_home, tmp_path_factory):
    """A private copy of the populated home for one test module (``.home``, ``.proposals``)."""
    from tests.cli.conftest import Cli

    dst = copy_home(web_world_home.home, tmp_path_factory.mktemp("web-home") / "home")
    cli = Cli(dst)
    cli.inputs = web_world_home.inputs
    cli.proposals = web_world_home.proposals
    return cli
