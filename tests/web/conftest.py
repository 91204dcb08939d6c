"""The web app's fixtures: one populated home per session (built once, copied per module)."""

from __future__ import annotations

import pytest

from tests.web.web_world import build_web_home, copy_home


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
