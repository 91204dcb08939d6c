"""A real Chromium (Debian's ``chromium``, driven by playwright; no browser download) for the
end-to-end tests. Without the binary the tests are skipped, unless
``DATABRIGHT_REQUIRE_CHROMIUM=1`` (scripts/test.sh sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DATABRIGHT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "tests" / "web" / "e2e" / "screenshots"


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
