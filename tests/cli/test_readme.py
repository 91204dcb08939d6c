"""The README documents every command: a new command without docs fails here."""

from pathlib import Path

import typer.main

from databright.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(group, prefix=""):
    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, cmd in click_group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, full + " ")
        else:
            yield full


def test_every_command_is_in_the_readme():
    text = README.read_text()
    commands = sorted(_commands(app))
    assert len(commands) >= 20
    missing = [c for c in commands if f"databright {c}" not in text]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_command_takes_home_and_json():
    group = typer.main.get_command(app)
    lacking = []
    for name in _commands(app):
        cmd = group
        for part in name.split():
            cmd = cmd.commands[part]
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if not {"--home", "--json"} <= opts:
            lacking.append(name)
    assert not lacking, f"commands without --home/--json: {lacking}"
