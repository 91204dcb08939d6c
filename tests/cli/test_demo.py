"""`databright demo` plays the whole market and its voters catch the bad batch."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from databright.cli.main import app


def test_demo_plays_the_market(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    outcome = {p["proposer"]: p for p in summary["proposals"]}
    assert outcome["bob"]["status"] == outcome["carol"]["status"] == "accepted"
    assert outcome["mallory"]["status"] == "rejected"
    planted = outcome["mallory"]["planted"]
    assert planted["caught"] >= 0.8 * planted["planted"]
    assert outcome["dave"]["duplicates"] == 60 and outcome["dave"]["items"] == 30
    people = {p["name"]: p for p in summary["participants"]}
    assert people["mallory"]["shares"] == 0 and people["bob"]["shares"] > 0
    assert all(people[n]["withdrawn_wei"] > 0 for n in ("alice", "bob", "carol", "dave"))
    assert summary["verify_ok"] is True
    # the home is left to explore
    assert (tmp_path / "demo" / "config.json").is_file()


def test_demo_refuses_a_used_folder(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "used")])
    assert result.exit_code == 2 and "not empty" in result.stderr
