"""A CLI runner and a home with accounts and a dataset, shared by a test module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databright.cli.main import app

PASSWORD = "test-password"


class Cli:
    """Runs `databright …` in-process against one home; ``json=True`` parses stdout."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, as_: str | None = None, code: int = 0, json_out: bool = True,
                 password: str = PASSWORD, env: dict | None = None):
        argv = [*args, "--home", str(self.home)]
        if json_out:
            argv.append("--json")
        if as_:
            argv += ["--as", as_]
        result = self.runner.invoke(app, argv, env={"DATABRIGHT_PASSWORD": password, **(env or {})})
        if result.exit_code != code:
            raise AssertionError(
                f"`databright {' '.join(argv)}` exited {result.exit_code}, expected {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
            )
        if code == 0 and json_out:
            return json.loads(result.stdout)
        return result


@pytest.fixture(scope="module")
def market(tmp_path_factory, digit_folder):
    """A home with alice (initiator, evaluator), bob, carol and a dataset `digits`."""
    root = tmp_path_factory.mktemp("home")
    cli = Cli(root / "home")
    cli("init")
    for name in ("alice", "bob", "carol"):
        cli("account", "new", name, "--fast-kdf")
    seed = digit_folder(root / "seed", 0, 80)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", "--stake",
        "0.01eth", "--evaluator", "alice", "--quorum", "0.3", as_="alice")
    cli.inputs = root
    return cli
